/* The markers the instruction-counting plugin watches (see measure.h). */
#include "measure.h"

__attribute__((noinline)) void kml_bench_begin(void)
{
    __asm volatile("" ::: "memory");
}

__attribute__((noinline)) void kml_bench_end(void)
{
    __asm volatile("" ::: "memory");
}
