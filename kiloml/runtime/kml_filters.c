/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: per-sample preprocessing. See kml_filters.h. */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_filters.h"

void kml_sos_reset(const kml_sos_t *f)
{
    int32_t i;
    for (i = 0; i < 2 * f->n_sections * f->channels; ++i) {
        f->state[i] = 0.0f;
    }
}

void kml_sos_step(const kml_sos_t *f, const float *in, float *out)
{
    int32_t c, s;
    for (c = 0; c < f->channels; ++c) {
        float x = in[c];
        const float *k = f->coeffs;
        float *z = f->state + 2 * c;
        for (s = 0; s < f->n_sections; ++s, k += 5, z += 2 * f->channels) {
            const float y = k[0] * x + z[0];
            z[0] = k[1] * x - k[3] * y + z[1];
            z[1] = k[2] * x - k[4] * y;
            x = y;
        }
        out[c] = x;
    }
}

void kml_preemphasis_reset(const kml_preemphasis_t *p)
{
    int32_t c;
    for (c = 0; c < p->channels; ++c) {
        p->previous[c] = 0.0f;
    }
}

void kml_preemphasis_step(const kml_preemphasis_t *p, const float *in, float *out)
{
    int32_t c;
    for (c = 0; c < p->channels; ++c) {
        const float x = in[c];
        out[c] = x - p->coefficient * p->previous[c];
        p->previous[c] = x;
    }
}

void kml_decimator_reset(const kml_decimator_t *d)
{
    kml_sos_reset(&d->anti_alias);
    *d->phase = 0;
}

int32_t kml_decimator_step(const kml_decimator_t *d, const float *in, float *out)
{
    const int32_t keep = (*d->phase == 0);
    kml_sos_step(&d->anti_alias, in, out);
    if (++*d->phase == d->factor) {
        *d->phase = 0;
    }
    return keep;
}
