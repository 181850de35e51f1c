/* Benchmark harness: the same for every tool. Reads feature vectors from the host
 * (semihosting, kml_in.bin: int32 n, then n x BENCH_FEATURES float32), calls the
 * tool's bench_predict() between the instruction-counting markers, and writes
 * int32 label + uint32 stack bytes per vector to kml_out.bin. */
#include <stdint.h>

#include "bench_model.h"
#include "measure.h"
#include "semihost.h"

static float features[BENCH_FEATURES];

__attribute__((noinline)) static int32_t predict_measured(uint32_t *stack_bytes)
{
    int32_t label = 0;
    uint32_t used = 0;
    KML_MEASURE(label = bench_predict(features), used);
    *stack_bytes = used;
    return label;
}

int main(void)
{
    int32_t in = sh_open("kml_in.bin", 1);
    int32_t out = sh_open("kml_out.bin", 5);
    int32_t n, i, label;
    uint32_t stack_bytes;
    if (in < 0 || out < 0 || sh_read(in, &n, sizeof n) != 0) {
        return 1;
    }
    for (i = 0; i < n; ++i) {
        if (sh_read(in, features, sizeof features) != 0) {
            return 1;
        }
        label = predict_measured(&stack_bytes);
        if (sh_write(out, &label, sizeof label) != 0 ||
            sh_write(out, &stack_bytes, sizeof stack_bytes) != 0) {
            return 1;
        }
    }
    sh_close(in);
    sh_close(out);
    return 0;
}
