/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml verification harness for an emulated Cortex-M (QEMU, semihosting).
 *
 * Reads kml_in.bin from the host and writes kml_out.bin (little-endian):
 *   in:  int32 mode; mode 0 (windows): int32 n, then n windows of
 *        KML_WINDOW_SAMPLES x KML_CHANNELS float32;
 *        mode 1 (stream): int32 n_recordings, then per recording int32 n_samples
 *        and the samples (KML_CHANNELS float32 each).
 *   out: mode 0, per window: int32 label, float32 scores[KML_CLASSES],
 *        float32 features[KML_FEATURES], uint32 stack bytes used by kml_classify;
 *        mode 1, per completed window: int32 recording, int32 sample index,
 *        int32 label, float32 scores[KML_CLASSES], int32 decision, changed,
 *        candidate, float32 smoothed[KML_CLASSES] (kml_decide_latest); with a monitor
 *        (KML_MONITOR) then int32 kml_monitor_flags() and the 48-byte record of
 *        kml_monitor_snapshot at every KML_MONITOR_SNAPSHOT_EVERY-th window of a
 *        recording (uptime_s: the window's number; zeros otherwise), as host_main.c.
 *        mode 2 (recording, libraries of [window] mode = "recording"): int32
 *        n_recordings, then per recording int32 n_samples and the raw samples
 *        (at most KML_HARNESS_RECORDING_FLOATS floats, set by the build);
 *        out per recording: int32 kml_classify_recording's return, int32 out->label,
 *        float32 scores[KML_CLASSES] (out filled with 0xA5 bytes before the call),
 *        uint32 stack bytes used by the call.
 * kml_bench_begin/kml_bench_end bracket each kml_classify call (mode 0), each
 * kml_push_sample call (mode 1) and each kml_classify_recording call (mode 2); the
 * QEMU plugin counts the instructions between.
 */
#include <stdint.h>

#include "kiloml_model.h"
#include "measure.h"
#include "semihost.h"

#define STREAM_CHUNK 32 /* samples read per semihosting call */

static float window_buf[KML_WINDOW_SAMPLES * KML_CHANNELS];
static float feature_buf[KML_FEATURES];
static float sample_buf[STREAM_CHUNK * KML_CHANNELS];

/* kml_classify, measured: instructions (by the QEMU plugin) and stack depth. */
__attribute__((noinline)) static int32_t classify_measured(const float *window,
                                                           kml_result_t *result,
                                                           uint32_t *stack_bytes)
{
    int32_t label = 0;
    uint32_t used = 0;
    KML_MEASURE(label = kml_classify(window, result), used);
    *stack_bytes = used;
    return label;
}

static int run_windows(int32_t in, int32_t out)
{
    int32_t n, i;
    uint32_t stack_bytes;
    kml_result_t result;
    if (sh_read(in, &n, sizeof n) != 0) {
        return 1;
    }
    for (i = 0; i < n; ++i) {
        if (sh_read(in, window_buf, sizeof window_buf) != 0) {
            return 1;
        }
        kml_compute_features(window_buf, feature_buf);
        (void)classify_measured(window_buf, &result, &stack_bytes);
        if (sh_write(out, &result.label, sizeof result.label) != 0 ||
            sh_write(out, result.scores, sizeof result.scores) != 0 ||
            sh_write(out, feature_buf, sizeof feature_buf) != 0 ||
            sh_write(out, &stack_bytes, sizeof stack_bytes) != 0) {
            return 1;
        }
    }
    return 0;
}

#ifdef KML_MONITOR
static uint8_t monitor_record[KML_TELEMETRY_RECORD_BYTES];

static int write_monitor(int32_t out, int32_t window)
{
    int32_t flags = (int32_t)kml_monitor_flags();
    uint32_t i;
    for (i = 0; i < sizeof monitor_record; ++i) {
        monitor_record[i] = 0;
    }
    if (window % KML_MONITOR_SNAPSHOT_EVERY == 0) {
        kml_monitor_snapshot((uint32_t)window, monitor_record);
    }
    return sh_write(out, &flags, sizeof flags) == 0 &&
           sh_write(out, monitor_record, sizeof monitor_record) == 0;
}
#endif

static int run_stream(int32_t in, int32_t out)
{
    int32_t n_recordings, r, n_samples, s, k, chunk;
    kml_decision_t d;
#ifdef KML_MONITOR
    int32_t window;
#endif
    if (sh_read(in, &n_recordings, sizeof n_recordings) != 0) {
        return 1;
    }
    for (r = 0; r < n_recordings; ++r) {
        if (sh_read(in, &n_samples, sizeof n_samples) != 0) {
            return 1;
        }
        kml_reset();
#ifdef KML_MONITOR
        kml_monitor_restart();
        window = 0;
#endif
        for (s = 0; s < n_samples; s += chunk) {
            chunk = (n_samples - s < STREAM_CHUNK) ? n_samples - s : STREAM_CHUNK;
            if (sh_read(in, sample_buf, (uint32_t)(chunk * KML_CHANNELS * sizeof(float))) != 0) {
                return 1;
            }
            for (k = 0; k < chunk; ++k) {
                int32_t complete;
                kml_bench_begin(); /* instructions per pushed sample */
                complete = kml_push_sample(&sample_buf[k * KML_CHANNELS]);
                kml_bench_end();
                if (complete) {
                    int32_t index = s + k;
                    if (kml_decide_latest(&d) == -2) {
                        return 1;
                    }
                    if (sh_write(out, &r, sizeof r) != 0 ||
                        sh_write(out, &index, sizeof index) != 0 ||
                        sh_write(out, &d.label, sizeof d.label) != 0 ||
                        sh_write(out, d.scores, sizeof d.scores) != 0 ||
                        sh_write(out, &d.decision, 3 * sizeof(int32_t)) != 0 ||
                        sh_write(out, d.smoothed, sizeof d.smoothed) != 0) {
                        return 1;
                    }
#ifdef KML_MONITOR
                    if (!write_monitor(out, ++window)) {
                        return 1;
                    }
#endif
                }
            }
        }
    }
    return 0;
}

#ifdef KML_RECORDING
#ifndef KML_HARNESS_RECORDING_FLOATS
#define KML_HARNESS_RECORDING_FLOATS KML_CHANNELS
#endif
static float recording_buf[KML_HARNESS_RECORDING_FLOATS];

/* kml_classify_recording, measured: instructions and stack depth. */
__attribute__((noinline)) static int32_t classify_recording_measured(int32_t n_samples,
                                                                     kml_result_t *result,
                                                                     uint32_t *stack_bytes)
{
    int32_t label = 0;
    uint32_t used = 0;
    KML_MEASURE(label = kml_classify_recording(recording_buf, n_samples, result), used);
    *stack_bytes = used;
    return label;
}

static int run_recordings(int32_t in, int32_t out)
{
    int32_t n_recordings, r, n_samples, label;
    uint32_t stack_bytes, i;
    kml_result_t result;
    uint8_t *bytes = (uint8_t *)&result;
    if (sh_read(in, &n_recordings, sizeof n_recordings) != 0) {
        return 1;
    }
    for (r = 0; r < n_recordings; ++r) {
        if (sh_read(in, &n_samples, sizeof n_samples) != 0 || n_samples < 0 ||
            n_samples > KML_HARNESS_RECORDING_FLOATS / KML_CHANNELS) {
            return 1;
        }
        if (n_samples > 0 &&
            sh_read(in, recording_buf, (uint32_t)n_samples * KML_CHANNELS * sizeof(float)) != 0) {
            return 1;
        }
        for (i = 0; i < sizeof result; ++i) {
            bytes[i] = 0xA5;
        }
        label = classify_recording_measured(n_samples, &result, &stack_bytes);
        if (sh_write(out, &label, sizeof label) != 0 ||
            sh_write(out, &result.label, sizeof result.label) != 0 ||
            sh_write(out, result.scores, sizeof result.scores) != 0 ||
            sh_write(out, &stack_bytes, sizeof stack_bytes) != 0) {
            return 1;
        }
    }
    return 0;
}
#endif

int main(void)
{
    int32_t in = sh_open("kml_in.bin", 1);
    int32_t out = sh_open("kml_out.bin", 5);
    int32_t mode;
    int status;
    if (in < 0 || out < 0 || sh_read(in, &mode, sizeof mode) != 0) {
        return 1;
    }
#ifdef KML_RECORDING
    if (mode == 2) {
        status = run_recordings(in, out);
    } else
#endif
    {
        status = (mode == 1) ? run_stream(in, out) : run_windows(in, out);
    }
    sh_close(in);
    sh_close(out);
    return status;
}
