/* SPDX-License-Identifier: Apache-2.0 */
/* kml_monitor: the on-device monitor after the decision layer (input drift, out-of-range
 * rate, stuck channels, confidence, out-of-distribution score, Page-Hinkley change
 * detection) and its kml_telemetry_v1 record. Python twin: kiloml/monitor/. No malloc:
 * the parameters are const (flash), the state is a struct the caller owns, with the
 * per-feature and per-channel arrays it points to. */
#ifndef KML_MONITOR_H
#define KML_MONITOR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* kml_monitor_state_flags() bits (kiloml.monitor.flags.FLAGS) */
#define KML_MON_INPUT_DRIFT 0x0001u    /* EWMA z (or variance ratio) of a feature off limits */
#define KML_MON_OUT_OF_RANGE 0x0002u   /* out-of-range rate above its limit */
#define KML_MON_STUCK_CHANNEL 0x0004u  /* a channel flat for stuck_windows windows */
#define KML_MON_LOW_CONFIDENCE 0x0008u /* running top score / margin / entropy off limits */
#define KML_MON_UNCERTAIN_RATE 0x0010u /* running uncertain rate above its limit */
#define KML_MON_OOD 0x0020u            /* running OOD score above its limit */
#define KML_MON_CHANGE 0x0040u         /* a Page-Hinkley detector fired at this window */

#define KML_MON_PH 2 /* Page-Hinkley detectors: 0 the OOD score, 1 the top score */
#define KML_MON_HIST 16 /* top-score histogram bins of a record */
#define KML_TELEMETRY_BYTES 48

/* the running (EWMA) signals, kml_monitor_state.run[] */
#define KML_MON_OOR 0       /* share of monitored features outside the training range */
#define KML_MON_SCORE_OOD 1 /* mean squared clipped z (diagonal Mahalanobis^2 / k) */
#define KML_MON_TOP 2       /* top smoothed score */
#define KML_MON_MARGIN 3    /* its lead over the second */
#define KML_MON_ENTROPY 4   /* normalized entropy of the smoothed scores */
#define KML_MON_UNCERTAIN 5 /* share of uncertain candidates */
#define KML_MON_RUN 6
/* run_init: the starts of KML_MON_SCORE_OOD ... KML_MON_ENTROPY (OOR and UNCERTAIN start at 0) */
#define KML_MON_RUN_INIT 4

typedef struct {
    /* counts (16 bits: the parameters stay small in flash); n_monitored, n_channels >= 1,
     * n_classes >= 2 (the update's loops run at least once), n_classes <= 255 (a byte of
     * the telemetry record) */
    uint16_t n_monitored;   /* k: monitored features */
    uint16_t n_channels;    /* raw channels (their window variances come in) */
    uint16_t n_classes;
    uint16_t stuck_windows; /* consecutive flat windows that make a channel stuck */
    const int32_t *index;  /* [k] positions in the feature vector */
    const float *mean;     /* [k] training mean */
    const float *inv_sd;   /* [k] 1 / training standard deviation */
    const float *lo, *hi;  /* [k] training quantiles (out of range outside them) */
    const float *floor;    /* [n_channels] window variance below it: flat */
    float alpha;           /* EWMA weight of the new window */
    float one_minus_alpha;
    float z_clip;          /* |z| of a feature is clipped to it (NaN -> +z_clip) */
    float inv_k;           /* 1 / k */
    float inv_log2_classes;
    /* limits (kiloml.monitor.config.MonitorThresholds): a feature's EWMA z beyond
     * +-z_limit or its EWMA variance outside [var_lo, var_hi] is input drift; a running
     * signal past its run_limit raises its flag: KML_MON_TOP and KML_MON_MARGIN below it,
     * the others above it */
    float z_limit, var_lo, var_hi;
    float run_init[KML_MON_RUN_INIT], run_limit[KML_MON_RUN];
    float ph_delta[KML_MON_PH], ph_lambda[KML_MON_PH];
    float ph_cap;         /* the detector mean's count stops here (then it is an EWMA) */
    float ph_min_windows; /* windows after a (re)start before a detector may fire */
} kml_monitor_params;

