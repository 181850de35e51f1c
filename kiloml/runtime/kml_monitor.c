/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: the on-device monitor. Every operation is float32 in a fixed order,
 * with no libm call (the entropy's log2 is a fixed polynomial on the float's bits), so
 * kiloml/monitor/ reproduces it bit for bit. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_monitor.h"

#include <stddef.h> /* offsetof */
#include <string.h> /* memcpy, memset */

#define KML_MON_F32_MIN 1.17549435e-38f /* FLT_MIN: smaller scores are taken as 0 */

/* Helpers called from several places stay out of line: the monitor's flash budget
 * (2 KB on a Cortex-M) matters more than a few calls per window. */
#if defined(__GNUC__)
#define KML_MON_OUTLINE __attribute__((noinline))
#else
#define KML_MON_OUTLINE
#endif

KML_MON_OUTLINE static float kml_mon_clamp(float v, float lo, float hi)
{
    if (!(v >= lo)) { /* NaN too */
        return lo;
    }
    return v > hi ? hi : v;
}

/* log2(x) for a normal positive float: the exponent plus a degree-5 polynomial in the
 * mantissa's fraction (|error| < 3e-5; exact at powers of two). */
static float kml_mon_log2(float x)
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

static const kml_monitor_record kml_mon_empty_record = {{0}, 0, {0}, 0};

/* the flag each running signal raises */
static const uint16_t kml_mon_run_flag[KML_MON_RUN] = {
    KML_MON_OUT_OF_RANGE, KML_MON_OOD, KML_MON_LOW_CONFIDENCE, KML_MON_LOW_CONFIDENCE,
    KML_MON_LOW_CONFIDENCE, KML_MON_UNCERTAIN_RATE};

void kml_monitor_reset(const kml_monitor_params *p, kml_monitor_state *s)
{
    int32_t i;
    /* everything after the array pointers starts at 0 */
    memset(s->run, 0, sizeof *s - offsetof(kml_monitor_state, run));
    for (i = 0; i < p->n_monitored; ++i) {
        s->z_mean[i] = 0.0f; /* the training mean, in z */
        s->z_var[i] = 1.0f;
    }
    for (i = 0; i < p->n_channels; ++i) {
        s->flat_run[i] = 0;
    }
    for (i = 0; i < KML_MON_RUN; ++i) {
        s->run[i] = p->run_init[i];
    }
}

/* Two-sided Page-Hinkley: the deviation from the detector's running mean, less delta,
 * summed and floored at 0 each way; past lambda it fires and starts again. */
static int32_t kml_mon_page_hinkley(const kml_monitor_params *p, kml_monitor_state *s,
                                    int32_t j, float x)
{
    float dev, up, down;
    if (s->ph_n[j] < p->ph_cap) {
        s->ph_n[j] = s->ph_n[j] + 1.0f;
    }
    s->ph_mean[j] = s->ph_mean[j] + (x - s->ph_mean[j]) / s->ph_n[j];
    dev = x - s->ph_mean[j];
    up = s->ph_up[j] + dev - p->ph_delta[j];
    down = s->ph_down[j] - dev - p->ph_delta[j];
    s->ph_up[j] = up > 0.0f ? up : 0.0f;
    s->ph_down[j] = down > 0.0f ? down : 0.0f;
    if (s->ph_n[j] >= p->ph_min_windows &&
        (s->ph_up[j] > p->ph_lambda[j] || s->ph_down[j] > p->ph_lambda[j])) {
        s->ph_n[j] = 0.0f;
        s->ph_up[j] = 0.0f;
        s->ph_down[j] = 0.0f;
        return 1;
    }
    return 0;
}

KML_MON_OUTLINE static void kml_mon_count(uint16_t *c)
{
    if (*c < 0xFFFFu) {
        ++*c;
    }
}

