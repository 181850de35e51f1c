/* SPDX-License-Identifier: Apache-2.0 AND SunPro */
/* kiloml runtime: logf and expf with a fixed sequence of float32 operations.
 *
 * The argument reductions, the polynomial coefficients and the order of the final
 * sums follow fdlibm's e_logf.c and e_expf.c (as in FreeBSD's msun), whose notice
 * is kept here as it asks:
 *
 *   Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
 *
 *   Developed at SunPro, a Sun Microsystems, Inc. business.
 *   Permission to use, copy, modify, and distribute this
 *   software is freely granted, provided that this notice
 *   is preserved.
 */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_math.h"

#include <float.h>
#include <stdint.h>
#include <string.h>

static uint32_t bits_of(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

float kml_logf(float x)
{
    const float ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f;
    const float lg1 = 6.6666662693e-01f, lg2 = 4.0000972152e-01f;
    const float lg3 = 2.8498786688e-01f, lg4 = 2.4279078841e-01f;
    uint32_t u;
    int32_t e;
    float m, f, s, z, w, r, half_f2, k;
    if (!(x <= FLT_MAX)) {
        return x; /* +inf or NaN */
    }
    if (x < FLT_MIN) {
        x = FLT_MIN;
    }
    u = bits_of(x);
    e = (int32_t)(u >> 23) - 127;
    m = float_of((u & 0x007FFFFFu) | 0x3F800000u); /* [1, 2) */
    if (m > 1.41421353816986083984375f) {             /* sqrt(2) rounded down */
        m = 0.5f * m;
        e += 1;
    }
    f = m - 1.0f;
    s = f / (2.0f + f);
    z = s * s;
    w = z * z;
    r = z * (lg1 + w * lg3) + w * (lg2 + w * lg4);
    half_f2 = 0.5f * f * f;
    k = (float)e;
    return k * ln2_hi - ((half_f2 - (s * (half_f2 + r) + k * ln2_lo)) - f);
}

float kml_expf(float x)
{
    const float ln2_hi = 6.9314575195e-01f, ln2_lo = 1.4286067653e-06f;
    const float inv_ln2 = 1.4426950216e+00f;
    const float p1 = 1.6666625440e-01f, p2 = -2.7667332906e-03f;
    float k, hi, lo, r, t, c, y;
    int32_t n;
    if (x != x) {
        return x;
    }
    if (x > 88.7228317261f) {
        return FLT_MAX * FLT_MAX; /* +inf */
    }
    if (x < -87.3365402222f) {
        return 0.0f;
    }
    k = x * inv_ln2;
    n = (int32_t)(k < 0.0f ? k - 0.5f : k + 0.5f); /* round half away from zero */
    k = (float)n;
    hi = x - k * ln2_hi;
    lo = k * ln2_lo;
    r = hi - lo;
    t = r * r;
    c = r - t * (p1 + t * p2);
    y = 1.0f - ((lo - (r * c) / (2.0f - c)) - hi);
    /* y * 2^n, in two steps so that 2^n stays a normal float */
    if (n > 0) {
        y = y * float_of((uint32_t)(127 + n / 2) << 23);
        y = y * float_of((uint32_t)(127 + n - n / 2) << 23);
    } else if (n < 0) {
        const int32_t a = (-n) / 2, b = -n - (-n) / 2;
        y = y * float_of((uint32_t)(127 - a) << 23);
        y = y * float_of((uint32_t)(127 - b) << 23);
    }
    return y;
}
