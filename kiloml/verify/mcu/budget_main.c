/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml budget probe: the smallest firmware that uses the library's whole API.
 * Linked against the target's real flash and RAM sizes, it fails to link if the
 * library does not fit; linked again without the library calls (KML_NO_LIBRARY),
 * the difference in size is what the library adds to a firmware. */
#include <stdint.h>

#ifndef KML_NO_LIBRARY
#include "kiloml_model.h"
#endif

int main(void)
{
#ifndef KML_NO_LIBRARY
    /* The input lives wherever the application keeps it; not counted here. */
    const float *volatile input = (const float *)0x20000000u;
    float features[KML_FEATURES];
    kml_result_t result;
    kml_reset();
    if (kml_push_sample(input)) {
        (void)kml_classify_latest(&result);
    }
    kml_compute_features(input, features);
#if defined(KML_MONITOR) || defined(KML_PROBE_DECIDE)
    { /* with a monitor: the decision layer that updates it, and its API */
        kml_decision_t decision;
        (void)kml_decide_latest(&decision);
    }
#endif
#ifdef KML_MONITOR
    {
        static uint8_t record[KML_TELEMETRY_RECORD_BYTES];
        kml_monitor_snapshot(0u, record);
        if (kml_monitor_flags() != 0u) {
            return -2;
        }
    }
#endif
#ifdef KML_RECORDING
    if (kml_classify_recording(input, KML_WINDOW_SAMPLES, &result) < 0) {
        return -1;
    }
#endif
    {
        volatile float sink = features[0]; /* keeps the features live, on the stack */
        (void)sink;
    }
    return (int)kml_classify(input, &result);
#else
    return 0;
#endif
}
