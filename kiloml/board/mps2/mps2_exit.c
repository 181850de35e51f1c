/* SPDX-License-Identifier: Apache-2.0 */
#include "mps2_exit.h"

#include <stdint.h>

#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define ADP_STOPPED_RUNTIME_ERROR 0x20023u

void mps2_exit(int status)
{
    /* AArch32 SYS_EXIT takes the reason code itself in r1 (no parameter block). */
    register int32_t r0 __asm("r0") = SYS_EXIT;
    register uint32_t r1 __asm("r1") =
        status == 0 ? ADP_STOPPED_APPLICATION_EXIT : ADP_STOPPED_RUNTIME_ERROR;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    for (;;) {
    }
}
