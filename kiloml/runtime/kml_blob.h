/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: model updates without reflashing code (docs/blob_format.md).
 *
 * An updatable library (`[library] updatable = true`) reads its forest (a network: its
 * weight and parameter pools, KML_BLOB_KIND 2) and its decision parameters through
 * kml_blob_forest() (kml_blob_network()) / kml_blob_decision(). A parameter blob
 * (model.kmlb, written by `kiloml release` / kiloml.blob.build) holds a new version's
 * tables; kml_blob_activate checks it (magic, format, interface, layout, length,
 * SHA-256, Ed25519 signature when the library requires one, anti-rollback counter, every
 * table length and every index a walk can follow), builds the parameters pointing into
 * the blob in the inactive of two RAM slots, runs the blob's golden vectors through them
 * (kml_selftest's check) and switches only when every decision matches. On any failure
 * the running parameters stay as they were.
 *
 * The blob's bytes are read in place, not copied: they must stay where they are (a flash
 * partition, a RAM buffer) while they are active, and start at an 8-byte boundary.
 */
#ifndef KML_BLOB_H
#define KML_BLOB_H

#include <stdint.h>

#ifndef KML_MODEL_CONFIG
#include "kml_config.h"
#endif
#include "kml_decision.h"
#ifndef KML_BLOB_KIND
#define KML_BLOB_KIND 1 /* a table-style forest */
#endif
#if KML_BLOB_KIND == 1
#include "kml_trees.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Reason codes (kml_blob_check, kml_blob_activate, kml_selftest). */
enum {
    KML_BLOB_OK = 0,
    KML_BLOB_BAD_MAGIC = 1,       /* not "KMLB" */
    KML_BLOB_BAD_VERSION = 2,     /* a format version or header size this code cannot read */
    KML_BLOB_BAD_INTERFACE = 3,   /* another interface (channels, units, rates, window,
                                     classes) than KML_BLOB_INTERFACE_HASH */
    KML_BLOB_BAD_LAYOUT = 4,      /* parameters for other compiled code (types, proba mode,
                                     features, decision smoothing; more trees than fit) */
    KML_BLOB_BAD_LENGTH = 5,      /* fewer bytes than the header says (truncated) */
    KML_BLOB_BAD_HASH = 6,        /* the SHA-256 does not match: a changed byte */
    KML_BLOB_BAD_SIGNATURE = 7,   /* signed, but not by the trusted key */
    KML_BLOB_UNSIGNED = 8,        /* not signed, and this library requires a signature */
    KML_BLOB_DOWNGRADE = 9,       /* counter below kml_blob_min_counter() */
    KML_BLOB_BAD_PAYLOAD = 10,    /* a section, table length or index out of bounds */
    KML_BLOB_SELFTEST_FAILED = 11, /* the golden vectors' decisions differ */
    KML_BLOB_BAD_ALIGNMENT = 12   /* the blob does not start at an 8-byte boundary */
};

#define KML_BLOB_FORMAT_VERSION 1
#define KML_BLOB_HEADER_BYTES 136
#define KML_BLOB_KIND_FOREST 1
#define KML_BLOB_KIND_NETWORK 2

#if KML_BLOB_KIND == 2
/* A network's parameters: the int8 weight tables (KML_BLOB_NN_INT8_BYTES) and every other
 * number its kernel calls take (KML_BLOB_NN_WORDS int32 words; the graph is code). */
typedef struct {
    const int8_t *w8;
    const int32_t *words;
} kml_blob_network_t;

/* The parameters the generated code runs on. */
typedef struct {
    const kml_blob_network_t *network;
    const kml_decision_params *decision;
} kml_blob_model_t;

/* Defined by the generated kiloml_model.c: one feature vector (KML_BLOB_FEATURES floats)
 * through `net`; the label, and KML_BLOB_CLASSES scores. Uses the network's arena. */
int32_t kml_blob_network_predict(const kml_blob_network_t *net, const float *features,
                                 float *scores);
/* {count, lo, hi}: the range each run of parameter words must lie in (a shape: its
 * compiled value), in the words' order. */
extern const int32_t kml_blob_nn_ranges[KML_BLOB_NN_RANGES][3];
#else
/* The parameters the generated code runs on. */
typedef struct {
    const kml_forest_t *forest;
    const kml_decision_params *decision;
} kml_blob_model_t;
#endif

/* The compiled-in parameters (defined by the generated kiloml_model.c). */
extern const kml_blob_model_t kml_blob_builtin;

/* KML_BLOB_OK when `blob` (n bytes; more than the blob holds is fine, e.g. a whole flash
 * partition) could be activated, except for the self-test; else the first reason. */
int32_t kml_blob_check(const uint8_t *blob, uint32_t n);

/* Check, build the parameters in the inactive slot, self-test them, switch. Returns
 * KML_BLOB_OK (the blob's parameters decide from the next window on; the anti-rollback
 * minimum rises to its counter) or the reason, with the running parameters unchanged.
 * The decision layer's history is not reset: call kml_reset() for a clean start. */
int32_t kml_blob_activate(const uint8_t *blob, uint32_t n);

/* The active blob's golden vectors through the active parameters: KML_BLOB_OK, or
 * KML_BLOB_SELFTEST_FAILED (the compiled-in parameters carry none: KML_BLOB_OK). Uses its
 * own decision state, not the running one. */
int32_t kml_selftest(void);

/* "ok", "bad_magic", ... (the enum's names in lower case; "unknown" otherwise). */
const char *kml_blob_reason_name(int32_t reason);

/* The anti-rollback minimum: blobs with a lower counter are refused (KML_BLOB_DOWNGRADE).
 * 0 at start-up: the application persists it (read it after an activation) and sets it
 * again at boot. */
void kml_blob_set_min_counter(uint32_t counter);
uint32_t kml_blob_min_counter(void);
/* 1: accept a lower counter too (a deliberate downgrade); 0 (default): refuse it. */
void kml_blob_allow_downgrade(int32_t allow);

/* The active parameters (the generated code calls these on every window). */
#if KML_BLOB_KIND == 2
const kml_blob_network_t *kml_blob_network(void);
#else
const kml_forest_t *kml_blob_forest(void);
#endif
const kml_decision_params *kml_blob_decision(void);
/* The active blob's counter and 8-byte model id (0 and NULL for the compiled-in ones). */
uint32_t kml_blob_active_counter(void);
const uint8_t *kml_blob_active_model_id(void);

#ifdef __cplusplus
}
#endif

#endif /* KML_BLOB_H */
