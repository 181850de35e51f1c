/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: the on-device monitor. Every operation is float32 in a fixed order,
 * with no libm call (the entropy's log2 and the energy's exp2 are fixed polynomials on the
 * float's bits), so kiloml/monitor/ reproduces it bit for bit. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_monitor.h"

#include <float.h>  /* FLT_MAX */
#include <stddef.h> /* offsetof */
#include <string.h> /* memcpy, memset */

/* Helpers called from several places stay out of line: the monitor's flash budget
 * (2 KB on a Cortex-M) matters more than a few calls per window. */
#if defined(__GNUC__)
#define KML_MON_OUTLINE __attribute__((noinline))
#else
#define KML_MON_OUTLINE
#endif
/* Inlined wherever it is called (log2 into the update, as when it was its only caller, and
 * into the energy; the update's body into its two entry points) */
#if defined(__GNUC__)
#define KML_MON_INLINE __attribute__((always_inline)) static inline
#else
#define KML_MON_INLINE static
#endif

/* |x|, only ever compared: -0.0 and NaN compare as they would through x < 0 ? -x : x */
#if defined(__GNUC__)
#define KML_MON_ABS(x) __builtin_fabsf(x)
#else
#define KML_MON_ABS(x) ((x) < 0.0f ? -(x) : (x))
#endif

KML_MON_OUTLINE static float kml_mon_clamp(float v, float lo, float hi)
{
    v = v > hi ? hi : v;
    return v >= lo ? v : lo; /* NaN too goes to lo */
}

/* log2(x) for a normal positive float: the exponent plus a degree-5 polynomial in the
 * mantissa's fraction (|error| < 3e-5; exact at powers of two). */
KML_MON_INLINE float kml_mon_log2(float x)
{
    uint32_t bits;
    float f, poly;
    int32_t e;
    memcpy(&bits, &x, sizeof bits);
    e = (int32_t)((bits >> 23) & 0xFFu) - 127;
    bits = (bits & 0x007FFFFFu) | 0x3F800000u;
    memcpy(&f, &bits, sizeof f);
    f = f - 1.0f;
    poly = 0.045885526f;
    poly = poly * f + -0.19442268f;
    poly = poly * f + 0.41542196f;
    poly = poly * f + -0.7086821f;
    poly = poly * f + 1.4418257f;
    poly = poly * f;
    return (float)e + poly;
}

/* the flag each running signal raises */
static const uint8_t kml_mon_run_flag[KML_MON_RUN] = {
    KML_MON_OUT_OF_RANGE, KML_MON_OOD, KML_MON_LOW_CONFIDENCE, KML_MON_LOW_CONFIDENCE,
    KML_MON_LOW_CONFIDENCE, KML_MON_UNCERTAIN_RATE};

void kml_monitor_reset(const kml_monitor_params *p, kml_monitor_state *s)
{
    int32_t i = 0;
    /* everything after the array pointers starts at 0, the running signals at run_init */
    memset(s->run, 0, sizeof *s - offsetof(kml_monitor_state, run));
    memcpy(&s->run[KML_MON_SCORE_OOD], p->run_init, sizeof p->run_init);
    memset(s->flat_run, 0, (size_t)p->n_channels * sizeof *s->flat_run);
    do {
        s->z_mean[i] = 0.0f; /* the training mean, in z */
        s->z_var[i] = 1.0f;
    } while (++i < p->n_monitored);
}

KML_MON_OUTLINE static void kml_mon_count(uint16_t *c)
{
    if (*c < 0xFFFFu) {
        ++*c;
    }
}

/* The body of kml_monitor_update and kml_monitor_update_ood, inlined into each with
 * has_ood a constant: the default build's kml_monitor_update compiles as it did before the
 * OOD input existed (the compiler folds the choice away), and a library links only the one
 * it calls (gc-sections). */
KML_MON_INLINE uint16_t kml_mon_update(const kml_monitor_params *p, kml_monitor_state *s,
                                       const float *features, const float *channel_variance,
                                       const float *smoothed, int32_t decision,
                                       int32_t uncertain, int32_t has_ood, float ood)
{
    int32_t i, bin;
    float x[KML_MON_RUN], outside = 0.0f, d2 = 0.0f, top, second = -1.0f, ent = 0.0f;
    uint32_t flags = 0; /* 32 bits while it is built: no narrowing after every OR */
    const float alpha = p->alpha, clip = p->z_clip;
    /* inputs: clipped z of each monitored feature, its EWMA mean and variance */
    i = 0;
    do { /* n_monitored >= 1 (kml_monitor_params) */
        const float v = features[p->index[i]];
        float z = (v - p->mean[i]) * p->inv_sd[i], d, ad, zm, zv;
        if (!(v >= p->lo[i] && v <= p->hi[i])) {
            outside = outside + 1.0f; /* exact: k < 2^24 */
        }
        z = z != z ? clip : kml_mon_clamp(z, -clip, clip);
        d2 = d2 + z * z;
        d = z - s->z_mean[i];
        ad = alpha * d;
        zm = s->z_mean[i] + ad;
        zv = p->one_minus_alpha * (s->z_var[i] + d * ad);
        s->z_mean[i] = zm;
        s->z_var[i] = zv;
        if (KML_MON_ABS(zm) > p->z_limit || zv > p->var_hi || zv < p->var_lo) {
            flags |= KML_MON_INPUT_DRIFT;
        }
    } while (++i < p->n_monitored);
    i = 0;
    do { /* n_channels >= 1 */
        if (!(channel_variance[i] >= p->floor[i])) { /* NaN: a broken channel too */
            kml_mon_count(&s->flat_run[i]);
        } else {
            s->flat_run[i] = 0;
        }
        if (s->flat_run[i] >= p->stuck_windows) {
            flags |= KML_MON_STUCK_CHANNEL;
        }
    } while (++i < p->n_channels);
    /* confidence: the entropy; the first maximum (a NaN never wins) and the largest of the
     * others, in one pass: a score that loses to the maximum so far, or a maximum it
     * replaces, is a candidate for the second. The twin's two passes give the same top and
     * the same second but for the sign of a zero (equal scores of other bits are +-0),
     * which can only flip a zero margin's sign: the running margin is the same. */
    top = smoothed[0];
    i = 0;
    do { /* n_classes >= 2 */
        float q = smoothed[i];
        uint32_t bits;
        memcpy(&bits, &q, sizeof bits);
        if (bits - 0x00800000u <= 0x7F000000u) { /* q >= FLT_MIN: a positive normal, or inf */
            ent = ent - q * kml_mon_log2(q);
        }
        if (i > 0) {
            if (q > top) {
                const float t = top;
                top = q;
                q = t;
            }
            if (q > second) {
                second = q;
            }
        }
    } while (++i < p->n_classes);
    top = kml_mon_clamp(top, 0.0f, 1.0f);
    x[KML_MON_OOR] = outside * p->inv_k;
    /* a given OOD input is clamped to +-1e30, NaN to +1e30 (out of distribution): the
     * running mean and Page-Hinkley sums stay finite whatever the caller passes */
    x[KML_MON_SCORE_OOD] = !has_ood ? d2 * p->inv_k
                                    : ood != ood ? 1e30f : kml_mon_clamp(ood, -1e30f, 1e30f);
    x[KML_MON_TOP] = top;
    x[KML_MON_MARGIN] = kml_mon_clamp(top - kml_mon_clamp(second, 0.0f, 1.0f), 0.0f, 1.0f);
    x[KML_MON_ENTROPY] = kml_mon_clamp(ent * p->inv_log2_classes, 0.0f, 1.0f);
    x[KML_MON_UNCERTAIN] = uncertain ? 1.0f : 0.0f;
    for (i = 0; i < KML_MON_RUN; ++i) {
        const float r = s->run[i] + alpha * (x[i] - s->run[i]), limit = p->run_limit[i];
        s->run[i] = r;
        /* TOP and MARGIN (bits 2 and 3) fall to their limits, the others rise to theirs */
        if ((0x0Cu >> i & 1u) ? r < limit : r > limit) {
            flags |= kml_mon_run_flag[i];
        }
    }
    /* change detection on the window's OOD score (detector 0) and top score (1): two-sided
     * Page-Hinkley, the deviation from the detector's running mean, less delta, summed and
     * floored at 0 each way; past lambda it fires and starts again */
    for (i = 0; i < KML_MON_PH; ++i) {
        const float xi = x[KML_MON_SCORE_OOD + i];
        float n = s->ph_n[i], mean, dev, up, down;
        if (n < p->ph_cap) {
            n = n + 1.0f;
        }
        mean = s->ph_mean[i] + (xi - s->ph_mean[i]) / n;
        dev = xi - mean;
        up = s->ph_up[i] + dev - p->ph_delta[i];
        down = s->ph_down[i] - dev - p->ph_delta[i];
        up = up > 0.0f ? up : 0.0f;
        down = down > 0.0f ? down : 0.0f;
        if (n >= p->ph_min_windows && (up > p->ph_lambda[i] || down > p->ph_lambda[i])) {
            n = 0.0f;
            up = 0.0f;
            down = 0.0f;
            flags |= KML_MON_CHANGE;
        }
        s->ph_n[i] = n;
        s->ph_mean[i] = mean;
        s->ph_up[i] = up;
        s->ph_down[i] = down;
    }
    /* the record's counts (saturating) */
    if (s->windows < 0xFFFFFFFFu) {
        ++s->windows;
    }
    if (decision >= 0) {
        kml_mon_count(&s->rec.counts[decision < 5 ? decision : 5]);
    }
    if (uncertain) {
        kml_mon_count(&s->rec.counts[6]);
    }
    bin = (int32_t)(top * (float)KML_MON_HIST); /* exact: a power of two; top in [0, 1] */
    kml_mon_count(&s->rec.hist[bin < KML_MON_HIST ? bin : KML_MON_HIST - 1]);
    s->flags = (uint16_t)flags;
    s->rec.flags = (uint16_t)(s->rec.flags | flags);
    return (uint16_t)flags;
}

uint16_t kml_monitor_update(const kml_monitor_params *p, kml_monitor_state *s,
                            const float *features, const float *channel_variance,
                            const float *smoothed, int32_t decision, int32_t uncertain)
{
    return kml_mon_update(p, s, features, channel_variance, smoothed, decision, uncertain, 0,
                          0.0f);
}

uint16_t kml_monitor_update_ood(const kml_monitor_params *p, kml_monitor_state *s,
                                const float *features, const float *channel_variance,
                                const float *smoothed, int32_t decision, int32_t uncertain,
                                float ood)
{
    return kml_mon_update(p, s, features, channel_variance, smoothed, decision, uncertain, 1,
                          ood);
}

void kml_monitor_channel_variance(const float *window, int32_t samples, int32_t channels,
                                  int32_t start_row, float *out)
{
    int32_t c, t, row, pass;
    const float n = (float)samples;
    for (c = 0; c < channels; ++c) {
        float mean = 0.0f;
        pass = 0;
        do { /* the mean, then the mean squared deviation (samples >= 1) */
            float acc = 0.0f;
            t = 0;
            row = start_row;
            do {
                /* the first pass's x - 0.0f is x, bit for bit (-0.0 and NaN too) */
                const float x = window[row * channels + c] - mean;
                acc = acc + (pass ? x * x : x);
                row = row + 1 == samples ? 0 : row + 1;
            } while (++t < samples);
            mean = acc / n;
        } while (++pass < 2);
        out[c] = mean;
    }
}

void kml_monitor_channel_moments(const float *window, int32_t samples, int32_t channels,
                                 int32_t start_row, float *out)
{
    /* kml_monitor_channel_variance's two passes, the mean kept too (a separate function:
     * a library that watches features links none of it) */
    int32_t c, t, row, pass;
    const float n = (float)samples;
    for (c = 0; c < channels; ++c) {
        float mean = 0.0f;
        for (pass = 0; pass < 2; ++pass) {
            float acc = 0.0f;
            for (t = 0, row = start_row; t < samples; ++t) {
                float x = window[row * channels + c];
                if (pass) {
                    x = x - mean;
                    x = x * x;
                }
                acc = acc + x;
                row = row + 1 == samples ? 0 : row + 1;
            }
            mean = acc / n;
            out[pass * channels + c] = mean;
        }
    }
}

/* 2^t for t <= 0 (the energy's exponentials): 0 below -126 and for NaN; otherwise
 * 2^floor(t) (added to the exponent's bits) times a degree-5 polynomial of the fraction,
 * 1 + f (c1 + f (c2 + ...)): exactly 1 at t = 0, relative error < 2e-7 on [0, 1). */
static float kml_mon_exp2(float t)
{
    int32_t i;
    uint32_t bits;
    float f, poly;
    if (!(t >= -126.0f)) {
        return 0.0f;
    }
    i = (int32_t)t; /* toward zero: exact, |t| <= 126 */
    if ((float)i > t) {
        i = i - 1;
    }
    f = t - (float)i; /* the fraction, in [0, 1): exact */
    poly = 0.001867342f;
    poly = poly * f + 0.009018507f;
    poly = poly * f + 0.055796713f;
    poly = poly * f + 0.2401663f;
    poly = poly * f + 0.693151f;
    poly = poly * f;
    poly = poly + 1.0f;
    memcpy(&bits, &poly, sizeof bits);
    bits = bits + ((uint32_t)i << 23); /* times 2^i: a normal float for i >= -126 */
    memcpy(&poly, &bits, sizeof poly);
    return poly;
}

/* the energy of n logits, each scale * (q[i] - zero_point) when q is given, else f[i] */
KML_MON_OUTLINE static float kml_mon_energy(const float *f, const int8_t *q, int32_t n,
                                            float scale, int32_t zero_point)
{
    int32_t i;
    float m = -FLT_MAX, sum = 0.0f, e;
    for (i = 0; i < n; ++i) { /* the largest (a NaN never wins) */
        const float l = q ? scale * (float)((int32_t)q[i] - zero_point) : f[i];
        if (l > m) {
            m = l;
        }
    }
    for (i = 0; i < n; ++i) { /* sum of exp(l - m) = 2^((l - m) log2(e)), in order */
        const float l = q ? scale * (float)((int32_t)q[i] - zero_point) : f[i];
        sum = sum + kml_mon_exp2((l - m) * 1.442695f);
    }
    /* -(m + ln(sum)); sum >= 1 whenever a logit is finite */
    e = -(m + 0.6931472f * kml_mon_log2(sum));
    return kml_mon_clamp(e, -1e30f, 1e30f);
}

float kml_monitor_energy(const float *logits, int32_t n)
{
    return kml_mon_energy(logits, NULL, n, 1.0f, 0);
}

float kml_monitor_energy_s8(const int8_t *logits, int32_t n, float scale, int32_t zero_point)
{
    return kml_mon_energy(NULL, logits, n, scale, zero_point);
}

/* n bytes of v, little-endian; returns the byte after them */
KML_MON_OUTLINE static uint8_t *kml_mon_put(uint8_t *out, int32_t n, uint32_t v)
{
    for (; n > 0; --n) {
        *out++ = (uint8_t)(v & 0xFFu);
        v >>= 8;
    }
    return out;
}

/* a fixed-point field of n bytes: v x scale in float32, clamped, truncated toward zero (a
 * negative value keeps its two's complement in the field's low bytes); the arguments in
 * the registers kml_mon_clamp and kml_mon_put take them */
KML_MON_OUTLINE static uint8_t *kml_mon_put_fixed(uint8_t *out, int32_t n, float v, float lo,
                                                  float hi, float scale)
{
    return kml_mon_put(out, n, (uint32_t)(int32_t)kml_mon_clamp(v * scale, lo, hi));
}

void kml_monitor_write_snapshot(const kml_monitor_params *p, kml_monitor_state *s,
                          const uint8_t model_id[8], uint32_t uptime_s,
                          uint8_t out[KML_TELEMETRY_BYTES])
{
    int32_t i, b;
    uint32_t total = 0, crc = 0xFFFFu, q, seen;
    float drift = 0.0f;
    uint8_t *o;
    /* "KT", format 1, classes (n_classes <= 255: the record's byte) */
    o = kml_mon_put(out, 4, 0x0001544Bu | (uint32_t)p->n_classes << 24);
    memcpy(o, model_id, 8);
    o = kml_mon_put(o + 8, 4, uptime_s);
    o = kml_mon_put(o, 4, s->windows);
    for (i = 0; i < 7; ++i) { /* the decision counts, then the uncertain count */
        o = kml_mon_put(o, 2, s->rec.counts[i]);
    }
    for (i = 0; i < KML_MON_HIST; ++i) {
        total += s->rec.hist[i];
    }
    /* top-score p10, p50, p90: the midpoint (x 255, floor) of the first bin whose cumulative
     * count reaches q% of the total (the rank ceil(q% of total), at least 1); 0 if empty */
    for (b = 0, q = 10u, seen = s->rec.hist[0]; q <= 90u;) {
        if (b == KML_MON_HIST - 1 || 100u * seen >= q * total) {
            *o++ = total ? (uint8_t)(((uint32_t)b * 2u + 1u) * 255u / (2u * KML_MON_HIST)) : 0u;
            q += 40u;
        } else {
            seen += s->rec.hist[++b];
        }
    }
    o = kml_mon_put_fixed(o, 1, s->run[KML_MON_OOR], 0.0f, 255.0f, 255.0f);
    i = 0;
    do { /* the first largest |EWMA z| (n_monitored >= 1) */
        const float z = s->z_mean[i];
        if (KML_MON_ABS(z) > KML_MON_ABS(drift)) {
            drift = z;
        }
    } while (++i < p->n_monitored);
    o = kml_mon_put_fixed(o, 2, drift, -32768.0f, 32767.0f, 256.0f); /* Q8.8 */
    o = kml_mon_put_fixed(o, 2, s->run[KML_MON_SCORE_OOD], 0.0f, 65535.0f, 256.0f);
    o = kml_mon_put_fixed(o, 2, s->run[KML_MON_ENTROPY], 0.0f, 65535.0f, 65535.0f);
    o = kml_mon_put(o, 2, s->rec.flags);
    for (i = 0; i < KML_TELEMETRY_BYTES - 2; ++i) { /* CRC-16/CCITT-FALSE */
        crc ^= (uint32_t)out[i] << 8;
        for (b = 0; b < 8; ++b) { /* bits above 15 never reach the low 16: masked at the end */
            crc = (crc << 1) ^ ((crc & 0x8000u) ? 0x1021u : 0u);
        }
    }
    (void)kml_mon_put(o, 2, crc);
    memset(&s->rec, 0, sizeof s->rec);
}
