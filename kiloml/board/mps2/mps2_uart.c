/* SPDX-License-Identifier: Apache-2.0 */
/* CMSDK APB UART0: DATA +0x0, STATE +0x4 (bit0 TX full, bit1 RX full), CTRL +0x8 (bit0 TX
 * enable, bit1 RX enable), BAUDDIV +0x10. */
#include "mps2_uart.h"

#define MPS2_UART0_BASE 0x40004000u
#define UART_REG(off) (*(volatile uint32_t *)(MPS2_UART0_BASE + (off)))
#define UART_DATA UART_REG(0x00u)
#define UART_STATE UART_REG(0x04u)
#define UART_CTRL UART_REG(0x08u)
#define UART_BAUDDIV UART_REG(0x10u)

#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u

void mps2_uart_init(uint32_t baud_hz)
{
    uint32_t div = baud_hz == 0u ? 16u : MPS2_UART_CLOCK_HZ / baud_hz;
    if (div < 16u) {
        div = 16u; /* the CMSDK UART's smallest legal divider */
    }
    UART_CTRL = 0u;
    UART_BAUDDIV = div;
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN;
}

void mps2_uart_write(const uint8_t *data, uint32_t n)
{
    uint32_t i;
    for (i = 0u; i < n; ++i) {
        while ((UART_STATE & STATE_TX_FULL) != 0u) {
        }
        UART_DATA = data[i];
    }
}

int32_t mps2_uart_read_byte(void)
{
    while ((UART_STATE & STATE_RX_FULL) == 0u) {
    }
    return (int32_t)(UART_DATA & 0xFFu);
}

void mps2_uart_puts(const char *s)
{
    while (*s != '\0') {
        mps2_uart_write((const uint8_t *)s, 1u);
        ++s;
    }
}
