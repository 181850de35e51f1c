/* SPDX-License-Identifier: Apache-2.0 */
/* Test stub of an Arduino core's Arduino.h: just the Serial a sketch prints with, over
 * the MPS2 UART0 (tests/test_export_formats.py; arduino-cli cannot fetch a core here). */
#ifndef ARDUINO_H_STUB
#define ARDUINO_H_STUB

#include <stdint.h>

class HardwareSerial {
public:
    void begin(unsigned long baud);
    void print(const char *s);
    void print(long v);
    void println(const char *s);
    void println(long v);
};

extern HardwareSerial Serial;

void setup(void);
void loop(void);

#endif
