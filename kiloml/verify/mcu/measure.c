/* SPDX-License-Identifier: Apache-2.0 */
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

/* Called between the generated code's stages when it is built with KML_STAGE_MARKS;
 * the plugin records the instruction count at each call. */
__attribute__((noinline)) void kml_mark_stage(int32_t stage)
{
    (void)stage;
    __asm volatile("" ::: "memory");
}
