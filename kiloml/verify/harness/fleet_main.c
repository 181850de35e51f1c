/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml fleet simulation driver: one simulated device running the generated library on
 * the host (`kiloml fleet simulate`, kiloml/telemetry/simulate.py).
 *
 *   fleet_main RECORD_EVERY_S  stdin:  raw float32 samples, rows of KML_CHANNELS, as the
 *                                      device's sensor gives them from boot on;
 *                              stdout: the 48-byte kml_telemetry_v1 records, back to back.
 *
 * Per sample: kml_push_sample, and on each new window kml_decide_latest (which updates the
 * monitor). The device's uptime is the samples pushed / KML_SAMPLE_RATE_HZ in whole
 * seconds (double arithmetic); each time it reaches the next multiple of RECORD_EVERY_S,
 * kml_monitor_snapshot(uptime, record) is written. The library is reset once, at boot
 * (kml_reset); the monitor starts from its training statistics (no restart).
 * Exit code 0 when stdin ended on a whole row and every record was written.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiloml_model.h"

#define ROW_BYTES (sizeof(float) * KML_CHANNELS)
#define CHUNK_ROWS 4096

static unsigned char buffer[CHUNK_ROWS * ROW_BYTES];
static uint8_t record[KML_TELEMETRY_RECORD_BYTES];

int main(int argc, char **argv)
{
    char *end = NULL;
    unsigned long every;
    uint64_t pushed = 0;
    uint32_t next, uptime;
    size_t have = 0, got, rows, r;
    float sample[KML_CHANNELS];
    kml_decision_t d;
    if (argc != 2) {
        fprintf(stderr, "usage: %s RECORD_EVERY_S < samples > records\n", argv[0]);
        return 2;
    }
    every = strtoul(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || every < 1 || every > 0x7FFFFFFFul) {
        fprintf(stderr, "fleet_main: RECORD_EVERY_S must be a whole number of seconds >= 1\n");
        return 2;
    }
    next = (uint32_t)every;
    kml_reset();
    for (;;) {
        got = fread(buffer + have, 1, sizeof buffer - have, stdin);
        have += got;
        rows = have / ROW_BYTES;
        for (r = 0; r < rows; ++r) {
            memcpy(sample, buffer + r * ROW_BYTES, ROW_BYTES);
            if (kml_push_sample(sample) && kml_decide_latest(&d) == -2) {
                fprintf(stderr, "fleet_main: kml_decide_latest had no window\n");
                return 1;
            }
            ++pushed;
            uptime = (uint32_t)((double)pushed / (double)KML_SAMPLE_RATE_HZ);
            if (uptime >= next) {
                kml_monitor_snapshot(uptime, record);
                if (fwrite(record, 1, sizeof record, stdout) != sizeof record) {
                    fprintf(stderr, "fleet_main: cannot write a record\n");
                    return 1;
                }
                next = (uptime / (uint32_t)every + 1u) * (uint32_t)every;
            }
        }
        /* a row split across reads: its first bytes move to the front */
        memmove(buffer, buffer + rows * ROW_BYTES, have - rows * ROW_BYTES);
        have -= rows * ROW_BYTES;
        if (got == 0) {
            break;
        }
    }
    if (ferror(stdin) || have != 0) {
        fprintf(stderr, "fleet_main: the samples ended inside a row (%lu bytes left)\n",
                (unsigned long)have);
        return 1;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "fleet_main: cannot write the records\n");
        return 1;
    }
    return 0;
}
