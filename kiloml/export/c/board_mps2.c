/* SPDX-License-Identifier: Apache-2.0 */
/* The stream example's console on the MPS2 AN386 board: UART0 at 115200 baud. */
#include "example_board.h"
#include "mps2_uart.h"

void board_init(void)
{
    mps2_uart_init(115200u);
}

void board_puts(const char *s)
{
    mps2_uart_puts(s);
}
