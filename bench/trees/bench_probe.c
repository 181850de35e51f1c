/* Benchmark size probe: a minimal firmware calling the tool's bench_predict(); built
 * again with KML_NO_LIBRARY, the difference is what the model adds to a firmware. */
#include <stdint.h>

#ifndef KML_NO_LIBRARY
#include "bench_model.h"
#endif

int main(void)
{
#ifndef KML_NO_LIBRARY
    const float *volatile input = (const float *)0x20000000u;
    return (int)bench_predict(input);
#else
    return 0;
#endif
}
