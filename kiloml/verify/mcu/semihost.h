/* SPDX-License-Identifier: Apache-2.0 */
/* Arm semihosting for the kiloml harness: files on the host, exit status. */
#ifndef KML_SEMIHOST_H
#define KML_SEMIHOST_H

#include <stdint.h>

int32_t sh_open(const char *name, int32_t mode); /* mode 1: "rb", 5: "wb" */
int32_t sh_read(int32_t handle, void *buf, uint32_t len);        /* 0 on success */
int32_t sh_write(int32_t handle, const void *buf, uint32_t len); /* 0 on success */
void sh_close(int32_t handle);
void sh_exit(int success) __attribute__((noreturn));
void sh_fault(uint32_t pc, uint32_t lr, uint32_t cfsr) __attribute__((noreturn));

#endif
