/* SPDX-License-Identifier: Apache-2.0 */
/* Host test of kml_capture.c: reads samples as raw float32 bits (4 channels) on stdin and
 * sends them, framed, on stdout; tests/test_kml_capture_c.py decodes them in Python. */
#include <stdio.h>
#include <string.h>

#include "kml_capture.h"

static void to_file(void *user, const uint8_t *data, uint32_t n)
{
    (void)fwrite(data, 1u, n, (FILE *)user);
}

static void nowhere(void *user, const uint8_t *data, uint32_t n)
{
    (void)user;
    (void)data;
    (void)n;
}

int main(void)
{
    static const char *const names[4] = {"ax", "ay", "az", "temp"};
    static const char *const units[4] = {"m/s2", "m/s2", "m/s2", NULL};
    static const char *const long_name[1] = {"a_name_of_thirty_two_characters_"};
    kml_capture_t cap;
    uint32_t bits[4];
    float values[4];
    uint32_t t_us = 0xFFFF0000u; /* wraps past 2^32 after a few samples */

    if (kml_capture_crc16(0xFFFFu, (const uint8_t *)"123456789", 9u) != 0x29B1u) {
        return 3;
    }
    if (kml_capture_init(&cap, 0u, to_file, stdout) != KML_CAPTURE_EINVAL ||
        kml_capture_init(&cap, KML_CAPTURE_MAX_CHANNELS + 1u, to_file, stdout) !=
            KML_CAPTURE_EINVAL ||
        kml_capture_init(&cap, 1u, NULL, stdout) != KML_CAPTURE_EINVAL) {
        return 4;
    }
    if (kml_capture_init(&cap, 1u, nowhere, NULL) != KML_CAPTURE_OK ||
        kml_capture_hello(&cap, long_name, NULL, 1.0f) != KML_CAPTURE_EINVAL) {
        return 5;
    }
    if (kml_capture_init(&cap, 4u, to_file, stdout) != KML_CAPTURE_OK ||
        kml_capture_hello(&cap, names, units, 52.5f) != KML_CAPTURE_OK) {
        return 6;
    }
    while (fread(bits, sizeof bits[0], 4u, stdin) == 4u) {
        memcpy(values, bits, sizeof values);
        if (kml_capture_sample(&cap, t_us, values) != KML_CAPTURE_OK) {
            return 7;
        }
        t_us += 19048u;
    }
    if (kml_capture_end(&cap) != KML_CAPTURE_OK) {
        return 8;
    }
    return fflush(stdout) == 0 ? 0 : 9;
}
