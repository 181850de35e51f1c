/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml sanitizer harness for a generated pipeline library (kiloml_model.h).
 *
 *   sanitize_main SEED WINDOWS STREAM_WINDOWS DECIDE_CALLS DUMP DUMP_WINDOWS DUMP_STREAMS
 *                 DUMP_BLOCKS
 *
 * Built with AddressSanitizer and UndefinedBehaviorSanitizer (kiloml/verify/sanitize.py),
 * it generates its inputs from SEED (sanitize_values.h) and calls every public entry
 * point: kml_compute_features and kml_classify on WINDOWS windows (then kml_decide on
 * each result), kml_push_sample across streams of many windows with kml_decide_latest
 * and kml_classify_latest at every reported window (STREAM_WINDOWS in all, kml_reset
 * before each stream), kml_decide on DECIDE_CALLS random results (scores of every value
 * class), and kml_preprocess_sample alone. Every buffer it passes is allocated at its
 * exact size so that an overrun is reported. It checks the API's promises (labels and
 * decisions in range, finite scores, -1 / -2 before the first window, the same window
 * classified twice gives the same bits) and prints a one-line JSON summary.
 *
 * The first DUMP_WINDOWS windows, DUMP_STREAMS streams and DUMP_BLOCKS decision blocks
 * (every second one made of finite values only) are written with their outputs to
 * DUMP.windows, DUMP.stream and DUMP.decide for the comparison with the Python
 * reference:
 *   windows: per window int32 kind, int32 finite, float32 window[T][C], int32 label,
 *            float32 scores[K], float32 features[F]
 *   stream:  per stream int32 finite, int32 n_samples, float32 samples[n][C], int32
 *            n_events, then per event host_main.c's stream record (int32 stream, int32
 *            sample, int32 label, float32 scores[K], int32 decision, changed,
 *            candidate, float32 smoothed[K])
 *   decide:  per block int32 finite, int32 n, then per call int32 label, float32
 *            scores[K], int32 decision, changed, candidate, float32 smoothed[K]
 * Exit status 0 when every check passed; a sanitizer report aborts the run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiloml_model.h"
#include "sanitize_values.h"

#define MAX_STREAM_WINDOWS 14
#define MAX_STREAM_SAMPLES \
    ((KML_WINDOW_SAMPLES + (MAX_STREAM_WINDOWS - 1) * KML_STRIDE_SAMPLES + 1) * KML_DECIMATION)
#define CHECK(cond, what) do { if (!(cond)) { fail(what, __LINE__); } } while (0)

static long long kind_counts[KML_SAN_KINDS];
static long long label_counts[KML_CLASSES];
static long long stream_label_counts[KML_CLASSES];
static long long decision_counts[KML_CLASSES + 1]; /* [0]: uncertain */
static uint64_t checksum = 1469598103934665603ull;

static void fail(const char *what, int line)
{
    fprintf(stderr, "sanitize_main: check failed at line %d: %s\n", line, what);
    exit(1);
}

static void *alloc_exact(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    CHECK(p != NULL, "out of memory");
    return p;
}

static void hash_bytes(const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i;
    for (i = 0; i < n; ++i) {
        checksum = (checksum ^ p[i]) * 1099511628211ull;
    }
}

static void put(FILE *f, const void *data, size_t size, size_t count)
{
    if (f != NULL && count && fwrite(data, size, count, f) != count) {
        fail("short write to the dump", __LINE__);
    }
}

static void check_result(const kml_result_t *r, int32_t returned)
{
    int32_t k;
    CHECK(returned == r->label, "kml_classify's return value is not out->label");
    CHECK(r->label >= 0 && r->label < KML_CLASSES, "label out of range");
    for (k = 0; k < KML_CLASSES; ++k) {
        CHECK(isfinite(r->scores[k]), "a score is not finite");
    }
}

static void check_decision(const kml_decision_t *d, int32_t returned)
{
    CHECK(returned == d->decision, "kml_decide's return value is not out->decision");
    CHECK(d->decision >= KML_UNCERTAIN && d->decision < KML_CLASSES, "decision out of range");
    CHECK(d->candidate >= KML_UNCERTAIN && d->candidate < KML_CLASSES,
          "candidate out of range");
    CHECK(d->changed == 0 || d->changed == 1, "changed is neither 0 nor 1");
    ++decision_counts[d->decision + 1];
    hash_bytes(&d->decision, sizeof d->decision);
}

#ifdef KML_MONITOR
/* The monitor after kml_decide_latest: only its named flag bits, and every telemetry
 * record whole (magic, version, classes, CRC-16/CCITT-FALSE over bytes 0..45). */
static long long monitor_records, monitor_flagged;

