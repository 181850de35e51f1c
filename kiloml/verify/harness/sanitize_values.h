/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml sanitizer harness: a seeded generator of random and extreme inputs.
 *
 * Values come in classes (kind of window or stream segment), drawn with fixed weights:
 * realistic random samples, NaN, +-inf, denormals, +-FLT_MAX, +-FLT_MIN, +-0, constant
 * windows, alternating extremes, realistic samples with specials sprinkled in, one
 * class per channel, random bit patterns, huge magnitudes and lone spikes. Networks
 * read int8: uniform, all -128, all 127, alternating -128/127, random extremes,
 * constants, zeros and spikes. Everything follows from the seed (splitmix64), so a
 * finding is reproduced by running the same seed again.
 */
#ifndef KML_SANITIZE_VALUES_H
#define KML_SANITIZE_VALUES_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static uint64_t kml_san_rng_state = 1;

static inline void kml_san_seed(uint64_t seed)
{
    kml_san_rng_state = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
}

static inline uint64_t kml_san_next(void)
{
    uint64_t z = (kml_san_rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, n) */
static inline int32_t kml_san_below(int32_t n)
{
    return (int32_t)(kml_san_next() % (uint64_t)n);
}

/* uniform in [0, 1) with 24 random bits */
static inline float kml_san_unit(void)
{
    return (float)(kml_san_next() >> 40) * (1.0f / 16777216.0f);
}

static inline float kml_san_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float kml_san_sign(float v)
{
    return (kml_san_next() & 1u) ? -v : v;
}

/* A realistic sensor value: uniform in [-8, 8] around a per-window offset. */
static inline float kml_san_real(float offset)
{
    return offset + 16.0f * kml_san_unit() - 8.0f;
}

enum {
    KML_SAN_REAL,        /* uniform random in a realistic range */
    KML_SAN_CONST,       /* one realistic value for the whole window */
    KML_SAN_NAN,
    KML_SAN_POS_INF,
    KML_SAN_NEG_INF,
    KML_SAN_DENORMAL,    /* random subnormals of either sign */
    KML_SAN_FLT_MAX,     /* +-FLT_MAX */
    KML_SAN_FLT_MIN,     /* +-FLT_MIN, the smallest normal */
    KML_SAN_ZERO,        /* +0 and -0 */
    KML_SAN_ALTERNATING, /* +FLT_MAX, -FLT_MAX, ... (or +inf, -inf) sample by sample */
    KML_SAN_SPRINKLED,   /* realistic, with one sample in 16 replaced by a special value */
    KML_SAN_PER_CHANNEL, /* each channel its own class */
    KML_SAN_BITS,        /* any 32-bit pattern: NaN payloads, denormals, everything */
    KML_SAN_HUGE,        /* magnitudes 1e30 .. FLT_MAX */
    KML_SAN_SPIKE,       /* realistic with one FLT_MAX or inf sample */
    KML_SAN_KINDS
};

static const char *const kml_san_kind_names[KML_SAN_KINDS] = {
    "real", "constant", "nan", "+inf", "-inf", "denormal", "flt_max", "flt_min", "zero",
    "alternating", "sprinkled", "per_channel", "random_bits", "huge", "spike"};

/* Weights of the classes (out of their sum): realistic data most often, every extreme
 * often enough to be hit thousands of times in 100,000 inputs. */
static const int32_t kml_san_kind_weights[KML_SAN_KINDS] = {
    20, 6, 5, 4, 4, 6, 6, 5, 5, 6, 12, 8, 6, 4, 3};

/* Classes without NaN or infinity among their inputs. */
static inline int kml_san_kind_finite(int32_t kind)
{
    switch (kind) {
    case KML_SAN_REAL: case KML_SAN_CONST: case KML_SAN_DENORMAL: case KML_SAN_FLT_MAX:
    case KML_SAN_FLT_MIN: case KML_SAN_ZERO: case KML_SAN_HUGE:
        return 1;
    default:
        return 0;
    }
}

static inline int32_t kml_san_pick(int finite_only)
{
    int32_t total = 0, k, r;
    for (k = 0; k < KML_SAN_KINDS; ++k) {
        total += (!finite_only || kml_san_kind_finite(k)) ? kml_san_kind_weights[k] : 0;
    }
    r = kml_san_below(total);
    for (k = 0; k < KML_SAN_KINDS; ++k) {
        const int32_t w = (!finite_only || kml_san_kind_finite(k)) ? kml_san_kind_weights[k] : 0;
        if (r < w) {
            return k;
        }
        r -= w;
    }
    return KML_SAN_REAL;
}

static inline float kml_san_special(void)
{
    switch (kml_san_below(8)) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: return kml_san_sign(FLT_MAX);
    case 4: return kml_san_sign(FLT_MIN);
    case 5: return kml_san_sign(kml_san_from_bits(1u + (uint32_t)kml_san_below(0x7FFFFF)));
    case 6: return -0.0f;
    default: return kml_san_sign(1e30f + kml_san_unit() * 3e38f);
    }
}

/* Per-class parameters, drawn once per window or segment. */
typedef struct {
    int32_t kind;
    int32_t channel_kind[64];
    float offset;      /* realistic: the level the values move around */
    float constant;    /* KML_SAN_CONST */
    int32_t spike_at;  /* KML_SAN_SPIKE: the sample index of the spike */
    int32_t use_inf;   /* KML_SAN_ALTERNATING: +-inf instead of +-FLT_MAX */
} kml_san_class_t;

