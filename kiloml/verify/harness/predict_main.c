/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml host check of kml_predict (libraries whose model reads its input as it is):
 *
 *   predict_main IN OUT   IN: int32 n, then n inputs of KML_FEATURES float32.
 *                         OUT per input: int32 return value, int32 out.label,
 *                         float32 scores[KML_CLASSES].
 * Little-endian host byte order. Exit code 0 on success. */
#include <stdio.h>

#include "kiloml_model.h"

static float input_buf[KML_FEATURES];

int main(int argc, char **argv)
{
    FILE *in, *out;
    int32_t n, i, label;
    kml_result_t result;
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN OUT\n", argv[0]);
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (!in || !out || fread(&n, sizeof n, 1, in) != 1) {
        return 2;
    }
    for (i = 0; i < n; ++i) {
        if (fread(input_buf, sizeof(float), KML_FEATURES, in) != KML_FEATURES) {
            return 1;
        }
        label = kml_predict(input_buf, &result);
        if (fwrite(&label, sizeof label, 1, out) != 1 ||
            fwrite(&result.label, sizeof result.label, 1, out) != 1 ||
            fwrite(result.scores, sizeof(float), KML_CLASSES, out) != KML_CLASSES) {
            return 1;
        }
    }
    fclose(in);
    return fclose(out) != 0;
}
