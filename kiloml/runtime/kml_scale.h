/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: per-feature scaling fitted on training data, out = (in - offset) * gain
 * (standard: offset = mean, gain = 1 / std; min-max: offset = min, gain = 1 / range). */
#ifndef KML_SCALE_H
#define KML_SCALE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void kml_scale(const float *offset, const float *gain, int32_t n, float *values);

#ifdef __cplusplus
}
#endif

#endif
