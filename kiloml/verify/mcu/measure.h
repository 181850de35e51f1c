/* SPDX-License-Identifier: Apache-2.0 */
/* Measurement hooks of the kiloml harnesses.
 *
 * KML_MEASURE(call, stack_bytes) runs `call` between kml_bench_begin() and
 * kml_bench_end(), whose addresses the QEMU plugin watches to count the
 * instructions in between, and measures the stack the call used by painting
 * the free stack below the caller's frame first. Use it inside a noinline
 * function so that frame is the measuring one.
 */
#ifndef KML_MEASURE_H
#define KML_MEASURE_H

#include <stdint.h>

#define KML_STACK_PAINT 0xC0FFEE42u

extern uint32_t __stack_limit; /* bottom of the stack, from the linker script */

void kml_bench_begin(void);
void kml_bench_end(void);
void kml_mark_stage(int32_t stage);

#define KML_MEASURE(call, stack_bytes)                                                   \
    do {                                                                                 \
        uint32_t *top_, *p_;                                                             \
        __asm volatile("mov %0, sp" : "=r"(top_));                                       \
        for (p_ = &__stack_limit; p_ < top_ - 8; ++p_) { /* stays below this frame */    \
            *p_ = KML_STACK_PAINT;                                                       \
        }                                                                                \
        kml_bench_begin();                                                               \
        call;                                                                            \
        kml_bench_end();                                                                 \
        for (p_ = &__stack_limit; p_ < top_ && *p_ == KML_STACK_PAINT; ++p_) {           \
        }                                                                                \
        (stack_bytes) = (uint32_t)((uintptr_t)top_ - (uintptr_t)p_);                     \
    } while (0)

#endif
