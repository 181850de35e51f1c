/* DSP benchmark harness, the same for every tool: reads frames of BENCH_IN floats
 * (semihosting kml_in.bin: int32 n, then the frames), runs bench_dsp_run() between
 * the instruction-counting markers and writes the BENCH_OUT floats it returns (in
 * place or not, as the tool works) + uint32 stack bytes per frame to kml_out.bin. */
#include <stdint.h>

#include "bench_dsp.h"
#include "measure.h"
#include "semihost.h"

static float in_buf[BENCH_IN];
static float out_buf[BENCH_OUT];

__attribute__((noinline)) static const float *run_measured(uint32_t *stack_bytes)
{
    const float *result = 0;
    uint32_t used = 0;
    KML_MEASURE(result = bench_dsp_run(in_buf, out_buf), used);
    *stack_bytes = used;
    return result;
}

int main(void)
{
    int32_t in = sh_open("kml_in.bin", 1);
    int32_t out = sh_open("kml_out.bin", 5);
    int32_t n, i;
    uint32_t stack_bytes;
    const float *result;
    if (in < 0 || out < 0 || sh_read(in, &n, sizeof n) != 0) {
        return 1;
    }
    bench_dsp_setup();
    for (i = 0; i < n; ++i) {
        if (sh_read(in, in_buf, sizeof in_buf) != 0) {
            return 1;
        }
        result = run_measured(&stack_bytes);
        if (sh_write(out, result, sizeof out_buf) != 0 ||
            sh_write(out, &stack_bytes, sizeof stack_bytes) != 0) {
            return 1;
        }
    }
    sh_close(in);
    sh_close(out);
    return 0;
}
