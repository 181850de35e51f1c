/* SPDX-License-Identifier: Apache-2.0 */
/* Firmware for QEMU's mps2-an386: sends a real recording (recording.h, written by
 * tests/test_capture_qemu.py from seglearn's watch data) with kml_capture.c over UART0,
 * one sample per SysTick period (REC_PACE_HZ; QEMU's SysTick runs on the host's clock),
 * the hello every REC_HELLO_EVERY samples, then the end frame, and idles. */
#include <stdint.h>
#include <string.h>

#include "kml_capture.h"
#include "mps2_uart.h"
#include "recording.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_ENABLE_CPU_CLOCK 0x5u /* ENABLE | CLKSOURCE (the 25 MHz processor clock) */
#define SYST_COUNTFLAG 0x10000u

static void uart_write(void *user, const uint8_t *data, uint32_t n)
{
    (void)user;
    mps2_uart_write(data, n);
}

int main(void)
{
    kml_capture_t cap;
    float values[REC_CHANNELS];
    uint32_t i;

    mps2_uart_init(115200u);
    if (kml_capture_init(&cap, REC_CHANNELS, uart_write, NULL) != KML_CAPTURE_OK) {
        return 1;
    }
    SYST_RVR = MPS2_UART_CLOCK_HZ / REC_PACE_HZ - 1u;
    SYST_CVR = 0u;
    SYST_CSR = SYST_ENABLE_CPU_CLOCK;
    for (i = 0u; i < REC_SAMPLES; ++i) {
        if (i % REC_HELLO_EVERY == 0u &&
            kml_capture_hello(&cap, rec_names, rec_units, REC_RATE_HZ) != KML_CAPTURE_OK) {
            return 2;
        }
        while ((SYST_CSR & SYST_COUNTFLAG) == 0u) {
        }
        memcpy(values, &rec_bits[i * REC_CHANNELS], sizeof values);
        /* the recording's own time base: sample i was taken at i / REC_RATE_HZ s */
        (void)kml_capture_sample(&cap, i * REC_PERIOD_US, values);
    }
    (void)kml_capture_end(&cap);
    /* Stay up like a device does: exiting would close QEMU's side of the serial link
     * while the last frames may still be on their way (the test stops QEMU). */
    for (;;) {
    }
}
