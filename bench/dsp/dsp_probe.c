/* DSP benchmark size probe: bench_dsp_setup + bench_dsp_run, or nothing (KML_NO_LIBRARY). */
#ifndef KML_NO_LIBRARY
#include "bench_dsp.h"
#endif

int main(void)
{
#ifndef KML_NO_LIBRARY
    float *volatile in = (float *)0x20000000u;
    float *volatile out = (float *)0x20001000u;
    bench_dsp_setup();
    bench_dsp_run(in, out);
#endif
    return 0;
}
