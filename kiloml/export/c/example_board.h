/* SPDX-License-Identifier: Apache-2.0 */
/* What the stream example needs from a board: start its console, print a string. The
 * mps2-an386 build implements it over UART0 (board_mps2.c); port it to yours. */
#ifndef EXAMPLE_BOARD_H
#define EXAMPLE_BOARD_H

#ifdef __cplusplus
extern "C" {
#endif

void board_init(void);
void board_puts(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* EXAMPLE_BOARD_H */
