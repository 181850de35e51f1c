/* SPDX-License-Identifier: Apache-2.0 */
/* Size probe of kml_monitor: a minimal firmware with one monitor (const parameters in
 * flash, its state in RAM) or, with -DKML_NO_MONITOR, the same firmware without it; the
 * difference is what the monitor costs. KML_PROBE_K / _CHANNELS / _CLASSES size it;
 * KML_PROBE_NETWORK makes it a raw-window network's (the channel moments it watches, the
 * int8 logits' energy score, kml_monitor_update_ood). */
#include <stdint.h>

#ifndef KML_NO_MONITOR
#include "kml_monitor.h"

static const int32_t index_[KML_PROBE_K] = {0};
static const float stats[4][KML_PROBE_K] = {{0.0f}};
static const float floor_[KML_PROBE_CHANNELS] = {0.0f};
static const kml_monitor_params params = {
    KML_PROBE_K, KML_PROBE_CHANNELS, KML_PROBE_CLASSES, 8, index_, stats[0], stats[1],
    stats[2], stats[3], floor_, 0.03125f, 0.96875f, 16.0f, 0.25f, 0.5f, 3.0f, 0.01f, 9.0f,
    {1.0f, 1.0f, 1.0f, 0.0f}, {0.25f, 4.0f, 0.4f, 0.05f, 0.95f, 0.5f},
    {0.5f, 0.05f}, {50.0f, 5.0f}, 1024.0f, 32.0f};
static float z_mean[KML_PROBE_K], z_var[KML_PROBE_K];
static uint16_t flat_run[KML_PROBE_CHANNELS];
static kml_monitor_state state; /* zero (.bss); the arrays are attached at start-up */
#endif

volatile float probe_in[64];
volatile uint32_t probe_out;

int main(void)
{
    float f[64], v[64], s[64];
    int32_t i;
    for (i = 0; i < 64; ++i) { /* the same inputs with and without the monitor */
        f[i] = probe_in[i];
        v[i] = probe_in[i];
        s[i] = probe_in[i];
    }
#ifndef KML_NO_MONITOR
    {
        static const uint8_t id[8] = {0};
        uint8_t rec[KML_TELEMETRY_BYTES];
        state.z_mean = z_mean;
        state.z_var = z_var;
        state.flat_run = flat_run;
        kml_monitor_reset(&params, &state);
#ifdef KML_PROBE_NETWORK
        /* the window's channel means and variances (what it watches), the logits' energy */
        static int8_t logits[KML_PROBE_CLASSES];
        logits[0] = (int8_t)probe_in[0];
        kml_monitor_channel_moments(f, 32 / KML_PROBE_CHANNELS, KML_PROBE_CHANNELS, 1, v);
        probe_out = kml_monitor_update_ood(
            &params, &state, v, v + KML_PROBE_CHANNELS, s, 0, 0,
            kml_monitor_energy_s8(logits, KML_PROBE_CLASSES, 0.125f, -3) - 1.5f);
#else
        /* the window's channel variances: part of what a streaming library runs */
        kml_monitor_channel_variance(f, 64 / KML_PROBE_CHANNELS, KML_PROBE_CHANNELS, 1, v);
        probe_out = kml_monitor_update(&params, &state, f, v, s, 0, 0);
#endif
        probe_out += kml_monitor_state_flags(&state);
        kml_monitor_write_snapshot(&params, &state, id, 0u, rec);
        probe_out += rec[46];
    }
#else
    probe_out = (uint32_t)(f[1] + v[2] + s[3]);
#endif
    return (int)probe_out;
}
