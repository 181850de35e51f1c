/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: feature scaling. See kml_scale.h. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_scale.h"

void kml_scale(const float *offset, const float *gain, int32_t n, float *values)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        values[i] = (values[i] - offset[i]) * gain[i];
    }
}
