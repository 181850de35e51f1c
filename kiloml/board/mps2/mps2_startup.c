/* SPDX-License-Identifier: Apache-2.0 */
/* Bare-metal start-up for the MPS2 AN386 board (Cortex-M4F) as QEMU emulates it: vector
 * table, Reset_Handler (copy .data, zero .bss, enable the FPU, run main, exit), fault
 * handlers that report over UART0. No vendor SDK. Symbols come from mps2_an386.ld. */
#include <stdint.h>

#include "mps2_exit.h"
#include "mps2_uart.h"

extern uint32_t __stack_top;
extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);

typedef void (*mps2_handler_t)(void);

__attribute__((section(".isr_vector"), used)) const struct {
    uint32_t *initial_sp;
    mps2_handler_t handlers[15];
} mps2_vectors = {
    &__stack_top,
    {
        Reset_Handler,
        Default_Handler,   /* NMI */
        HardFault_Handler, /* HardFault */
        HardFault_Handler, /* MemManage */
        HardFault_Handler, /* BusFault */
        HardFault_Handler, /* UsageFault */
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
    /* volatile: GCC would turn these loops into memcpy/memset, which a -nostdlib build lacks */
    const volatile uint32_t *src = &__data_load;
    volatile uint32_t *dst = &__data_start;
    uint32_t i, n;
    while (dst < &__data_end) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start; dst < &__bss_end;) {
        *dst++ = 0u;
    }
#if defined(__ARM_FP)
    /* CPACR: full access to CP10/CP11 (the FPU) before the first FP instruction. */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    /* C++ static constructors (an Arduino sketch's global objects). */
    n = (uint32_t)(__init_array_end - __init_array_start);
    for (i = 0u; i < n; ++i) {
        __init_array_start[i]();
    }
    mps2_exit(main());
}

void Default_Handler(void)
{
    mps2_uart_puts("\nmps2: unexpected exception\n");
    mps2_exit(1);
}

void HardFault_Handler(void)
{
    mps2_uart_puts("\nmps2: HardFault\n");
    mps2_exit(1);
}
