/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml bare-metal start-up for Cortex-M (ARMv6-M and ARMv7-M): vector table,
 * reset handler and fault handlers. No vendor SDK. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t __stack_top;
extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end;

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);

typedef void (*kml_handler_t)(void);

/* The vector table: the initial stack pointer, then the exception handlers. */
__attribute__((section(".isr_vector"), used)) const struct {
    uint32_t *initial_sp;
    kml_handler_t handlers[15];
} kml_vectors = {
    &__stack_top,
    {
        Reset_Handler,
        Default_Handler,   /* NMI */
        HardFault_Handler, /* HardFault */
        HardFault_Handler, /* MemManage (ARMv7-M) */
        HardFault_Handler, /* BusFault (ARMv7-M) */
        HardFault_Handler, /* UsageFault (ARMv7-M) */
        0, 0, 0, 0,
        Default_Handler, /* SVCall */
        Default_Handler, /* DebugMonitor */
        0,
        Default_Handler, /* PendSV */
        Default_Handler, /* SysTick */
    },
};

void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start; dst < &__bss_end;) {
        *dst++ = 0;
    }
#if defined(__ARM_FP)
    /* Grant full access to coprocessors 10 and 11 (the FPU) before any FP instruction. */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    sh_exit(main() == 0);
}

void Default_Handler(void)
{
    sh_fault(0xFFFFFFFFu, 0u, 0u);
}

/* Report where the fault happened: the stacked PC and LR of the faulting code. */
__attribute__((naked)) void HardFault_Handler(void)
{
    __asm volatile(
        "mov r0, lr\n\t"
        "movs r1, #4\n\t"
        "tst r0, r1\n\t"
        "beq 1f\n\t"
        "mrs r0, psp\n\t"
        "b 2f\n"
        "1:\n\t"
        "mrs r0, msp\n"
        "2:\n\t"
        "ldr r1, [r0, #24]\n\t" /* stacked PC */
        "ldr r2, [r0, #20]\n\t" /* stacked LR */
        "mov r0, r1\n\t"
        "mov r1, r2\n\t"
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__)
        "ldr r2, =0xE000ED28\n\t" /* CFSR: which fault */
        "ldr r2, [r2]\n\t"
#else
        "movs r2, #0\n\t" /* ARMv6-M has no CFSR */
#endif
        "bl sh_fault\n\t");
}
