/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: logarithm and exponential in float32 with a fixed sequence of
 * operations (fdlibm's argument reduction and polynomials), so the Python reference
 * (kiloml/dsp/math32.py) computes bit-identical values on every platform, which a
 * C library's logf/expf does not promise. Error below 1 ulp over the ranges used. */
#ifndef KML_MATH_H
#define KML_MATH_H

#ifdef __cplusplus
extern "C" {
#endif

/* ln(x) for x > 0 (x below FLT_MIN is taken as FLT_MIN; +inf and NaN pass through). */
float kml_logf(float x);

/* e^x (saturates to 0 below -87.3 and to +inf above 88.7; NaN passes through). */
float kml_expf(float x);

#ifdef __cplusplus
}
#endif

#endif
