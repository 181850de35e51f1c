/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml capture sender (see kml_capture.h; the protocol: docs/capture_protocol.md).
 * A frame is built byte by byte: each payload byte updates the CRC and goes into the
 * current COBS block, which is written out when it reaches a zero byte or 254 data
 * bytes; the frame ends with its CRC (low byte first), the last block and 0x00. */
#include "kml_capture.h"

#include <string.h>

static void block_flush(kml_capture_t *cap)
{
    cap->block[0] = (uint8_t)(cap->fill + 1u);
    cap->write(cap->user, cap->block, (uint32_t)cap->fill + 1u);
    cap->fill = 0u;
}

/* One byte of the frame body (payload or CRC), COBS-encoded. */
static void put_raw(kml_capture_t *cap, uint8_t byte)
{
    if (byte == 0u) {
        block_flush(cap);
        return;
    }
    cap->block[1u + cap->fill] = byte;
    cap->fill++;
    if (cap->fill == 254u) {
        block_flush(cap); /* code 0xFF: a full block, no zero follows it */
    }
}

static void put(kml_capture_t *cap, uint8_t byte)
{
    cap->crc = kml_capture_crc16(cap->crc, &byte, 1u);
    put_raw(cap, byte);
}

static void put_u32(kml_capture_t *cap, uint32_t v)
{
    put(cap, (uint8_t)(v & 0xFFu));
    put(cap, (uint8_t)((v >> 8) & 0xFFu));
    put(cap, (uint8_t)((v >> 16) & 0xFFu));
    put(cap, (uint8_t)((v >> 24) & 0xFFu));
}

static void put_f32(kml_capture_t *cap, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits); /* the IEEE 754 bits, whatever they are */
    put_u32(cap, bits);
}

static void frame_begin(kml_capture_t *cap, uint8_t type)
{
    cap->crc = 0xFFFFu;
    cap->fill = 0u;
    put(cap, type);
}

static void frame_end(kml_capture_t *cap)
{
    static const uint8_t delimiter = 0u;
    uint16_t crc = cap->crc;
    put_raw(cap, (uint8_t)(crc & 0xFFu));
    put_raw(cap, (uint8_t)(crc >> 8));
    block_flush(cap);
    cap->write(cap->user, &delimiter, 1u);
}

static uint32_t text_length(const char *s)
{
    uint32_t n = 0u;
    while (s[n] != '\0' && n <= KML_CAPTURE_MAX_NAME) {
        n++;
    }
    return n;
}

static void put_text(kml_capture_t *cap, const char *s, uint32_t n)
{
    uint32_t i;
    put(cap, (uint8_t)n);
    for (i = 0u; i < n; ++i) {
        put(cap, (uint8_t)s[i]);
    }
}

uint16_t kml_capture_crc16(uint16_t crc, const uint8_t *data, uint32_t n)
{
    uint32_t i;
    int bit;
    for (i = 0u; i < n; ++i) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (bit = 0; bit < 8; ++bit) {
            crc = (crc & 0x8000u) != 0u ? (uint16_t)((crc << 1) ^ 0x1021u)
                                        : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

int kml_capture_init(kml_capture_t *cap, uint32_t n_channels, kml_capture_write_fn write,
                     void *user)
{
    if (cap == NULL || write == NULL || n_channels == 0u ||
        n_channels > KML_CAPTURE_MAX_CHANNELS) {
        return KML_CAPTURE_EINVAL;
    }
    memset(cap, 0, sizeof *cap);
    cap->write = write;
    cap->user = user;
    cap->n_channels = (uint8_t)n_channels;
    return KML_CAPTURE_OK;
}

int kml_capture_hello(kml_capture_t *cap, const char *const *names,
                      const char *const *units, float rate_hz)
{
    static const uint8_t resync = 0u;
    uint32_t i;
    if (cap == NULL || cap->write == NULL || names == NULL) {
        return KML_CAPTURE_EINVAL;
    }
    for (i = 0u; i < cap->n_channels; ++i) { /* check everything before sending a byte */
        if (names[i] == NULL || text_length(names[i]) == 0u ||
            text_length(names[i]) > KML_CAPTURE_MAX_NAME ||
            (units != NULL && units[i] != NULL &&
             text_length(units[i]) > KML_CAPTURE_MAX_NAME)) {
            return KML_CAPTURE_EINVAL;
        }
    }
    cap->write(cap->user, &resync, 1u);
    frame_begin(cap, KML_CAPTURE_HELLO);
    put(cap, (uint8_t)KML_CAPTURE_VERSION);
    put(cap, cap->n_channels);
    put_f32(cap, rate_hz);
    for (i = 0u; i < cap->n_channels; ++i) {
        const char *unit = (units != NULL && units[i] != NULL) ? units[i] : "";
        put_text(cap, names[i], text_length(names[i]));
        put_text(cap, unit, text_length(unit));
    }
    frame_end(cap);
    return KML_CAPTURE_OK;
}

int kml_capture_sample(kml_capture_t *cap, uint32_t t_us, const float *values)
{
    uint32_t i;
    if (cap == NULL || cap->write == NULL || values == NULL) {
        return KML_CAPTURE_EINVAL;
    }
    frame_begin(cap, KML_CAPTURE_SAMPLE);
    put_u32(cap, cap->seq);
    put_u32(cap, t_us);
    for (i = 0u; i < cap->n_channels; ++i) {
        put_f32(cap, values[i]);
    }
    frame_end(cap);
    cap->seq++;
    return KML_CAPTURE_OK;
}

int kml_capture_end(kml_capture_t *cap)
{
    if (cap == NULL || cap->write == NULL) {
        return KML_CAPTURE_EINVAL;
    }
    frame_begin(cap, KML_CAPTURE_END);
    put_u32(cap, cap->seq);
    frame_end(cap);
    return KML_CAPTURE_OK;
}