/* what a record counts; kml_monitor_write_snapshot starts it again */
typedef struct {
    uint16_t counts[7];          /* decisions per class (c >= 5: slot 5), then [6] the
                                  * uncertain candidates; saturating (the record's order) */
    uint16_t hist[KML_MON_HIST]; /* top-score histogram */
    uint16_t flags;              /* OR of the windows' flags */
} kml_monitor_record;

typedef struct {
    float *z_mean; /* [k] EWMA of the clipped z of each monitored feature */
    float *z_var;  /* [k] EWMA variance of it (1 in distribution) */
    uint16_t *flat_run; /* [n_channels] consecutive flat windows (saturating) */
    float run[KML_MON_RUN]; /* the running signals (KML_MON_OOR ...) */
    float ph_n[KML_MON_PH], ph_mean[KML_MON_PH], ph_up[KML_MON_PH], ph_down[KML_MON_PH];
    uint32_t windows; /* since reset */
    uint16_t flags;   /* of the latest window */
    kml_monitor_record rec;
} kml_monitor_state;

void kml_monitor_reset(const kml_monitor_params *p, kml_monitor_state *s);

/* One window, after the decision layer: the whole feature vector, the raw window's
 * per-channel variance (kml_monitor_channel_variance), the smoothed scores, the
 * debounced decision (class, or -1) and whether the candidate was uncertain. Returns
 * the window's flags. */
uint16_t kml_monitor_update(const kml_monitor_params *p, kml_monitor_state *s,
                            const float *features, const float *channel_variance,
                            const float *smoothed, int32_t decision, int32_t uncertain);

/* kml_monitor_update with the window's out-of-distribution input given (a network's energy
 * score less its training offset, kml_monitor_energy_s8) in place of the mean squared z of
 * the monitored features; clamped to +-1e30, NaN counting as +1e30. */
uint16_t kml_monitor_update_ood(const kml_monitor_params *p, kml_monitor_state *s,
                                const float *features, const float *channel_variance,
                                const float *smoothed, int32_t decision, int32_t uncertain,
                                float ood);

/* the latest window's flags (inline: a load, no call) */
static inline uint16_t kml_monitor_state_flags(const kml_monitor_state *s)
{
    return s->flags;
}

/* The population variance of each channel of a window (samples x channels, sample-major;
 * a ring of rows whose oldest is start_row, 0 for a plain window): the float32 mean in time
 * order, then the mean of squared deviations in time order. */
void kml_monitor_channel_variance(const float *window, int32_t samples, int32_t channels,
                                  int32_t start_row, float *out);

/* kml_monitor_channel_variance's passes with the mean kept: out[c] the mean of channel c,
 * out[channels + c] its variance (the inputs a monitor of a raw-window model watches). */
void kml_monitor_channel_moments(const float *window, int32_t samples, int32_t channels,
                                 int32_t start_row, float *out);

/* The energy score of n logits, -log(sum exp(logit)) (temperature 1; higher is further out
 * of distribution): the largest logit m subtracted, exp as 2^((l - m) log2 e) and the log as
 * log2 x ln 2, both fixed polynomials (no libm), summed in order; clamped to +-1e30. The
 * _s8 form reads int8 logits, each scale * (q - zero_point) in float32 (a network's
 * pre-softmax tensor, where it stays in the arena after the network ran). */
float kml_monitor_energy(const float *logits, int32_t n);
float kml_monitor_energy_s8(const int8_t *logits, int32_t n, float scale, int32_t zero_point);

/* Writes the 48-byte kml_telemetry_v1 record (little-endian, CRC-16/CCITT-FALSE) and
 * starts the next record's counts, histogram and flags. */
void kml_monitor_write_snapshot(const kml_monitor_params *p, kml_monitor_state *s,
                          const uint8_t model_id[8], uint32_t uptime_s,
                          uint8_t out[KML_TELEMETRY_BYTES]);

#ifdef __cplusplus
}
#endif

#endif /* KML_MONITOR_H */
