/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: per-channel window statistics (float32).
 *
 * The Python reference (kiloml/dsp/statistics.py) performs the same float32
 * operations in the same order, so features agree bit for bit. Build without
 * floating-point contraction (-ffp-contract=off): a fused multiply-add would
 * round differently from the reference.
 */
#ifndef KML_STATISTICS_H
#define KML_STATISTICS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KML_STAT_MEAN               (1u << 0)
#define KML_STAT_STD                (1u << 1)
#define KML_STAT_MIN                (1u << 2)
#define KML_STAT_MAX                (1u << 3)
#define KML_STAT_RMS                (1u << 4)
#define KML_STAT_PEAK_TO_PEAK       (1u << 5)
#define KML_STAT_ZERO_CROSSING_RATE (1u << 6)
#define KML_STAT_MEAN_CROSSING_RATE (1u << 7)
#define KML_STAT_SKEWNESS           (1u << 8)
#define KML_STAT_KURTOSIS           (1u << 9)
#define KML_STAT_COUNT              10

/* Statistics of each channel of a window held in a ring of `rows` rows of
 * `channels` floats, whose oldest row is `start_row` (0 for a plain
 * row-major window). Writes, channel by channel, the statistics selected in
 * `stat_mask` in the order of the bits above. */
void kml_statistics(const float *window, int32_t rows, int32_t channels, int32_t start_row,
                    uint32_t stat_mask, float *out);

#ifdef __cplusplus
}
#endif

#endif
