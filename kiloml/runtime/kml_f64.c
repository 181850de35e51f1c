/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: exact double arithmetic in integers. See kml_f64.h. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_f64.h"

#include <string.h>

#define FRACTION_MASK ((1ull << 52) - 1u)
#define HIDDEN_BIT (1ull << 52)
#define EXPONENT_BIAS 1075 /* value = mantissa (53 bits) * 2^(E - 1075) */

static int32_t bit_length(uint64_t m)
{
#if defined(__GNUC__) && !defined(KML_F64_PORTABLE)
    return m == 0u ? 0 : 64 - __builtin_clzll(m);
#else
    int32_t n = 0;
    int32_t step;
    for (step = 32; step > 0; step >>= 1) { /* binary search for the top bit */
        if (m >> step) {
            m >>= step;
            n += step;
        }
    }
    return n + (int32_t)m;
#endif
}

/* Appends quotient bits of rem / d (rem < d <= 65535) to q until q has at least 56
 * significant bits, 16 bits per hardware division; returns the bits appended and
 * leaves the final remainder in *rem. */
static int32_t long_divide(uint64_t *q, uint32_t *rem, uint32_t d)
{
    int32_t appended = 0;
    while (*q < (1ull << 55)) {
        const int32_t room = 56 - bit_length(*q);
        const int32_t chunk = room < 16 ? room : 16;
        const uint32_t t = *rem << chunk; /* < 2^32: rem < 2^16 */
        const uint32_t digit = t / d;
        *rem = t - digit * d;
        *q = (*q << chunk) | digit;
        appended += chunk;
    }
    return appended;
}

/* m * 2^e plus "a little more" when sticky, rounded to 53 bits (nearest, ties to even).
 * m must have at least 53 significant bits whenever sticky is set. */
static kml_f64_t round_pack(uint64_t m, int32_t e, int sticky)
{
    int32_t extra;
    if (m == 0u) {
        return KML_F64_ZERO;
    }
    extra = bit_length(m) - 53;
    if (extra > 0) {
        const uint64_t lost = m & ((1ull << extra) - 1u);
        const uint64_t half = 1ull << (extra - 1);
        m >>= extra;
        e += extra;
        if (lost > half || (lost == half && (sticky || (m & 1u)))) {
            ++m;
            if (m == (1ull << 53)) {
                m >>= 1;
                ++e;
            }
        }
    } else if (extra < 0) {
        m <<= -extra;
        e += extra;
    }
    return ((uint64_t)(e + EXPONENT_BIAS) << 52) | (m & FRACTION_MASK);
}

static uint64_t mantissa(kml_f64_t a)
{
    return (a & FRACTION_MASK) | HIDDEN_BIT;
}

static int32_t exponent(kml_f64_t a)
{
    return (int32_t)((a >> 52) & 0x7FFu) - EXPONENT_BIAS;
}

kml_f64_t kml_f64_ratio(uint32_t num, uint32_t den)
{
    uint64_t q = 0u;
    uint32_t rem = num;
    int32_t shift;
    if (num == 0u) {
        return KML_F64_ZERO;
    }
    if (num >= den) {
        return KML_F64_ONE;
    }
    shift = long_divide(&q, &rem, den);
    return round_pack(q, -shift, rem != 0u);
}

kml_f64_t kml_f64_add(kml_f64_t a, kml_f64_t b)
{
    uint64_t ma, mb;
    int32_t ea, eb, d;
    int sticky = 0;
    if (a == KML_F64_ZERO) {
        return b;
    }
    if (b == KML_F64_ZERO) {
        return a;
    }
    if (b > a) {
        const kml_f64_t t = a;
        a = b;
        b = t;
    }
    ea = exponent(a);
    eb = exponent(b);
    ma = mantissa(a) << 10; /* room for the bits of b shifted below a's */
    mb = mantissa(b) << 10;
    d = ea - eb;
    if (d >= 64) {
        sticky = 1;
        mb = 0u;
    } else if (d > 0) {
        sticky = (mb & ((1ull << d) - 1u)) != 0u;
        mb >>= d;
    }
    return round_pack(ma + mb, ea - 10, sticky);
}

kml_f64_t kml_f64_div_u32(kml_f64_t a, uint32_t d)
{
    const uint64_t m = mantissa(a);
    uint64_t q = 0u;
    uint32_t rem = 0u;
    int32_t i, extra;
    if (a == KML_F64_ZERO) {
        return KML_F64_ZERO;
    }
    /* The 53-bit mantissa in four 16-bit digits (the first holds 5 bits). */
    for (i = 48; i >= 0; i -= 16) {
        const uint32_t t = (rem << 16) | (uint32_t)((m >> i) & 0xFFFFu);
        const uint32_t digit = t / d;
        rem = t - digit * d;
        q = (q << 16) | digit;
    }
    extra = long_divide(&q, &rem, d);
    return round_pack(q, exponent(a) - extra, rem != 0u);
}

float kml_f64_to_f32(kml_f64_t a)
{
    uint64_t m = mantissa(a);
    int32_t e = exponent(a) + 29;
    const uint64_t lost = m & ((1ull << 29) - 1u);
    const uint64_t half = 1ull << 28;
    uint32_t bits;
    float f;
    if (a == KML_F64_ZERO) {
        return 0.0f;
    }
    m >>= 29;
    if (lost > half || (lost == half && (m & 1u))) {
        ++m;
        if (m == (1ull << 24)) {
            m >>= 1;
            ++e;
        }
    }
    bits = ((uint32_t)(e + 150) << 23) | ((uint32_t)m & 0x7FFFFFu);
    memcpy(&f, &bits, sizeof f);
    return f;
}