static void check_monitor(int32_t window, uint32_t uptime_s)
{
    uint16_t flags = kml_monitor_flags();
    CHECK((flags & ~0x7Fu) == 0, "a reserved monitor flag bit is set");
    monitor_flagged += flags != 0;
    if (window % 5 == 4) {
        uint8_t rec[KML_TELEMETRY_RECORD_BYTES + 1];
        uint16_t crc = 0xFFFF;
        int32_t i, bit;
        rec[KML_TELEMETRY_RECORD_BYTES] = 0xA5; /* a guard byte after the record */
        kml_monitor_snapshot(uptime_s, rec);
        CHECK(rec[KML_TELEMETRY_RECORD_BYTES] == 0xA5, "the snapshot wrote past 48 bytes");
        CHECK(rec[0] == 0x4B && rec[1] == 0x54 && rec[2] == 1, "bad record magic / version");
        CHECK(rec[3] == KML_CLASSES, "the record's class count");
        for (i = 0; i < 46; ++i) {
            crc ^= (uint16_t)(rec[i] << 8);
            for (bit = 0; bit < 8; ++bit) {
                uint32_t wide = (uint32_t)crc << 1;
                crc = (uint16_t)((crc & 0x8000u) ? wide ^ 0x1021u : wide);
            }
        }
        CHECK(rec[46] == (crc & 0xFF) && rec[47] == (crc >> 8), "the record's CRC");
        CHECK(((uint16_t)(rec[44] | (rec[45] << 8)) & ~0x7Fu) == 0,
              "a reserved flag bit in the record");
        hash_bytes(rec, KML_TELEMETRY_RECORD_BYTES);
        ++monitor_records;
    }
}
#endif

static int all_finite(const float *x, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        if (!isfinite(x[i])) {
            return 0;
        }
    }
    return 1;
}

static void run_windows(long long n, long long dump_n, FILE *dump)
{
    float *window = (float *)alloc_exact(sizeof(float) * KML_WINDOW_SAMPLES * KML_CHANNELS);
    float *features = (float *)alloc_exact(sizeof(float) * KML_FEATURES);
    kml_result_t *result = (kml_result_t *)alloc_exact(sizeof *result);
    kml_decision_t *decision = (kml_decision_t *)alloc_exact(sizeof *decision);
    kml_san_class_t cls;
    long long i;
    kml_reset();
    for (i = 0; i < n; ++i) {
        const int dumped = i < dump_n;
        const int finite_only = dumped && (i % 2 == 0);
        int32_t kind = kml_san_pick(finite_only), label, finite;
        kml_san_class_init(&cls, kind, KML_CHANNELS, KML_WINDOW_SAMPLES, finite_only);
        kml_san_fill(window, KML_WINDOW_SAMPLES, KML_CHANNELS, &cls);
        ++kind_counts[kind];
        kml_compute_features(window, features);
        label = kml_classify(window, result);
        check_result(result, label);
        ++label_counts[label];
        hash_bytes(result, sizeof *result);
        if (i % 64 == 0) {
            kml_reset();
        }
        check_decision(decision, kml_decide(result, decision));
        if (dumped) {
            finite = all_finite(window, KML_WINDOW_SAMPLES * KML_CHANNELS);
            put(dump, &kind, sizeof kind, 1);
            put(dump, &finite, sizeof finite, 1);
            put(dump, window, sizeof(float), KML_WINDOW_SAMPLES * KML_CHANNELS);
            put(dump, &result->label, sizeof(int32_t), 1);
            put(dump, result->scores, sizeof(float), KML_CLASSES);
            put(dump, features, sizeof(float), KML_FEATURES);
        }
    }
    free(window);
    free(features);
    free(result);
    free(decision);
}

typedef struct {
    int32_t stream, sample, label;
    float scores[KML_CLASSES];
    int32_t decision, changed, candidate;
    float smoothed[KML_CLASSES];
} event_t;

static void put_event(FILE *f, const event_t *e)
{
    put(f, &e->stream, sizeof(int32_t), 1);
    put(f, &e->sample, sizeof(int32_t), 1);
    put(f, &e->label, sizeof(int32_t), 1);
    put(f, e->scores, sizeof(float), KML_CLASSES);
    put(f, &e->decision, sizeof(int32_t), 1);
    put(f, &e->changed, sizeof(int32_t), 1);
    put(f, &e->candidate, sizeof(int32_t), 1);
    put(f, e->smoothed, sizeof(float), KML_CLASSES);
}

static float stream_buf[MAX_STREAM_SAMPLES * KML_CHANNELS];
static event_t events[MAX_STREAM_WINDOWS + 1];

