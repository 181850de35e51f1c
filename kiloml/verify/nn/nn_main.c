/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml harness for a compiled network (kiloml_nn.h), on the host or an emulated MCU.
 *
 * Input file kml_in.bin: int32 n, then per inference the bytes of every model input in
 * the model's order. Output file kml_out.bin: per inference the bytes of every output,
 * then uint32 stack bytes used by kml_nn_invoke (0 on the host). On the MCU, kml_bench_begin/end bracket
 * each kml_nn_invoke for the QEMU instruction counter (with KML_NN_LAYER_MARKS, the
 * generated code also marks each layer).
 */
#include <stdint.h>

#include "kiloml_nn.h"

#ifdef KML_HOST
#include <stdio.h>
#define IO_HANDLE FILE *
static FILE *open_in(void) { return fopen("kml_in.bin", "rb"); }
static FILE *open_out(void) { return fopen("kml_out.bin", "wb"); }
static int read_all(FILE *f, void *buf, uint32_t len) { return fread(buf, 1, len, f) == len ? 0 : 1; }
static int write_all(FILE *f, const void *buf, uint32_t len) { return fwrite(buf, 1, len, f) == len ? 0 : 1; }
static void close_io(FILE *f) { fclose(f); }
#define INVOKE_MEASURED(stack) do { kml_nn_invoke(); (stack) = 0; } while (0)
#else
#include "measure.h"
#include "semihost.h"
#define IO_HANDLE int32_t
static int32_t open_in(void) { return sh_open("kml_in.bin", 1); }
static int32_t open_out(void) { return sh_open("kml_out.bin", 5); }
static int read_all(int32_t f, void *buf, uint32_t len) { return sh_read(f, buf, len) != 0; }
static int write_all(int32_t f, const void *buf, uint32_t len) { return sh_write(f, buf, len) != 0; }
static void close_io(int32_t f) { sh_close(f); }

__attribute__((noinline)) static uint32_t invoke_measured(void)
{
    uint32_t used = 0;
    KML_MEASURE(kml_nn_invoke(), used);
    return used;
}
#define INVOKE_MEASURED(stack) do { (stack) = invoke_measured(); } while (0)
#endif

int main(void)
{
    IO_HANDLE in = open_in();
    IO_HANDLE out = open_out();
    int32_t n, i, k;
    uint32_t stack;
#ifdef KML_HOST
    if (in == NULL || out == NULL) {
        return 1;
    }
#else
    if (in < 0 || out < 0) {
        return 1;
    }
#endif
    if (read_all(in, &n, sizeof n) != 0) {
        return 1;
    }
    for (i = 0; i < n; ++i) {
        for (k = 0; k < KML_NN_INPUTS; ++k) {
            if (read_all(in, kml_nn_input_at(k), kml_nn_input_bytes(k)) != 0) {
                return 1;
            }
        }
        INVOKE_MEASURED(stack);
        for (k = 0; k < KML_NN_OUTPUTS; ++k) {
            if (write_all(out, kml_nn_output_at(k), kml_nn_output_bytes(k)) != 0) {
                return 1;
            }
        }
        if (write_all(out, &stack, sizeof stack) != 0) {
            return 1;
        }
    }
    close_io(in);
    close_io(out);
    return 0;
}
