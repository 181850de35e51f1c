/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml capture sender: stream sensor samples from firmware to `kiloml capture
 * --protocol kml` (the protocol: docs/capture_protocol.md).
 *
 * Transport-independent: every byte goes through the write callback you supply (a UART,
 * USB CDC, a BLE characteristic, a file). C99, no malloc, no floating-point arithmetic
 * (float values are sent as their IEEE 754 bits, little-endian), no other dependency.
 * Each frame is COBS-encoded with a CRC-16/CCITT-FALSE and ends with a 0x00 byte, so the
 * receiver detects corrupt frames and resynchronizes at the next frame; the sender writes
 * at most 255 bytes per callback and keeps one 255-byte block in its state.
 *
 *     static void uart_write(void *user, const uint8_t *data, uint32_t n)
 *     {
 *         (void)user;
 *         my_uart_send(data, n);
 *     }
 *
 *     static const char *const names[3] = {"ax", "ay", "az"};
 *     static const char *const units[3] = {"m/s2", "m/s2", "m/s2"};
 *     kml_capture_t cap;
 *     kml_capture_init(&cap, 3u, uart_write, NULL);
 *     kml_capture_hello(&cap, names, units, 50.0f);   // first, then now and then
 *     for (;;) {
 *         float xyz[3];
 *         read_accelerometer(xyz);
 *         kml_capture_sample(&cap, micros(), xyz);    // sequence numbers: automatic
 *     }
 *
 * Send the hello first and repeat it now and then (e.g. once a second): a receiver
 * started later learns the channels from it. kml_capture_end() tells the receiver the
 * recording is complete (optional).
 */
#ifndef KML_CAPTURE_H
#define KML_CAPTURE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KML_CAPTURE_VERSION 1u
#define KML_CAPTURE_MAX_CHANNELS 32u
#define KML_CAPTURE_MAX_NAME 31u /* bytes of a channel name or unit (UTF-8) */

/* Frame types (the first payload byte). */
#define KML_CAPTURE_HELLO 0x01u
#define KML_CAPTURE_SAMPLE 0x02u
#define KML_CAPTURE_END 0x03u

/* Return codes. */
#define KML_CAPTURE_OK 0
#define KML_CAPTURE_EINVAL (-1) /* a NULL pointer, 0 or too many channels, a long name */

/* Called with the bytes to send, in order; it must send all n of them. */
typedef void (*kml_capture_write_fn)(void *user, const uint8_t *data, uint32_t n);

/* The sender's state: treat as opaque (kml_capture_init fills it). */
typedef struct {
    kml_capture_write_fn write;
    void *user;
    uint32_t seq;     /* the next sample's sequence number */
    uint16_t crc;     /* CRC of the frame being written */
    uint8_t n_channels;
    uint8_t fill;     /* bytes in block[1..] */
    uint8_t block[255]; /* the COBS block being built: block[0] is its code byte */
} kml_capture_t;

/* Set up a sender of n_channels channels (1..KML_CAPTURE_MAX_CHANNELS). */
int kml_capture_init(kml_capture_t *cap, uint32_t n_channels, kml_capture_write_fn write,
                     void *user);
/* The hello frame: channel names and units (NULL units: none), the sample rate in Hz.
 * Preceded by a lone 0x00 so that a receiver that saw only noise so far starts clean. */
int kml_capture_hello(kml_capture_t *cap, const char *const *names,
                      const char *const *units, float rate_hz);
/* One sample frame: the next sequence number, the device timestamp in microseconds
 * (wrapping at 2^32 is fine), and n_channels values. */
int kml_capture_sample(kml_capture_t *cap, uint32_t t_us, const float *values);
/* The end frame: the number of samples sent since kml_capture_init. */
int kml_capture_end(kml_capture_t *cap);

/* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR) of n bytes,
 * continuing from crc (start with 0xFFFF): "123456789" gives 0x29B1. */
uint16_t kml_capture_crc16(uint16_t crc, const uint8_t *data, uint32_t n);

#ifdef __cplusplus
}
#endif

#endif /* KML_CAPTURE_H */