uint16_t kml_monitor_update(const kml_monitor_params *p, kml_monitor_state *s,
                            const float *features, const float *channel_variance,
                            const float *smoothed, int32_t decision, int32_t uncertain)
{
    int32_t i, best = 0, outside = 0, bin;
    float x[KML_MON_RUN], d2 = 0.0f, top, second = -1.0f, ent = 0.0f;
    uint32_t flags = 0; /* 32 bits while it is built: no narrowing after every OR */
    /* inputs: clipped z of each monitored feature, its EWMA mean and variance */
    for (i = 0; i < p->n_monitored; ++i) {
        const float v = features[p->index[i]];
        float z = (v - p->mean[i]) * p->inv_sd[i], d, ad;
        if (!(v >= p->lo[i] && v <= p->hi[i])) {
            ++outside;
        }
        z = z != z ? p->z_clip : kml_mon_clamp(z, -p->z_clip, p->z_clip);
        d2 = d2 + z * z;
        d = z - s->z_mean[i];
        ad = p->alpha * d;
        s->z_mean[i] = s->z_mean[i] + ad;
        s->z_var[i] = p->one_minus_alpha * (s->z_var[i] + d * ad);
        if (s->z_mean[i] > p->z_limit || s->z_mean[i] < -p->z_limit ||
            s->z_var[i] > p->var_hi || s->z_var[i] < p->var_lo) {
            flags |= KML_MON_INPUT_DRIFT;
        }
    }
    for (i = 0; i < p->n_channels; ++i) {
        if (!(channel_variance[i] >= p->floor[i])) { /* NaN: a broken channel too */
            kml_mon_count(&s->flat_run[i]);
        } else {
            s->flat_run[i] = 0;
        }
        if (s->flat_run[i] >= p->stuck_windows) {
            flags |= KML_MON_STUCK_CHANNEL;
        }
    }
    /* confidence: the first maximum (a NaN never wins), the largest other, entropy */
    for (i = 1; i < p->n_classes; ++i) {
        if (smoothed[i] > smoothed[best]) {
            best = i;
        }
    }
    for (i = 0; i < p->n_classes; ++i) {
        const float q = smoothed[i];
        if (i != best && q > second) {
            second = q;
        }
        if (q >= KML_MON_F32_MIN) {
            ent = ent - q * kml_mon_log2(q);
        }
    }
    top = kml_mon_clamp(smoothed[best], 0.0f, 1.0f);
    x[KML_MON_OOR] = (float)outside * p->inv_k;
    x[KML_MON_SCORE_OOD] = d2 * p->inv_k;
    x[KML_MON_TOP] = top;
    x[KML_MON_MARGIN] = kml_mon_clamp(top - kml_mon_clamp(second, 0.0f, 1.0f), 0.0f, 1.0f);
    x[KML_MON_ENTROPY] = kml_mon_clamp(ent * p->inv_log2_classes, 0.0f, 1.0f);
    x[KML_MON_UNCERTAIN] = uncertain ? 1.0f : 0.0f;
    for (i = 0; i < KML_MON_RUN; ++i) {
        const float r = s->run[i] + p->alpha * (x[i] - s->run[i]);
        s->run[i] = r;
        if (r < p->run_lo[i] || r > p->run_hi[i]) {
            flags |= kml_mon_run_flag[i];
        }
    }
    /* change detection on the window's OOD score (detector 0) and top score (1) */
    for (i = 0; i < KML_MON_PH; ++i) {
        if (kml_mon_page_hinkley(p, s, i, x[KML_MON_SCORE_OOD + i])) {
            flags |= KML_MON_CHANGE;
        }
    }
    /* the record's counts (saturating) */
    if (s->windows < 0xFFFFFFFFu) {
        ++s->windows;
    }
    if (decision >= 0) {
        kml_mon_count(&s->rec.counts[decision < 5 ? decision : 5]);
    }
    if (uncertain) {
        kml_mon_count(&s->rec.uncertain);
    }
    bin = (int32_t)(top * (float)KML_MON_HIST); /* exact: a power of two; top in [0, 1] */
    kml_mon_count(&s->rec.hist[bin < KML_MON_HIST ? bin : KML_MON_HIST - 1]);
    s->flags = (uint16_t)flags;
    s->rec.flags = (uint16_t)(s->rec.flags | flags);
    return (uint16_t)flags;
}

uint16_t kml_monitor_state_flags(const kml_monitor_state *s)
{
    return s->flags;
}

void kml_monitor_channel_variance(const float *window, int32_t samples, int32_t channels,
                                  int32_t start_row, float *out)
{
    int32_t c, t, row, pass;
    const float n = (float)samples;
    for (c = 0; c < channels; ++c) {
        float mean = 0.0f;
        for (pass = 0; pass < 2; ++pass) { /* the mean, then the mean squared deviation */
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
        }
        out[c] = mean;
    }
}

