/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml parameter-blob harness: an updatable library, blobs checked and activated one
 * after another, and the windows classified and decided after each. Built for the host
 * (-DKML_BLOB_HOST: argv[1] in, argv[2] out, stdio; the sanitizer builds) or for QEMU
 * (semihosting, kml_in.bin -> kml_out.bin; each kml_blob_check and kml_blob_activate
 * between kml_bench_begin/kml_bench_end for the instruction counter).
 *   in:  int32 n_windows, float32 windows[n][KML_WINDOW_SAMPLES][KML_CHANNELS], then ops
 *        (int32 each): 0 end; 1 blob: uint32 bytes, uint32 misalign (0: at an 8-byte
 *        boundary), the bytes (padded to 4); 2 allow downgrade: int32 on; 3 set the
 *        minimum counter: uint32; 4 classify: kml_reset, then every window; 5 snapshot:
 *        the monitor's 48-byte telemetry record (zeros without a monitor).
 *   out: per blob: int32 check, activate, selftest (after), uint32 min counter, active
 *        counter, stack bytes of the check and of the activation (QEMU; 0 on the host);
 *        per classify: per window int32 label, decision, float32 scores[K]; per
 *        snapshot: the record.
 * Blobs go to the buffer the active one is not in (a two-slot partition): the active
 * blob's bytes stay where they are. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include <stdint.h>

#include "kiloml_model.h"
#include "kml_blob.h"

#ifndef KML_HARNESS_BLOB_BYTES
#define KML_HARNESS_BLOB_BYTES (256u * 1024u)
#endif
#ifndef KML_HARNESS_WINDOW_FLOATS
#define KML_HARNESS_WINDOW_FLOATS (256u * 1024u)
#endif

#ifdef KML_BLOB_HOST
#include <stdio.h>
static FILE *in_file, *out_file;
static int get(void *buf, uint32_t n) { return fread(buf, 1, n, in_file) == n ? 0 : 1; }
static int put(const void *buf, uint32_t n)
{
    return fwrite(buf, 1, n, out_file) == n ? 0 : 1;
}
static int32_t measured_check(const uint8_t *blob, uint32_t n, uint32_t *stack)
{
    *stack = 0u;
    return kml_blob_check(blob, n);
}
static int32_t measured_activate(const uint8_t *blob, uint32_t n, uint32_t *stack)
{
    *stack = 0u;
    return kml_blob_activate(blob, n);
}
#else
#include "measure.h"
#include "semihost.h"
static int32_t in_h, out_h;
static int get(void *buf, uint32_t n) { return sh_read(in_h, buf, n); }
static int put(const void *buf, uint32_t n) { return sh_write(out_h, buf, n); }
/* each in its own frame: KML_MEASURE paints the stack below it (measure.h) */
static __attribute__((noinline)) int32_t measured_check(const uint8_t *blob, uint32_t n,
                                                        uint32_t *stack)
{
    int32_t r;
    uint32_t used;
    KML_MEASURE(r = kml_blob_check(blob, n), used);
    *stack = used;
    return r;
}
static __attribute__((noinline)) int32_t measured_activate(const uint8_t *blob, uint32_t n,
                                                           uint32_t *stack)
{
    int32_t r;
    uint32_t used;
    KML_MEASURE(r = kml_blob_activate(blob, n), used);
    *stack = used;
    return r;
}
#endif

#define WINDOW_FLOATS (KML_WINDOW_SAMPLES * KML_CHANNELS)

static uint64_t blob_buffer[2][KML_HARNESS_BLOB_BYTES / 8u + 1u];
static float windows[KML_HARNESS_WINDOW_FLOATS];

static int classify(int32_t n)
{
    int32_t i;
    kml_reset();
    for (i = 0; i < n; ++i) {
        kml_result_t r;
        kml_decision_t d;
        int32_t head[2];
        (void)kml_classify(windows + (uint32_t)i * WINDOW_FLOATS, &r);
        (void)kml_decide(&r, &d);
        head[0] = r.label;
        head[1] = d.decision;
        if (put(head, sizeof head) != 0 || put(r.scores, sizeof r.scores) != 0) {
            return 1;
        }
    }
    return 0;
}

static int run(void)
{
    int32_t n, active = -1, op;
    if (get(&n, 4u) != 0 || n < 0 || (uint32_t)n > KML_HARNESS_WINDOW_FLOATS / WINDOW_FLOATS ||
        get(windows, 4u * (uint32_t)n * WINDOW_FLOATS) != 0) {
        return 1;
    }
    for (;;) {
        if (get(&op, 4u) != 0) {
            return 1;
        }
        if (op == 0) {
            return 0;
        } else if (op == 1) {
            uint32_t head[2], padded;
            int32_t out[3];
            uint32_t counters[4];
            const int32_t slot = active == 0 ? 1 : 0;
            uint8_t *bytes;
            if (get(head, sizeof head) != 0 || head[0] > KML_HARNESS_BLOB_BYTES ||
                head[1] > 7u) {
                return 1;
            }
            bytes = (uint8_t *)blob_buffer[slot] + head[1];
            padded = (head[0] + 3u) & ~3u;
            if (get(bytes, padded) != 0) {
                return 1;
            }
            out[0] = measured_check(bytes, head[0], &counters[2]);
            out[1] = measured_activate(bytes, head[0], &counters[3]);
            out[2] = kml_selftest();
            if (out[1] == KML_BLOB_OK) {
                active = slot;
            }
            counters[0] = kml_blob_min_counter();
            counters[1] = kml_blob_active_counter();
            if (put(out, sizeof out) != 0 || put(counters, sizeof counters) != 0) {
                return 1;
            }
        } else if (op == 2 || op == 3) {
            uint32_t v;
            if (get(&v, 4u) != 0) {
                return 1;
            }
            if (op == 2) {
                kml_blob_allow_downgrade((int32_t)v);
            } else {
                kml_blob_set_min_counter(v);
            }
        } else if (op == 4) {
            if (classify(n) != 0) {
                return 1;
            }
        } else if (op == 5) {
            uint8_t record[48] = {0};
#ifdef KML_MONITOR
            kml_monitor_snapshot(0u, record);
#endif
            if (put(record, sizeof record) != 0) {
                return 1;
            }
        } else {
            return 1;
        }
    }
}

#ifdef KML_BLOB_HOST
int main(int argc, char **argv)
{
    int status;
    if (argc != 3 || (in_file = fopen(argv[1], "rb")) == NULL ||
        (out_file = fopen(argv[2], "wb")) == NULL) {
        return 2;
    }
    status = run();
    fclose(in_file);
    return fclose(out_file) == 0 ? status : 1;
}
#else
int main(void)
{
    int status;
    in_h = sh_open("kml_in.bin", 1);
    out_h = sh_open("kml_out.bin", 5);
    if (in_h < 0 || out_h < 0) {
        sh_exit(0);
    }
    status = run();
    sh_close(out_h);
    sh_exit(status == 0);
}
#endif
