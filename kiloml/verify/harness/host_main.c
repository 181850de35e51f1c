/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml host verification harness: runs the generated library on files.
 *
 *   host_main windows IN OUT   IN: int32 n, then n windows of
 *                              KML_WINDOW_SAMPLES x KML_CHANNELS float32.
 *                              OUT per window: int32 label, float32 scores[KML_CLASSES],
 *                              float32 features[KML_FEATURES].
 *   host_main stream IN OUT    IN: int32 n_recordings, then per recording int32
 *                              n_samples and n_samples x KML_CHANNELS float32.
 *                              OUT per completed window: int32 recording, int32 sample
 *                              index of the window's last sample, int32 label,
 *                              float32 scores[KML_CLASSES], then the decision layer's
 *                              int32 decision, changed, candidate and float32
 *                              smoothed[KML_CLASSES] (kml_decide_latest); with a
 *                              monitor (KML_MONITOR) then int32 kml_monitor_flags() and
 *                              48 bytes: the telemetry record kml_monitor_snapshot writes
 *                              at every KML_MONITOR_SNAPSHOT_EVERY-th window of a
 *                              recording (uptime_s: that window's number), else zeros;
 *                              kml_monitor_restart() before each recording.
 *   host_main recording IN OUT IN: int32 n_recordings, then per recording int32
 *                              n_samples and n_samples x KML_CHANNELS float32 (raw).
 *                              OUT per recording: int32 kml_classify_recording's
 *                              return, int32 out->label, float32 scores[KML_CLASSES];
 *                              out is filled with 0xA5 bytes before each call, so a
 *                              refused recording (-1) shows whether out was left alone.
 *                              Only in libraries of [window] mode = "recording".
 * Little-endian host byte order throughout. Exit code 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiloml_model.h"

static float window_buf[KML_WINDOW_SAMPLES * KML_CHANNELS];
static float feature_buf[KML_FEATURES];

static int read_exact(FILE *f, void *dst, size_t size, size_t count)
{
    return fread(dst, size, count, f) == count;
}

static int write_exact(FILE *f, const void *src, size_t size, size_t count)
{
    return fwrite(src, size, count, f) == count;
}

static int run_windows(FILE *in, FILE *out)
{
    int32_t n, i;
    kml_result_t result;
    if (!read_exact(in, &n, sizeof n, 1)) {
        return 1;
    }
    for (i = 0; i < n; ++i) {
        if (!read_exact(in, window_buf, sizeof(float), KML_WINDOW_SAMPLES * KML_CHANNELS)) {
            return 1;
        }
        kml_compute_features(window_buf, feature_buf);
        kml_classify(window_buf, &result);
        if (!write_exact(out, &result.label, sizeof(int32_t), 1) ||
            !write_exact(out, result.scores, sizeof(float), KML_CLASSES) ||
            !write_exact(out, feature_buf, sizeof(float), KML_FEATURES)) {
            return 1;
        }
    }
    return 0;
}

#ifdef KML_MONITOR
static uint8_t monitor_record[KML_TELEMETRY_RECORD_BYTES];

static int write_monitor(FILE *out, int32_t window)
{
    int32_t flags = (int32_t)kml_monitor_flags();
    memset(monitor_record, 0, sizeof monitor_record);
    if (window % KML_MONITOR_SNAPSHOT_EVERY == 0) {
        kml_monitor_snapshot((uint32_t)window, monitor_record);
    }
    return write_exact(out, &flags, sizeof flags, 1) &&
           write_exact(out, monitor_record, 1, sizeof monitor_record);
}
#endif

static int run_stream(FILE *in, FILE *out)
{
    int32_t n_recordings, r, n_samples, s;
    float sample[KML_CHANNELS];
    kml_decision_t d;
#ifdef KML_MONITOR
    int32_t window;
#endif
    if (!read_exact(in, &n_recordings, sizeof n_recordings, 1)) {
        return 1;
    }
    for (r = 0; r < n_recordings; ++r) {
        if (!read_exact(in, &n_samples, sizeof n_samples, 1)) {
            return 1;
        }
        kml_reset();
#ifdef KML_MONITOR
        kml_monitor_restart();
        window = 0;
#endif
        for (s = 0; s < n_samples; ++s) {
            if (!read_exact(in, sample, sizeof(float), KML_CHANNELS)) {
                return 1;
            }
            if (kml_push_sample(sample)) {
                if (kml_decide_latest(&d) == -2) {
                    return 1;
                }
                if (!write_exact(out, &r, sizeof r, 1) || !write_exact(out, &s, sizeof s, 1) ||
                    !write_exact(out, &d.label, sizeof(int32_t), 1) ||
                    !write_exact(out, d.scores, sizeof(float), KML_CLASSES) ||
                    !write_exact(out, &d.decision, sizeof(int32_t), 1) ||
                    !write_exact(out, &d.changed, sizeof(int32_t), 1) ||
                    !write_exact(out, &d.candidate, sizeof(int32_t), 1) ||
                    !write_exact(out, d.smoothed, sizeof(float), KML_CLASSES)) {
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
    return 0;
}

#ifdef KML_RECORDING
static int run_recordings(FILE *in, FILE *out)
{
    int32_t n_recordings, r, n_samples, label;
    kml_result_t result;
    float *samples;
    if (!read_exact(in, &n_recordings, sizeof n_recordings, 1)) {
        return 1;
    }
    for (r = 0; r < n_recordings; ++r) {
        if (!read_exact(in, &n_samples, sizeof n_samples, 1) || n_samples < 0) {
            return 1;
        }
        /* exactly the recording's size (one row more for an empty one): ASan sees a read
         * past its end */
        samples = malloc(((size_t)n_samples + (n_samples == 0)) * KML_CHANNELS * sizeof(float));
        if (samples == NULL) {
            return 1;
        }
        if (!read_exact(in, samples, sizeof(float), (size_t)n_samples * KML_CHANNELS)) {
            free(samples);
            return 1;
        }
        memset(&result, 0xA5, sizeof result);
        label = kml_classify_recording(samples, n_samples, &result);
        free(samples);
        if (!write_exact(out, &label, sizeof label, 1) ||
            !write_exact(out, &result.label, sizeof(int32_t), 1) ||
            !write_exact(out, result.scores, sizeof(float), KML_CLASSES)) {
            return 1;
        }
    }
    return 0;
}
#endif

int main(int argc, char **argv)
{
    FILE *in, *out;
    int status;
    if (argc != 4) {
        fprintf(stderr, "usage: %s windows|stream|recording IN OUT\n", argv[0]);
        return 2;
    }
    in = fopen(argv[2], "rb");
    out = fopen(argv[3], "wb");
    if (!in || !out) {
        fprintf(stderr, "cannot open input or output file\n");
        return 2;
    }
    if (strcmp(argv[1], "recording") == 0) {
#ifdef KML_RECORDING
        status = run_recordings(in, out);
#else
        fprintf(stderr, "this library has no kml_classify_recording\n");
        status = 2;
#endif
    } else {
        status = strcmp(argv[1], "stream") == 0 ? run_stream(in, out) : run_windows(in, out);
    }
    fclose(in);
    if (fclose(out) != 0) {
        status = 1;
    }
    if (status) {
        fprintf(stderr, "harness: short read or write\n");
    }
    return status;
}
