/* SPDX-License-Identifier: Apache-2.0 */
/* Arm semihosting calls (BKPT 0xAB on M-profile). */
#include "semihost.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUNTIME_ERROR 0x20023

static int32_t sh_call(int32_t op, void *arg)
{
    register int32_t r0 __asm("r0") = op;
    register void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static uint32_t sh_strlen(const char *s)
{
    uint32_t n = 0;
    while (s[n] != '\0') {
        ++n;
    }
    return n;
}

int32_t sh_open(const char *name, int32_t mode)
{
    uint32_t block[3];
    block[0] = (uint32_t)name;
    block[1] = (uint32_t)mode;
    block[2] = sh_strlen(name);
    return sh_call(SYS_OPEN, block);
}

int32_t sh_read(int32_t handle, void *buf, uint32_t len)
{
    uint32_t block[3];
    block[0] = (uint32_t)handle;
    block[1] = (uint32_t)buf;
    block[2] = len;
    return sh_call(SYS_READ, block); /* bytes NOT read */
}

int32_t sh_write(int32_t handle, const void *buf, uint32_t len)
{
    uint32_t block[3];
    block[0] = (uint32_t)handle;
    block[1] = (uint32_t)buf;
    block[2] = len;
    return sh_call(SYS_WRITE, block); /* bytes NOT written */
}

void sh_close(int32_t handle)
{
    uint32_t block[1];
    block[0] = (uint32_t)handle;
    (void)sh_call(SYS_CLOSE, block);
}

void sh_exit(int success)
{
    /* On AArch32 the reason code is passed directly; QEMU exits 0 for ApplicationExit. */
    (void)sh_call(SYS_EXIT, (void *)(success ? ADP_STOPPED_APPLICATION_EXIT
                                             : ADP_STOPPED_RUNTIME_ERROR));
    for (;;) {
    }
}

void sh_fault(uint32_t pc, uint32_t lr, uint32_t cfsr)
{
    /* Leave a record the host side can read, then stop with a failure status. */
    uint32_t record[4];
    int32_t f = sh_open("kml_fault.bin", 5);
    record[0] = 0x544C4146u; /* "FALT" */
    record[1] = pc;
    record[2] = lr;
    record[3] = cfsr;
    if (f >= 0) {
        (void)sh_write(f, record, sizeof record);
        sh_close(f);
    }
    sh_exit(0);
}