/* One stream: segments of random classes and lengths; returns the windows reported. */
static int32_t run_stream(int32_t index, int finite_only, long long *pushed, FILE *dump)
{
    const int32_t windows = 1 + kml_san_below(MAX_STREAM_WINDOWS);
    const int32_t n = (KML_WINDOW_SAMPLES + (windows - 1) * KML_STRIDE_SAMPLES) * KML_DECIMATION
                      + kml_san_below(KML_DECIMATION);
    float *sample = (float *)alloc_exact(sizeof(float) * KML_CHANNELS);
    kml_result_t *result = (kml_result_t *)alloc_exact(sizeof *result);
    kml_decision_t *decision = (kml_decision_t *)alloc_exact(sizeof *decision);
    kml_san_class_t cls;
    int32_t at = 0, s, reported = 0, finite;
    while (at < n) {
        int32_t len = 1 + kml_san_below(KML_WINDOW_SAMPLES * KML_DECIMATION), kind;
        if (len > n - at) {
            len = n - at;
        }
        kind = kml_san_pick(finite_only);
        ++kind_counts[kind];
        kml_san_class_init(&cls, kind, KML_CHANNELS, len, finite_only);
        kml_san_fill(stream_buf + at * KML_CHANNELS, len, KML_CHANNELS, &cls);
        at += len;
    }
    kml_reset();
    for (s = 0; s < n; ++s) {
        int32_t k;
        if (reported == 0) {
            CHECK(kml_classify_latest(result) == -1, "kml_classify_latest before a window");
            CHECK(kml_decide_latest(decision) == -2, "kml_decide_latest before a window");
        }
        for (k = 0; k < KML_CHANNELS; ++k) {
            sample[k] = stream_buf[s * KML_CHANNELS + k];
        }
        ++*pushed;
        if (kml_push_sample(sample)) {
            event_t *e = &events[reported];
            int32_t label;
            CHECK(reported < MAX_STREAM_WINDOWS + 1, "more windows than samples allow");
            check_decision(decision, kml_decide_latest(decision));
#ifdef KML_MONITOR
            check_monitor(reported, (uint32_t)s);
#endif
            label = kml_classify_latest(result);
            check_result(result, label);
            CHECK(label == decision->label, "the same window classified twice differs");
            CHECK(memcmp(result->scores, decision->scores, sizeof result->scores) == 0,
                  "the same window scored twice differs");
            ++stream_label_counts[label];
            e->stream = index;
            e->sample = s;
            e->label = decision->label;
            memcpy(e->scores, decision->scores, sizeof e->scores);
            e->decision = decision->decision;
            e->changed = decision->changed;
            e->candidate = decision->candidate;
            memcpy(e->smoothed, decision->smoothed, sizeof e->smoothed);
            ++reported;
        }
    }
    if (dump != NULL) {
        finite = all_finite(stream_buf, n * KML_CHANNELS);
        put(dump, &finite, sizeof finite, 1);
        put(dump, &n, sizeof n, 1);
        put(dump, stream_buf, sizeof(float), (size_t)n * KML_CHANNELS);
        put(dump, &reported, sizeof reported, 1);
        for (s = 0; s < reported; ++s) {
            put_event(dump, &events[s]);
        }
    }
    free(sample);
    free(result);
    free(decision);
    return reported;
}

static void run_decide(long long n, long long dump_blocks, FILE *dump, long long *blocks_run)
{
    kml_result_t *result = (kml_result_t *)alloc_exact(sizeof *result);
    kml_decision_t *decision = (kml_decision_t *)alloc_exact(sizeof *decision);
    kml_san_class_t cls;
    long long done = 0, block = 0;
    while (done < n) {
        const int dumped = block < dump_blocks;
        const int finite_only = dumped ? (block % 2 == 0) : 0;
        int32_t len = 1 + kml_san_below(48), j, k, kind;
        if (len > n - done) {
            len = (int32_t)(n - done);
        }
        kind = kml_san_pick(finite_only);
        ++kind_counts[kind];
        kml_san_class_init(&cls, kind, KML_CLASSES, len, finite_only);
        kml_reset();
        if (dumped) {
            put(dump, &finite_only, sizeof finite_only, 1);
            put(dump, &len, sizeof len, 1);
        }
        for (j = 0; j < len; ++j) {
            result->label = kml_san_below(KML_CLASSES);
            for (k = 0; k < KML_CLASSES; ++k) {
                result->scores[k] = kml_san_value(&cls, kind, j, k);
            }
            check_decision(decision, kml_decide(result, decision));
            CHECK(decision->label == result->label, "kml_decide changed the label");
            if (dumped) {
                put(dump, &result->label, sizeof(int32_t), 1);
                put(dump, result->scores, sizeof(float), KML_CLASSES);
                put(dump, &decision->decision, sizeof(int32_t), 1);
                put(dump, &decision->changed, sizeof(int32_t), 1);
                put(dump, &decision->candidate, sizeof(int32_t), 1);
                put(dump, decision->smoothed, sizeof(float), KML_CLASSES);
            }
        }
        done += len;
        ++block;
    }
    *blocks_run = block;
    free(result);
    free(decision);
}

