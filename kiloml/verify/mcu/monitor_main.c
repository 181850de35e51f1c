/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml monitor harness: kml_monitor.c on a stream, for parity with kiloml/monitor/.
 * Built for the host (-DKML_MONITOR_HOST: argv[1] in, argv[2] out, stdio) or for QEMU
 * (semihosting, kml_in.bin -> kml_out.bin; each measured call between
 * kml_bench_begin/kml_bench_end for the instruction counter).
 *   in:  int32 k, channels, classes, stuck_windows, features, snapshot_every, n,
 *        measure (QEMU: 0 counts each update's instructions, 1 each snapshot's), energy
 *        (1: the OOD input is the window's energy less the offset, kml_monitor_update_ood);
 *        int32 index[k]; float32 mean, inv_sd, lo, hi [k]; float32 floor[channels];
 *        float32 constants[KML_HARNESS_CONSTANTS] (kiloml/monitor/harness.py's order);
 *        uint8 model_id[8]; float32 energy offset; per window: float32 features[features],
 *        variance[channels], smoothed[classes], energy, int32 decision, uncertain,
 *        uint32 uptime.
 *   out: per window: uint32 update's flags, kml_monitor_state_flags(), float32 state signals
 *        (z_mean[k], z_var[k], run[KML_MON_RUN], ph n/mean/up/down), and after every snapshot_every-th window the 48-byte record. */
#include <stdint.h>

#include "kml_monitor.h"

#define MAX_K 32
#define MAX_CHANNELS 32
#define MAX_CLASSES 64
#define MAX_FEATURES 1024
#define KML_HARNESS_CONSTANTS (8 + KML_MON_RUN_INIT + KML_MON_RUN + 2 * KML_MON_PH + 2)

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

#ifdef KML_MONITOR_EMITTED
/* kiloml.monitor.emit's C for the monitor "kml_emitted" (the stream's parameters are still
 * read, and ignored): checks that the emitted constants are the twin's */
void kml_emitted_init(void);
#include KML_MONITOR_EMITTED
#endif

static int32_t index_[MAX_K];
static float mean[MAX_K], inv_sd[MAX_K], lo[MAX_K], hi[MAX_K], floor_[MAX_CHANNELS];
static float z_mean[MAX_K], z_var[MAX_K];
static uint16_t flat_run[MAX_CHANNELS];
static float features[MAX_FEATURES], variance[MAX_CHANNELS], smoothed[MAX_CLASSES];

static int run(void)
{
    int32_t head[9], i, extra[3];
    float c[KML_HARNESS_CONSTANTS], sig[2 * MAX_K + 6 + 4 * KML_MON_PH], offset, energy;
    uint8_t model_id[8], record[KML_TELEMETRY_BYTES];
    uint32_t out_flags[2];
    kml_monitor_params p;
    kml_monitor_state s;
    if (get(head, sizeof head) != 0 || head[0] > MAX_K || head[1] > MAX_CHANNELS ||
        head[2] > MAX_CLASSES || head[4] > MAX_FEATURES) {
        return 1;
    }
    p.n_monitored = (uint16_t)head[0];
    p.n_channels = (uint16_t)head[1];
    p.n_classes = (uint16_t)head[2];
    p.stuck_windows = (uint16_t)head[3];
    if (get(index_, 4u * (uint32_t)p.n_monitored) != 0 ||
        get(mean, 4u * (uint32_t)p.n_monitored) != 0 ||
        get(inv_sd, 4u * (uint32_t)p.n_monitored) != 0 ||
        get(lo, 4u * (uint32_t)p.n_monitored) != 0 ||
        get(hi, 4u * (uint32_t)p.n_monitored) != 0 ||
        get(floor_, 4u * (uint32_t)p.n_channels) != 0 || get(c, sizeof c) != 0 ||
        get(model_id, sizeof model_id) != 0 || get(&offset, sizeof offset) != 0) {
        return 1;
    }
    p.index = index_;
    p.mean = mean;
    p.inv_sd = inv_sd;
    p.lo = lo;
    p.hi = hi;
    p.floor = floor_;
    p.alpha = c[0];
    p.one_minus_alpha = c[1];
    p.z_clip = c[2];
    p.inv_k = c[3];
    p.inv_log2_classes = c[4];
    p.z_limit = c[5];
    p.var_lo = c[6];
    p.var_hi = c[7];
    for (i = 0; i < KML_MON_RUN_INIT; ++i) {
        p.run_init[i] = c[8 + i];
    }
    for (i = 0; i < KML_MON_RUN; ++i) {
        p.run_limit[i] = c[8 + KML_MON_RUN_INIT + i];
    }
    for (i = 0; i < KML_MON_PH; ++i) {
        p.ph_delta[i] = c[8 + KML_MON_RUN_INIT + KML_MON_RUN + i];
        p.ph_lambda[i] = c[8 + KML_MON_RUN_INIT + KML_MON_RUN + KML_MON_PH + i];
    }
    p.ph_cap = c[KML_HARNESS_CONSTANTS - 2];
    p.ph_min_windows = c[KML_HARNESS_CONSTANTS - 1];
    s.z_mean = z_mean;
    s.z_var = z_var;
    s.flat_run = flat_run;
    kml_monitor_reset(&p, &s);
#ifdef KML_MONITOR_EMITTED
    kml_emitted_init();
    p = kml_emitted_params;
    s = kml_emitted_state;
#endif
    for (i = 0; i < head[6]; ++i) {
        int32_t j, n = 0;
        uint16_t flags = 0;
        if (get(features, 4u * (uint32_t)head[4]) != 0 ||
            get(variance, 4u * (uint32_t)p.n_channels) != 0 ||
            get(smoothed, 4u * (uint32_t)p.n_classes) != 0 ||
            get(&energy, sizeof energy) != 0 || get(extra, sizeof extra) != 0) {
            return 1;
        }
        if (head[8]) { /* as the library's step: the energy less its training offset */
            const float ood = energy - offset;
            if (head[7] == 0) {
                MEASURED(flags = kml_monitor_update_ood(&p, &s, features, variance, smoothed,
                                                        extra[0], extra[1], ood));
            } else {
                flags = kml_monitor_update_ood(&p, &s, features, variance, smoothed, extra[0],
                                               extra[1], ood);
            }
        } else if (head[7] == 0) {
            MEASURED(flags = kml_monitor_update(&p, &s, features, variance, smoothed,
                                                extra[0], extra[1]));
        } else {
            flags = kml_monitor_update(&p, &s, features, variance, smoothed, extra[0],
                                       extra[1]);
        }
        out_flags[0] = flags;
        out_flags[1] = kml_monitor_state_flags(&s);
        for (j = 0; j < p.n_monitored; ++j) {
            sig[n++] = s.z_mean[j];
        }
        for (j = 0; j < p.n_monitored; ++j) {
            sig[n++] = s.z_var[j];
        }
        for (j = 0; j < KML_MON_RUN; ++j) {
            sig[n++] = s.run[j];
        }
        for (j = 0; j < KML_MON_PH; ++j) {
            sig[n++] = s.ph_n[j];
        }
        for (j = 0; j < KML_MON_PH; ++j) {
            sig[n++] = s.ph_mean[j];
        }
        for (j = 0; j < KML_MON_PH; ++j) {
            sig[n++] = s.ph_up[j];
        }
        for (j = 0; j < KML_MON_PH; ++j) {
            sig[n++] = s.ph_down[j];
        }
        if (put(out_flags, sizeof out_flags) != 0 || put(sig, 4u * (uint32_t)n) != 0) {
            return 1;
        }
        if ((i + 1) % head[5] == 0) {
            if (head[7] == 1) {
                MEASURED(kml_monitor_write_snapshot(&p, &s, model_id, (uint32_t)extra[2], record));
            } else {
                kml_monitor_write_snapshot(&p, &s, model_id, (uint32_t)extra[2], record);
            }
            if (put(record, sizeof record) != 0) {
                return 1;
            }
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
