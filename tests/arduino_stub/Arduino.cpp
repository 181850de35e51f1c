/* SPDX-License-Identifier: Apache-2.0 */
/* The stub core: Serial over mps2_uart, and main() running setup() then loop() once (a
 * real core loops forever; the test needs the program to end). */
#include "Arduino.h"

#include "mps2_uart.h"

HardwareSerial Serial;

void HardwareSerial::begin(unsigned long baud)
{
    mps2_uart_init((uint32_t)baud);
}

void HardwareSerial::print(const char *s)
{
    mps2_uart_puts(s);
}

void HardwareSerial::print(long v)
{
    char text[24];
    char *p = &text[23];
    unsigned long u = v < 0 ? 0ul - (unsigned long)v : (unsigned long)v;
    *p = '\0';
    do {
        *--p = (char)('0' + (int)(u % 10ul));
        u /= 10ul;
    } while (u != 0ul);
    if (v < 0) {
        *--p = '-';
    }
    mps2_uart_puts(p);
}

void HardwareSerial::println(const char *s)
{
    print(s);
    mps2_uart_puts("\r\n");
}

void HardwareSerial::println(long v)
{
    print(v);
    mps2_uart_puts("\r\n");
}

int main(void)
{
    setup();
    loop();
    return 0;
}