static long long run_preprocess(long long n)
{
    float *raw = (float *)alloc_exact(sizeof(float) * KML_CHANNELS);
    float *out = (float *)alloc_exact(sizeof(float) * KML_CHANNELS);
    kml_san_class_t cls;
    long long i, emitted = 0;
    kml_reset();
    kml_san_class_init(&cls, KML_SAN_SPRINKLED, KML_CHANNELS, 1, 0);
    for (i = 0; i < n; ++i) {
        int32_t k, r;
        for (k = 0; k < KML_CHANNELS; ++k) {
            raw[k] = kml_san_value(&cls, KML_SAN_SPRINKLED, 0, k);
        }
        r = kml_preprocess_sample(raw, out);
        CHECK(r == 0 || r == 1, "kml_preprocess_sample returned neither 0 nor 1");
        emitted += r;
    }
    kml_reset();
    free(raw);
    free(out);
    return emitted;
}

static void print_counts(const char *name, const long long *counts, int32_t n)
{
    int32_t i;
    printf("\"%s\": [", name);
    for (i = 0; i < n; ++i) {
        printf("%s%lld", i ? ", " : "", counts[i]);
    }
    printf("], ");
}

static FILE *open_dump(const char *prefix, const char *suffix)
{
    char path[4096];
    FILE *f;
    CHECK(strlen(prefix) + strlen(suffix) < sizeof path, "dump path too long");
    strcpy(path, prefix);
    strcat(path, suffix);
    f = fopen(path, "wb");
    CHECK(f != NULL, "cannot open a dump file");
    return f;
}

int main(int argc, char **argv)
{
    long long n_windows, n_stream, n_decide, dump_windows, dump_streams, dump_blocks;
    long long streamed = 0, pushed = 0, streams = 0, blocks = 0, preprocessed, emitted;
    FILE *dw, *ds, *dd;
    int32_t k;
    if (argc != 9) {
        fprintf(stderr, "usage: %s SEED WINDOWS STREAM_WINDOWS DECIDE_CALLS DUMP "
                        "DUMP_WINDOWS DUMP_STREAMS DUMP_BLOCKS\n", argv[0]);
        return 2;
    }
    kml_san_seed(strtoull(argv[1], NULL, 10));
    n_windows = atoll(argv[2]);
    n_stream = atoll(argv[3]);
    n_decide = atoll(argv[4]);
    dump_windows = atoll(argv[6]);
    dump_streams = atoll(argv[7]);
    dump_blocks = atoll(argv[8]);
    dw = open_dump(argv[5], ".windows");
    ds = open_dump(argv[5], ".stream");
    dd = open_dump(argv[5], ".decide");

    run_windows(n_windows, dump_windows, dw);
    while (streamed < n_stream) {
        const int dumped = streams < dump_streams;
        const int finite_only = dumped ? (streams % 2 == 0) : 0;
        streamed += run_stream((int32_t)streams, finite_only, &pushed, dumped ? ds : NULL);
        ++streams;
    }
    run_decide(n_decide, dump_blocks, dd, &blocks);
    preprocessed = 4 * (long long)KML_WINDOW_SAMPLES * KML_DECIMATION;
    emitted = run_preprocess(preprocessed);
    CHECK(KML_DECIMATION > 1 || emitted == preprocessed, "a sample went missing");

    if (fclose(dw) != 0 || fclose(ds) != 0 || fclose(dd) != 0) {
        fail("closing the dump files", __LINE__);
    }
    printf("{\"windows\": %lld, \"streamed_windows\": %lld, \"streams\": %lld, "
           "\"pushed_samples\": %lld, \"decide_calls\": %lld, \"decide_blocks\": %lld, "
           "\"preprocessed_samples\": %lld, ", n_windows, streamed, streams, pushed,
           n_decide, blocks, preprocessed);
    printf("\"kinds\": {");
    for (k = 0; k < KML_SAN_KINDS; ++k) {
        printf("%s\"%s\": %lld", k ? ", " : "", kml_san_kind_names[k], kind_counts[k]);
    }
    printf("}, ");
    print_counts("labels", label_counts, KML_CLASSES);
    print_counts("stream_labels", stream_label_counts, KML_CLASSES);
    print_counts("decisions", decision_counts, KML_CLASSES + 1);
#ifdef KML_MONITOR
    printf("\"monitor_records\": %lld, \"monitor_flagged_windows\": %lld, ", monitor_records,
           monitor_flagged);
#endif
    printf("\"checksum\": \"%016llx\"}\n", (unsigned long long)checksum);
    return 0;
}
