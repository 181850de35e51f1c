/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml monitor energy harness: kml_monitor_energy / kml_monitor_energy_s8 on rows of
 * logits, for parity with kiloml/monitor/energy.py. Built for the host (-DKML_MONITOR_HOST:
 * argv[1] in, argv[2] out) or for QEMU (semihosting, kml_in.bin -> kml_out.bin; each call
 * between kml_bench_begin/kml_bench_end for the instruction counter).
 *   in:  int32 rows, n (logits per row), int8 (1: int8 logits with a scale and zero point);
 *        float32 scale; int32 zero_point; per row n float32 (or, int8, n int8) logits.
 *   out: per row the float32 energy. */
#include <stdint.h>

#include "kml_monitor.h"

#define MAX_N 256

#ifdef KML_MONITOR_HOST
#include <stdio.h>
static FILE *in_file, *out_file;
static int get(void *buf, uint32_t n) { return fread(buf, 1, n, in_file) == n ? 0 : 1; }
static int put(const void *buf, uint32_t n)
{
    return fwrite(buf, 1, n, out_file) == n ? 0 : 1;
}
#define MEASURED(call) call
#else
#include "measure.h"
#include "semihost.h"
static int32_t in_h, out_h;
static int get(void *buf, uint32_t n) { return sh_read(in_h, buf, n); }
static int put(const void *buf, uint32_t n) { return sh_write(out_h, buf, n); }
#define MEASURED(call)        \
    do {                      \
        kml_bench_begin();    \
        call;                 \
        kml_bench_end();      \
    } while (0)
#endif

static float logits[MAX_N];
static int8_t quantized[MAX_N];

static int run(void)
{
    int32_t head[3], zero_point, i;
    float scale, e;
    if (get(head, sizeof head) != 0 || head[1] < 0 || head[1] > MAX_N ||
        get(&scale, sizeof scale) != 0 || get(&zero_point, sizeof zero_point) != 0) {
        return 1;
    }
    for (i = 0; i < head[0]; ++i) {
        if (head[2]) {
            if (get(quantized, (uint32_t)head[1]) != 0) {
                return 1;
            }
            MEASURED(e = kml_monitor_energy_s8(quantized, head[1], scale, zero_point));
        } else {
            if (get(logits, 4u * (uint32_t)head[1]) != 0) {
                return 1;
            }
            MEASURED(e = kml_monitor_energy(logits, head[1]));
        }
        if (put(&e, sizeof e) != 0) {
            return 1;
        }
    }
    return 0;
}

#ifdef KML_MONITOR_HOST
int main(int argc, char **argv)
{
    int rc;
    if (argc != 3) {
        return 2;
    }
    in_file = fopen(argv[1], "rb");
    out_file = fopen(argv[2], "wb");
    if (in_file == NULL || out_file == NULL) {
        return 2;
    }
    rc = run();
    fclose(in_file);
    fclose(out_file);
    return rc;
}
#else
int main(void)
{
    int rc;
    in_h = sh_open("kml_in.bin", 1);
    out_h = sh_open("kml_out.bin", 5);
    if (in_h < 0 || out_h < 0) {
        return 1;
    }
    rc = run();
    sh_close(in_h);
    sh_close(out_h);
    return rc;
}
#endif