/* the bin midpoint (x 255, floor) of the q-th percentile of the record's histogram */
KML_MON_OUTLINE static uint8_t kml_mon_quantile(const uint16_t *hist, uint32_t total, uint32_t q)
{
    uint32_t need, seen = 0;
    int32_t b;
    if (total == 0) {
        return 0;
    }
    need = (q * total + 99u) / 100u; /* the rank: ceil(q% of total), at least 1 */
    if (need == 0) {
        need = 1;
    }
    for (b = 0; b < KML_MON_HIST - 1; ++b) {
        seen += hist[b];
        if (seen >= need) {
            break;
        }
    }
    return (uint8_t)(((uint32_t)b * 2u + 1u) * 255u / (2u * KML_MON_HIST));
}

/* the record's fixed-point fields: v x scale in float32, clamped, truncated toward zero
 * (a negative value keeps its two's complement in the field's low bytes) */
static uint32_t kml_mon_fixed(float v, float scale, float lo, float hi)
{
    return (uint32_t)(int32_t)kml_mon_clamp(v * scale, lo, hi);
}

static void kml_mon_put16(uint8_t *out, uint32_t v)
{
    out[0] = (uint8_t)(v & 0xFFu);
    out[1] = (uint8_t)((v >> 8) & 0xFFu);
}

static void kml_mon_put32(uint8_t *out, uint32_t v)
{
    kml_mon_put16(out, v & 0xFFFFu);
    kml_mon_put16(out + 2, v >> 16);
}

void kml_monitor_write_snapshot(const kml_monitor_params *p, kml_monitor_state *s,
                          const uint8_t model_id[8], uint32_t uptime_s,
                          uint8_t out[KML_TELEMETRY_BYTES])
{
    int32_t i, b;
    uint32_t total = 0, crc = 0xFFFFu;
    float drift = 0.0f, largest = 0.0f;
    kml_mon_put16(out, 0x544Bu);
    out[2] = 1;
    out[3] = (uint8_t)(p->n_classes < 255 ? p->n_classes : 255);
    for (i = 0; i < 8; ++i) {
        out[4 + i] = model_id[i];
    }
    kml_mon_put32(out + 12, uptime_s);
    kml_mon_put32(out + 16, s->windows);
    for (i = 0; i < 6; ++i) {
        kml_mon_put16(out + 20 + 2 * i, s->rec.counts[i]);
    }
    kml_mon_put16(out + 32, s->rec.uncertain);
    for (i = 0; i < KML_MON_HIST; ++i) {
        total += s->rec.hist[i];
    }
    out[34] = kml_mon_quantile(s->rec.hist, total, 10u); /* top-score p10, p50, p90 */
    out[35] = kml_mon_quantile(s->rec.hist, total, 50u);
    out[36] = kml_mon_quantile(s->rec.hist, total, 90u);
    out[37] = (uint8_t)kml_mon_fixed(s->run[KML_MON_OOR], 255.0f, 0.0f, 255.0f);
    for (i = 0; i < p->n_monitored; ++i) { /* the first largest |EWMA z| */
        const float a = s->z_mean[i] < 0.0f ? -s->z_mean[i] : s->z_mean[i];
        if (a > largest) {
            largest = a;
            drift = s->z_mean[i];
        }
    }
    kml_mon_put16(out + 38, kml_mon_fixed(drift, 256.0f, -32768.0f, 32767.0f)); /* Q8.8 */
    kml_mon_put16(out + 40, kml_mon_fixed(s->run[KML_MON_SCORE_OOD], 256.0f, 0.0f, 65535.0f));
    kml_mon_put16(out + 42, kml_mon_fixed(s->run[KML_MON_ENTROPY], 65535.0f, 0.0f, 65535.0f));
    kml_mon_put16(out + 44, s->rec.flags);
    for (i = 0; i < KML_TELEMETRY_BYTES - 2; ++i) { /* CRC-16/CCITT-FALSE */
        crc ^= (uint32_t)out[i] << 8;
        for (b = 0; b < 8; ++b) {
            crc = (crc & 0x8000u) ? ((crc << 1) ^ 0x1021u) & 0xFFFFu : (crc << 1) & 0xFFFFu;
        }
    }
    kml_mon_put16(out + 46, crc);
    s->rec = kml_mon_empty_record;
}
