/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: exact IEEE-754 double arithmetic on non-negative values, in integers.
 *
 * The tree kernel needs scikit-learn's float64 sums bit for bit only when two class
 * scores are too close for its float32 fast path to decide; these few routines
 * give exactly the result of round-to-nearest-even double arithmetic without a
 * double-precision FPU or libgcc's soft-float library. Values are IEEE bit patterns
 * in uint64_t; non-negative doubles order like their bit patterns. Inputs must be
 * zero or normal and non-negative; results are assumed to stay normal (true for
 * tree scores, which lie in [2^-32, 2^16]).
 */
#ifndef KML_F64_H
#define KML_F64_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t kml_f64_t;

#define KML_F64_ZERO ((kml_f64_t)0)
#define KML_F64_ONE ((kml_f64_t)0x3FF0000000000000ull)

/* num / den correctly rounded; requires num <= den, 0 < den <= 65535. */
kml_f64_t kml_f64_ratio(uint32_t num, uint32_t den);

/* a + b correctly rounded. */
kml_f64_t kml_f64_add(kml_f64_t a, kml_f64_t b);

/* a / d correctly rounded; requires 0 < d <= 65535. */
kml_f64_t kml_f64_div_u32(kml_f64_t a, uint32_t d);

/* a rounded to the nearest float (ties to even). */
float kml_f64_to_f32(kml_f64_t a);

#ifdef __cplusplus
}
#endif

#endif
