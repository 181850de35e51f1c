/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml sanitizer harness for a standalone network library (kiloml_nn.h, as
 * `kiloml model compile` writes it).
 *
 *   sanitize_nn_main SEED INVOKES DUMP DUMP_INVOKES
 *
 * Built with AddressSanitizer and UndefinedBehaviorSanitizer (kiloml/verify/sanitize.py)
 * next to sanitize_nn_io.h, which says which inputs and outputs are float32
 * (KML_SAN_INPUT_FLOAT, KML_SAN_OUTPUT_FLOAT, one flag per tensor). Every inference
 * fills every input from SEED (int8 classes of sanitize_values.h: uniform, all -128,
 * all 127, alternating -128/127, random extremes, ...; float inputs get the float
 * classes: NaN, +-inf, denormals, +-FLT_MAX, ...), calls kml_nn_invoke and checks that
 * float outputs are finite. The first DUMP_INVOKES inferences are written to DUMP:
 * per inference int32 kind, then the bytes of every input, then of every output, in
 * the model's order. Prints a one-line JSON summary; exit status 0 when every check
 * passed (a sanitizer report aborts the run).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiloml_nn.h"
#include "sanitize_nn_io.h"
#include "sanitize_values.h"

static const int input_is_float[KML_NN_INPUTS] = KML_SAN_INPUT_FLOAT;
static const int output_is_float[KML_NN_OUTPUTS] = KML_SAN_OUTPUT_FLOAT;
static long long float_kind_counts[KML_SAN_KINDS];
static long long int8_kind_counts[KML_SAN_I8_KINDS];
static uint64_t checksum = 1469598103934665603ull;

static void fail(const char *what)
{
    fprintf(stderr, "sanitize_nn_main: check failed: %s\n", what);
    exit(1);
}

static void put(FILE *f, const void *data, size_t bytes)
{
    if (bytes && fwrite(data, 1, bytes, f) != bytes) {
        fail("short write to the dump");
    }
}

/* Fill input k; returns the class used (float classes are numbered after int8 ones). */
static int32_t fill_input(int32_t k)
{
    const uint32_t bytes = kml_nn_input_bytes(k);
    if (input_is_float[k]) {
        kml_san_class_t cls;
        const int32_t kind = kml_san_pick(0);
        const int32_t n = (int32_t)(bytes / sizeof(float));
        float *x = (float *)kml_nn_input_at(k);
        int32_t i;
        kml_san_class_init(&cls, kind, 1, n, 0);
        for (i = 0; i < n; ++i) {
            x[i] = kml_san_value(&cls, kind, i, 0);
        }
        ++float_kind_counts[kind];
        return KML_SAN_I8_KINDS + kind;
    } else {
        const int32_t kind = kml_san_i8_pick();
        kml_san_fill_i8((int8_t *)kml_nn_input_at(k), bytes, kind);
        ++int8_kind_counts[kind];
        return kind;
    }
}

static void check_outputs(void)
{
    int32_t k;
    uint32_t i;
    for (k = 0; k < KML_NN_OUTPUTS; ++k) {
        const uint32_t bytes = kml_nn_output_bytes(k);
        const unsigned char *p = (const unsigned char *)kml_nn_output_at(k);
        if (output_is_float[k]) {
            for (i = 0; i < bytes / sizeof(float); ++i) {
                float v;
                memcpy(&v, p + i * sizeof(float), sizeof v);
                if (!isfinite(v)) {
                    fail("a float output is not finite");
                }
            }
        }
        for (i = 0; i < bytes; ++i) {
            checksum = (checksum ^ p[i]) * 1099511628211ull;
        }
    }
}

int main(int argc, char **argv)
{
    long long n, dump_n, i;
    int32_t k;
    FILE *dump;
    if (argc != 5) {
        fprintf(stderr, "usage: %s SEED INVOKES DUMP DUMP_INVOKES\n", argv[0]);
        return 2;
    }
    kml_san_seed(strtoull(argv[1], NULL, 10));
    n = atoll(argv[2]);
    dump_n = atoll(argv[4]);
    dump = fopen(argv[3], "wb");
    if (dump == NULL) {
        fail("cannot open the dump file");
    }
    for (i = 0; i < n; ++i) {
        int32_t kind = 0;
        for (k = 0; k < KML_NN_INPUTS; ++k) {
            const int32_t used = fill_input(k);
            if (k == 0) {
                kind = used;
            }
        }
        if (i < dump_n) { /* before the invoke: the arena may reuse an input's bytes */
            put(dump, &kind, sizeof kind);
            for (k = 0; k < KML_NN_INPUTS; ++k) {
                put(dump, kml_nn_input_at(k), kml_nn_input_bytes(k));
            }
        }
        kml_nn_invoke();
        check_outputs();
        if (i < dump_n) {
            for (k = 0; k < KML_NN_OUTPUTS; ++k) {
                put(dump, kml_nn_output_at(k), kml_nn_output_bytes(k));
            }
        }
    }
    if (fclose(dump) != 0) {
        fail("closing the dump file");
    }
    printf("{\"invokes\": %lld, \"int8_kinds\": {", n);
    for (k = 0; k < KML_SAN_I8_KINDS; ++k) {
        printf("%s\"%s\": %lld", k ? ", " : "", kml_san_i8_kind_names[k], int8_kind_counts[k]);
    }
    printf("}, \"float_kinds\": {");
    for (k = 0; k < KML_SAN_KINDS; ++k) {
        printf("%s\"%s\": %lld", k ? ", " : "", kml_san_kind_names[k], float_kind_counts[k]);
    }
    printf("}, \"checksum\": \"%016llx\"}\n", (unsigned long long)checksum);
    return 0;
}