static inline void kml_san_class_init(kml_san_class_t *c, int32_t kind, int32_t channels,
                               int32_t samples, int finite_only)
{
    int32_t ch;
    c->kind = kind;
    c->offset = kml_san_sign(kml_san_unit() * 4.0f);
    c->constant = kml_san_below(4) == 0 ? 0.0f : kml_san_real(c->offset);
    c->spike_at = samples > 0 ? kml_san_below(samples) : 0;
    c->use_inf = !finite_only && (kml_san_next() & 1u);
    for (ch = 0; ch < channels && ch < 64; ++ch) {
        int32_t k;
        do {
            k = kml_san_pick(finite_only);
        } while (k == KML_SAN_PER_CHANNEL);
        c->channel_kind[ch] = k;
    }
}

/* The value of sample t (0-based within the window or segment) of channel ch. */
static inline float kml_san_value(const kml_san_class_t *c, int32_t kind, int32_t t, int32_t ch)
{
    switch (kind) {
    case KML_SAN_REAL: return kml_san_real(c->offset);
    case KML_SAN_CONST: return c->constant;
    case KML_SAN_NAN: return NAN;
    case KML_SAN_POS_INF: return INFINITY;
    case KML_SAN_NEG_INF: return -INFINITY;
    case KML_SAN_DENORMAL:
        return kml_san_sign(kml_san_from_bits(1u + (uint32_t)kml_san_below(0x7FFFFF)));
    case KML_SAN_FLT_MAX: return kml_san_sign(FLT_MAX);
    case KML_SAN_FLT_MIN: return kml_san_sign(FLT_MIN);
    case KML_SAN_ZERO: return kml_san_sign(0.0f);
    case KML_SAN_ALTERNATING: {
        const float v = c->use_inf ? INFINITY : FLT_MAX;
        return (t & 1) ? -v : v;
    }
    case KML_SAN_SPRINKLED:
        return kml_san_below(16) == 0 ? kml_san_special() : kml_san_real(c->offset);
    case KML_SAN_PER_CHANNEL:
        return kml_san_value(c, c->channel_kind[ch & 63], t, ch);
    case KML_SAN_BITS: return kml_san_from_bits((uint32_t)kml_san_next());
    case KML_SAN_HUGE: return kml_san_sign(1e30f + kml_san_unit() * 3e38f);
    case KML_SAN_SPIKE:
        if (t == c->spike_at && ch == 0) {
            return kml_san_below(2) ? kml_san_sign(FLT_MAX) : kml_san_sign(INFINITY);
        }
        return kml_san_real(c->offset);
    default: return 0.0f;
    }
}

/* rows x channels values of one class. */
static inline void kml_san_fill(float *dst, int32_t rows, int32_t channels, const kml_san_class_t *c)
{
    int32_t t, ch;
    for (t = 0; t < rows; ++t) {
        for (ch = 0; ch < channels; ++ch) {
            dst[t * channels + ch] = kml_san_value(c, c->kind, t, ch);
        }
    }
}

/* ---- int8 ---------------------------------------------------------------------------- */

enum {
    KML_SAN_I8_UNIFORM,     /* every value in [-128, 127] */
    KML_SAN_I8_MIN,         /* all -128 */
    KML_SAN_I8_MAX,         /* all 127 */
    KML_SAN_I8_ALTERNATING, /* -128, 127, -128, ... */
    KML_SAN_I8_EXTREMES,    /* random -128 or 127 */
    KML_SAN_I8_CONST,       /* one random value */
    KML_SAN_I8_ZERO,
    KML_SAN_I8_SPIKE,       /* zeros with one -128 or 127 */
    KML_SAN_I8_SMALL,       /* in [-3, 3] */
    KML_SAN_I8_KINDS
};

static const char *const kml_san_i8_kind_names[KML_SAN_I8_KINDS] = {
    "uniform", "all_-128", "all_127", "alternating_-128_127", "random_extremes", "constant",
    "zero", "spike", "small"};

static const int32_t kml_san_i8_weights[KML_SAN_I8_KINDS] = {30, 8, 8, 10, 12, 8, 6, 8, 10};

static inline int32_t kml_san_i8_pick(void)
{
    int32_t total = 0, k, r;
    for (k = 0; k < KML_SAN_I8_KINDS; ++k) {
        total += kml_san_i8_weights[k];
    }
    r = kml_san_below(total);
    for (k = 0; k < KML_SAN_I8_KINDS; ++k) {
        if (r < kml_san_i8_weights[k]) {
            return k;
        }
        r -= kml_san_i8_weights[k];
    }
    return KML_SAN_I8_UNIFORM;
}

static inline void kml_san_fill_i8(int8_t *dst, uint32_t n, int32_t kind)
{
    const int8_t constant = (int8_t)(kml_san_below(256) - 128);
    const uint32_t spike = n ? (uint32_t)kml_san_below((int32_t)n) : 0u;
    uint32_t i;
    for (i = 0; i < n; ++i) {
        int32_t v;
        switch (kind) {
        case KML_SAN_I8_UNIFORM: v = kml_san_below(256) - 128; break;
        case KML_SAN_I8_MIN: v = -128; break;
        case KML_SAN_I8_MAX: v = 127; break;
        case KML_SAN_I8_ALTERNATING: v = (i & 1u) ? 127 : -128; break;
        case KML_SAN_I8_EXTREMES: v = (kml_san_next() & 1u) ? 127 : -128; break;
        case KML_SAN_I8_CONST: v = constant; break;
        case KML_SAN_I8_SPIKE: v = i == spike ? ((kml_san_next() & 1u) ? 127 : -128) : 0; break;
        case KML_SAN_I8_SMALL: v = kml_san_below(7) - 3; break;
        default: v = 0; break;
        }
        dst[i] = (int8_t)v;
    }
}

#endif
