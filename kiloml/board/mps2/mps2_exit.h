/* SPDX-License-Identifier: Apache-2.0 */
/* Ending a program on the emulated MPS2 board: Arm semihosting SYS_EXIT. QEMU must run with
 * -semihosting-config enable=on,target=native; it then exits 0 for status 0, 1 otherwise.
 * On a real board without a debugger attached BKPT faults: firmware there never returns. */
#ifndef MPS2_EXIT_H
#define MPS2_EXIT_H

#ifdef __cplusplus
extern "C" {
#endif

void mps2_exit(int status) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif /* MPS2_EXIT_H */
