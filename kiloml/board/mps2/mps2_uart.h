/* SPDX-License-Identifier: Apache-2.0 */
/* Polled driver for UART0 of the Arm MPS2 boards (CMSDK APB UART at 0x40004000), as QEMU's
 * mps2-an385/an386/an500 emulate it. No interrupts, no FIFO: one byte in each direction. */
#ifndef MPS2_UART_H
#define MPS2_UART_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The APB clock of the MPS2 FPGA images (25 MHz); BAUDDIV = clock / baud. */
#define MPS2_UART_CLOCK_HZ 25000000u

/* Enable TX and RX at baud_hz (QEMU ignores the rate; real boards need it). */
void mps2_uart_init(uint32_t baud_hz);
/* Send n bytes, waiting while the transmit register is full. */
void mps2_uart_write(const uint8_t *data, uint32_t n);
/* Wait for one received byte and return it (0..255). */
int32_t mps2_uart_read_byte(void);
/* Send a NUL-terminated string (no newline added). */
void mps2_uart_puts(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* MPS2_UART_H */
