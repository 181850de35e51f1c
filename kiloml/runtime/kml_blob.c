/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: parameter blobs (see kml_blob.h and docs/blob_format.md). */
#include "kml_fp.h" /* first: no float contraction, no fast-math */

#include "kml_blob.h"

#include <stddef.h>

#include "kml_sha256.h"

#ifndef KML_BLOB_REQUIRE_SIGNATURE
#define KML_BLOB_REQUIRE_SIGNATURE 0
#endif
#if KML_BLOB_REQUIRE_SIGNATURE
#include "kml_ed25519.h"
#endif

#if !defined(KML_BLOB_INTERFACE_HASH) || !defined(KML_BLOB_LAYOUT_HASH) || \
    !defined(KML_BLOB_FEATURES) || !defined(KML_BLOB_SMOOTHING) ||         \
    !defined(KML_BLOB_SMOOTHING_WINDOWS)
#error "kml_blob.c needs an updatable library's kml_config.h ([library] updatable = true)"
#endif
#if KML_BLOB_KIND == 2
#if !defined(KML_BLOB_CLASSES) || !defined(KML_BLOB_NN_INT8_BYTES) || \
    !defined(KML_BLOB_NN_WORDS) || !defined(KML_BLOB_NN_RANGES)
#error "an updatable network's kml_config.h defines KML_BLOB_CLASSES and KML_BLOB_NN_*"
#endif
#else
#if KML_TREE_INT16_THRESHOLDS || KML_TREE_INDEXED_THRESHOLDS || !KML_TREE_SPARSE_LEAVES || \
    KML_TREE_PROBA == 3
#error "parameter blobs take float thresholds per node and sparse leaves (modes 0, 1, 2)"
#endif
#define KML_BLOB_CLASSES KML_TREE_MAX_CLASSES
#endif

/* Header fields (little-endian), see docs/blob_format.md. */
#define KML_H_MAGIC 0u
#define KML_H_VERSION 4u
#define KML_H_HEADER_BYTES 6u
#define KML_H_FLAGS 8u
#define KML_H_PAYLOAD_BYTES 12u
#define KML_H_MODEL_ID 16u
#define KML_H_INTERFACE 24u
#define KML_H_LAYOUT 28u
#define KML_H_COUNTER 32u
#define KML_H_KIND 36u
#define KML_H_SHA256 40u
#define KML_H_SIGNATURE 72u
#define KML_FLAG_SIGNED 1u

/* Payload sections: tag -> contents. */
#define KML_S_FOREST 1u
#define KML_S_TREE_BASE 2u
#define KML_S_HEAD 3u
#define KML_S_THRESHOLD 4u
#define KML_S_LEFT 5u
#define KML_S_RIGHT 6u
#define KML_S_NAN_LEFT 7u
#define KML_S_LEAF_START 8u
#define KML_S_ENTRY_CLASS 9u
#define KML_S_ENTRY_NUM 10u
#define KML_S_ENTRY_VALUE 11u
#define KML_S_DECISION 16u
#define KML_S_GOLDEN 32u
#define KML_S_NN_INT8 48u  /* a network's int8 weight pool */
#define KML_S_NN_WORDS 49u /* a network's int32 parameter words */
#if KML_BLOB_KIND == 2
#define KML_S_TAGS 50u
#else
#define KML_S_TAGS 33u
#endif
#define KML_S_OPTIONAL 1u /* section flag: a reader that does not know the tag skips it */

#define KML_MAX_DEPTH 4096
#define KML_MAX_GOLDEN 4096
#define KML_MAX_WINDOWS 1024 /* hysteresis counts */

#if KML_BLOB_KIND == 1
#define KML_HEAD_BITS (8u * (uint32_t)sizeof(KML_TREE_HEAD_T))
#define KML_LEFT_LEAF ((uint32_t)1u << (KML_HEAD_BITS - 1u))
#define KML_RIGHT_LEAF ((uint32_t)1u << (KML_HEAD_BITS - 2u))
#define KML_FEATURE_MASK (KML_RIGHT_LEAF - 1u)
#endif

typedef struct {
#if KML_BLOB_KIND == 2
    kml_blob_network_t network;
#else
    kml_forest_t forest;
#endif
    kml_decision_params decision;
    kml_blob_model_t model;
    const float *golden_x;
    const int32_t *golden_label;
    const int32_t *golden_decision;
    int32_t n_golden;
    uint32_t counter;
    const uint8_t *model_id;
} kml_blob_slot_t;

static kml_blob_slot_t kml_blob_slots[2];
static int32_t kml_blob_current = -1; /* the active slot; -1: the compiled-in parameters */
static uint32_t kml_blob_min = 0u;
static int32_t kml_blob_downgrade_ok = 0;
/* the self-test's own decision state */
static float kml_blob_history[KML_BLOB_SMOOTHING_WINDOWS * KML_BLOB_CLASSES];
static int32_t kml_blob_votes[KML_BLOB_SMOOTHING_WINDOWS];

#if KML_BLOB_REQUIRE_SIGNATURE
static const uint8_t kml_blob_public_key[32] = KML_BLOB_PUBLIC_KEY;
#endif

static uint32_t kml_rd16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

static uint32_t kml_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static int32_t kml_rdi32(const uint8_t *p)
{
    const uint32_t u = kml_rd32(p);
    return u <= 0x7FFFFFFFu ? (int32_t)u : -(int32_t)(~u) - 1;
}

static float kml_rdf32(const uint8_t *p)
{
    union {
        uint32_t u;
        float f;
    } v;
    v.u = kml_rd32(p);
    return v.f;
}

static int32_t kml_finite(float v)
{
    return v == v && v - v == 0.0f;
}

/* Integer fields are only accepted in [lo, hi]. */
static int32_t kml_in(int32_t v, int32_t lo, int32_t hi)
{
    return v >= lo && v <= hi;
}

typedef struct {
    const uint8_t *data[KML_S_TAGS];
    uint32_t bytes[KML_S_TAGS];
} kml_sections_t;

/* The sections of the payload: each required one at most once, the rest skipped when
 * flagged optional. */
static int32_t kml_sections(const uint8_t *payload, uint32_t n, kml_sections_t *s)
{
    uint32_t pos = 0u, t;
    for (t = 0u; t < KML_S_TAGS; ++t) {
        s->data[t] = NULL;
        s->bytes[t] = 0u;
    }
    while (pos < n) {
        uint32_t tag, flags, bytes;
        if (n - pos < 8u) {
            return KML_BLOB_BAD_PAYLOAD;
        }
        tag = kml_rd16(payload + pos);
        flags = kml_rd16(payload + pos + 2u);
        bytes = kml_rd32(payload + pos + 4u);
        pos += 8u;
        if (bytes > n - pos || (flags & ~KML_S_OPTIONAL) != 0u) {
            return KML_BLOB_BAD_PAYLOAD;
        }
        if (tag < KML_S_TAGS && !(flags & KML_S_OPTIONAL)) {
            if (s->data[tag] != NULL || tag == 0u) {
                return KML_BLOB_BAD_PAYLOAD;
            }
            s->data[tag] = payload + pos;
            s->bytes[tag] = bytes;
        } else if (!(flags & KML_S_OPTIONAL)) {
            return KML_BLOB_BAD_PAYLOAD; /* a required section this code cannot read */
        }
        pos += bytes;
        if ((bytes & 7u) != 0u) { /* sections start at 8-byte boundaries */
            const uint32_t pad = 8u - (bytes & 7u);
            if (pad > n - pos) {
                return KML_BLOB_BAD_PAYLOAD;
            }
            pos += pad;
        }
    }
    return KML_BLOB_OK;
}

/* A section of exactly `count` elements of `size` bytes (absent when count is 0). */
static const void *kml_array(const kml_sections_t *s, uint32_t tag, uint32_t count,
                             uint32_t size)
{
    if (s->bytes[tag] != count * size || (count > 0u && s->data[tag] == NULL)) {
        return NULL;
    }
    return s->data[tag];
}

#if KML_BLOB_KIND == 2
/* A network's pools: exactly the sizes the compiled graph reads, every parameter word in
 * its compiled range (shapes and flags equal to the compiled-in words; shifts, zero points, activation
 * ranges and biases bounded so no kernel shifts, indexes or accumulates out of range). */
static int32_t kml_parse_network(const kml_sections_t *s, kml_blob_network_t *net)
{
    int32_t r, j, at = 0;
    net->w8 = (const int8_t *)kml_array(s, KML_S_NN_INT8, (uint32_t)KML_BLOB_NN_INT8_BYTES,
                                        1u);
    net->words = (const int32_t *)kml_array(s, KML_S_NN_WORDS, (uint32_t)KML_BLOB_NN_WORDS,
                                            4u);
    if (net->w8 == NULL || net->words == NULL) {
        return KML_BLOB_BAD_PAYLOAD;
    }
    for (r = 0; r < KML_BLOB_NN_RANGES; ++r) {
        const int32_t lo = kml_blob_nn_ranges[r][1], hi = kml_blob_nn_ranges[r][2];
        for (j = 0; j < kml_blob_nn_ranges[r][0]; ++j, ++at) {
            const int32_t w = kml_rdi32((const uint8_t *)(const void *)(net->words + at));
            /* lo > hi: code (a shape, a flag), the compiled-in word exactly */
            if (lo > hi ? w != kml_blob_builtin.network->words[at] : !kml_in(w, lo, hi)) {
                return KML_BLOB_BAD_PAYLOAD;
            }
        }
    }
    return KML_BLOB_OK;
}
#else
/* Every index a walk can follow: each node's feature, each child inside its own tree
 * and after its parent (so every walk ends), each leaf payload a pure class or a mixed
 * leaf; the mixed leaves' rows inside the entries, classes ascending. */
static int32_t kml_check_forest(const kml_forest_t *f, int32_t n_nodes, int32_t n_mixed,
                                int32_t n_entries)
{
    const uint32_t n_payloads = (uint32_t)f->n_classes + (uint32_t)n_mixed;
    int32_t t, i;
    if (f->tree_base[0] != 0u) {
        return KML_BLOB_BAD_PAYLOAD;
    }
    for (t = 0; t < f->n_trees; ++t) {
        const int32_t base = (int32_t)f->tree_base[t];
        const int32_t end = t + 1 < f->n_trees ? (int32_t)f->tree_base[t + 1] : n_nodes;
        if (end <= base || end > n_nodes) {
            return KML_BLOB_BAD_PAYLOAD;
        }
        for (i = base; i < end; ++i) {
            const uint32_t head = f->head[i];
            const uint32_t refs[2] = {f->left[i], f->right[i]};
            const uint32_t leaf[2] = {head & KML_LEFT_LEAF, head & KML_RIGHT_LEAF};
            int32_t side;
            if ((head & KML_FEATURE_MASK) >= (uint32_t)KML_BLOB_FEATURES) {
                return KML_BLOB_BAD_PAYLOAD;
            }
            for (side = 0; side < 2; ++side) {
                if (leaf[side] ? refs[side] >= n_payloads
                               : (refs[side] <= (uint32_t)(i - base) ||
                                  refs[side] >= (uint32_t)(end - base))) {
                    return KML_BLOB_BAD_PAYLOAD;
                }
            }
        }
    }
#if KML_TREE_PROBA == 1 || KML_TREE_PROBA == 2
    if (f->leaf_start[0] != 0u || f->leaf_start[n_mixed] != (uint32_t)n_entries) {
        return KML_BLOB_BAD_PAYLOAD;
    }
    for (i = 0; i < n_mixed; ++i) {
        const uint32_t first = f->leaf_start[i], end = f->leaf_start[i + 1];
        uint32_t e;
        if (end <= first || end > (uint32_t)n_entries) {
            return KML_BLOB_BAD_PAYLOAD;
        }
        for (e = first; e < end; ++e) {
            if ((int32_t)f->entry_class[e] >= f->n_classes ||
                (e > first && f->entry_class[e] <= f->entry_class[e - 1u])) {
                return KML_BLOB_BAD_PAYLOAD;
            }
#if KML_TREE_PROBA == 1
            if (f->entry_num[e] == 0u) {
                return KML_BLOB_BAD_PAYLOAD;
            }
#else
            /* a fraction: a finite, non-negative float64 (the exact vote orders them as
             * their bits) */
            if ((f->entry_value[e] >> 63) != 0u ||
                ((f->entry_value[e] >> 52) & 0x7FFu) == 0x7FFu) {
                return KML_BLOB_BAD_PAYLOAD;
            }
#endif
        }
    }
#else
    (void)n_entries;
    if (n_mixed != 0) {
        return KML_BLOB_BAD_PAYLOAD;
    }
#endif
    return KML_BLOB_OK;
}

static int32_t kml_parse_forest(const kml_sections_t *s, kml_forest_t *f)
{
    const uint8_t *m = s->data[KML_S_FOREST];
    int32_t n_nodes, n_mixed, n_entries, proba;
    if (m == NULL || s->bytes[KML_S_FOREST] != 40u) {
        return KML_BLOB_BAD_PAYLOAD;
    }
    f->n_trees = kml_rdi32(m);
    f->n_classes = kml_rdi32(m + 4);
    f->max_depth = kml_rdi32(m + 12);
    proba = kml_rdi32(m + 16);
    n_nodes = kml_rdi32(m + 20);
    n_mixed = kml_rdi32(m + 24);
    n_entries = kml_rdi32(m + 28);
    f->margin = kml_rdf32(m + 32);
    f->inv_trees = kml_rdf32(m + 36);
    if (f->n_classes != KML_TREE_MAX_CLASSES || kml_rdi32(m + 8) != KML_BLOB_FEATURES ||
        proba != KML_TREE_PROBA) {
        return KML_BLOB_BAD_PAYLOAD; /* the layout hash said otherwise */
    }
    if (f->n_trees > KML_TREE_MAX_TREES) {
        return KML_BLOB_BAD_LAYOUT; /* more trees than the compiled vote holds */
    }
    if (f->n_trees < 1 || !kml_in(f->max_depth, 1, KML_MAX_DEPTH) ||
        !kml_in(n_nodes, f->n_trees, 65535) || !kml_in(n_mixed, 0, 65535 - f->n_classes) ||
        !kml_in(n_entries, 0, 65535) || !kml_finite(f->margin) ||
        !kml_finite(f->inv_trees)) {
        return KML_BLOB_BAD_PAYLOAD;
    }
    f->tree_base = (const KML_TREE_BASE_T *)kml_array(
        s, KML_S_TREE_BASE, (uint32_t)f->n_trees, (uint32_t)sizeof(KML_TREE_BASE_T));
    f->head = (const KML_TREE_HEAD_T *)kml_array(s, KML_S_HEAD, (uint32_t)n_nodes,
                                                 (uint32_t)sizeof(KML_TREE_HEAD_T));
    f->threshold = (const float *)kml_array(s, KML_S_THRESHOLD, (uint32_t)n_nodes, 4u);
    f->threshold_index = NULL;
    f->left = (const KML_TREE_REF_T *)kml_array(s, KML_S_LEFT, (uint32_t)n_nodes,
                                                (uint32_t)sizeof(KML_TREE_REF_T));
    f->right = (const KML_TREE_REF_T *)kml_array(s, KML_S_RIGHT, (uint32_t)n_nodes,
                                                 (uint32_t)sizeof(KML_TREE_REF_T));
    f->nan_left = (const uint8_t *)kml_array(s, KML_S_NAN_LEFT,
                                             ((uint32_t)n_nodes + 7u) / 8u, 1u);
    f->leaf_start = NULL;
    f->entry_class = NULL;
    f->entry_num = NULL;
    f->entry_value = NULL;
    if (f->tree_base == NULL || f->head == NULL || f->threshold == NULL ||
        f->left == NULL || f->right == NULL || f->nan_left == NULL) {
        return KML_BLOB_BAD_PAYLOAD;
    }
#if KML_TREE_PROBA == 1 || KML_TREE_PROBA == 2
    f->leaf_start = (const uint16_t *)kml_array(s, KML_S_LEAF_START, (uint32_t)n_mixed + 1u,
                                                2u);
    f->entry_class = (const KML_TREE_CLASS_T *)kml_array(
        s, KML_S_ENTRY_CLASS, (uint32_t)n_entries, (uint32_t)sizeof(KML_TREE_CLASS_T));
    if (f->leaf_start == NULL || f->entry_class == NULL || n_entries == 0) {
        return KML_BLOB_BAD_PAYLOAD;
    }
#if KML_TREE_PROBA == 1
    f->entry_num = (const KML_TREE_FRACTION_T *)kml_array(
        s, KML_S_ENTRY_NUM, (uint32_t)n_entries, (uint32_t)sizeof(KML_TREE_FRACTION_T));
    if (f->entry_num == NULL) {
        return KML_BLOB_BAD_PAYLOAD;
    }
#else
    f->entry_value = (const uint64_t *)kml_array(s, KML_S_ENTRY_VALUE,
                                                 (uint32_t)n_entries, 8u);
    if (f->entry_value == NULL) {
        return KML_BLOB_BAD_PAYLOAD;
    }
#endif
#endif
    return kml_check_forest(f, n_nodes, n_mixed, n_entries);
}
#endif

static int32_t kml_parse_decision(const kml_sections_t *s, kml_decision_params *d)
{
    const uint8_t *m = s->data[KML_S_DECISION];
    int32_t k;
    if (m == NULL || s->bytes[KML_S_DECISION] != 28u + 4u * (uint32_t)KML_BLOB_CLASSES) {
        return KML_BLOB_BAD_PAYLOAD;
    }
    d->n_classes = kml_rdi32(m);
    d->smoothing = kml_rdi32(m + 4);
    d->smoothing_windows = kml_rdi32(m + 8);
    d->on_windows = kml_rdi32(m + 12);
    d->off_windows = kml_rdi32(m + 16);
    d->min_score = kml_rdf32(m + 20);
    d->min_margin = kml_rdf32(m + 24);
    d->thresholds = (const float *)(const void *)(m + 28);
    if (d->n_classes != KML_BLOB_CLASSES || d->smoothing != KML_BLOB_SMOOTHING ||
        d->smoothing_windows != KML_BLOB_SMOOTHING_WINDOWS ||
        !kml_in(d->on_windows, 1, KML_MAX_WINDOWS) ||
        !kml_in(d->off_windows, 1, KML_MAX_WINDOWS) || !kml_finite(d->min_score) ||
        !kml_finite(d->min_margin)) {
        return KML_BLOB_BAD_PAYLOAD;
    }
    for (k = 0; k < d->n_classes; ++k) {
        if (!kml_finite(kml_rdf32(m + 28 + 4 * k))) {
            return KML_BLOB_BAD_PAYLOAD;
        }
    }
    return KML_BLOB_OK;
}

static int32_t kml_parse_golden(const kml_sections_t *s, kml_blob_slot_t *slot)
{
    const uint8_t *m = s->data[KML_S_GOLDEN];
    int32_t n, i;
    uint32_t x_bytes;
    if (m == NULL || s->bytes[KML_S_GOLDEN] < 8u) {
        return KML_BLOB_BAD_PAYLOAD;
    }
    n = kml_rdi32(m);
    if (!kml_in(n, 1, KML_MAX_GOLDEN) || kml_rdi32(m + 4) != KML_BLOB_FEATURES) {
        return KML_BLOB_BAD_PAYLOAD;
    }
    x_bytes = 4u * (uint32_t)n * (uint32_t)KML_BLOB_FEATURES;
    if (s->bytes[KML_S_GOLDEN] != 8u + x_bytes + 8u * (uint32_t)n) {
        return KML_BLOB_BAD_PAYLOAD;
    }
    slot->n_golden = n;
    slot->golden_x = (const float *)(const void *)(m + 8);
    slot->golden_label = (const int32_t *)(const void *)(m + 8 + x_bytes);
    slot->golden_decision = (const int32_t *)(const void *)(m + 8 + x_bytes + 4u * (uint32_t)n);
    for (i = 0; i < n; ++i) {
        if (!kml_in(slot->golden_label[i], 0, KML_BLOB_CLASSES - 1) ||
            !kml_in(slot->golden_decision[i], KML_UNCERTAIN, KML_BLOB_CLASSES - 1)) {
            return KML_BLOB_BAD_PAYLOAD;
        }
    }
    return KML_BLOB_OK;
}

static int32_t kml_equal(const uint8_t *a, const uint8_t *b, uint32_t n)
{
    uint32_t i, diff = 0u;
    for (i = 0u; i < n; ++i) {
        diff |= (uint32_t)(a[i] ^ b[i]);
    }
    return diff == 0u;
}

/* Everything but the self-test; fills `slot` (its pointers into the blob). */
static int32_t kml_parse(const uint8_t *blob, uint32_t n, kml_blob_slot_t *slot)
{
    static const uint8_t magic[4] = {'K', 'M', 'L', 'B'};
    kml_sections_t sections;
    kml_sha256_ctx ctx;
    uint8_t digest[32];
    uint32_t payload_bytes, flags, counter;
    int32_t r;
    if (blob == NULL || n < 4u) {
        return KML_BLOB_BAD_LENGTH;
    }
    if (!kml_equal(blob, magic, 4u)) {
        return KML_BLOB_BAD_MAGIC;
    }
    if (n < 8u) {
        return KML_BLOB_BAD_LENGTH;
    }
    if (kml_rd16(blob + KML_H_VERSION) != KML_BLOB_FORMAT_VERSION ||
        kml_rd16(blob + KML_H_HEADER_BYTES) != KML_BLOB_HEADER_BYTES) {
        return KML_BLOB_BAD_VERSION;
    }
    if (n < KML_BLOB_HEADER_BYTES) {
        return KML_BLOB_BAD_LENGTH;
    }
    if (((uintptr_t)blob & 7u) != 0u) {
        return KML_BLOB_BAD_ALIGNMENT;
    }
    if (kml_rd32(blob + KML_H_INTERFACE) != (uint32_t)KML_BLOB_INTERFACE_HASH) {
        return KML_BLOB_BAD_INTERFACE;
    }
    if (kml_rd32(blob + KML_H_LAYOUT) != (uint32_t)KML_BLOB_LAYOUT_HASH ||
        kml_rd32(blob + KML_H_KIND) != (uint32_t)KML_BLOB_KIND) {
        return KML_BLOB_BAD_LAYOUT;
    }
    payload_bytes = kml_rd32(blob + KML_H_PAYLOAD_BYTES);
    if (payload_bytes > n - KML_BLOB_HEADER_BYTES) {
        return KML_BLOB_BAD_LENGTH;
    }
    kml_sha256_init(&ctx);
    kml_sha256_update(&ctx, blob, KML_H_SHA256);
    kml_sha256_update(&ctx, blob + KML_BLOB_HEADER_BYTES, payload_bytes);
    kml_sha256_final(&ctx, digest);
    if (!kml_equal(digest, blob + KML_H_SHA256, 32u)) {
        return KML_BLOB_BAD_HASH;
    }
    flags = kml_rd32(blob + KML_H_FLAGS);
    if ((flags & ~KML_FLAG_SIGNED) != 0u) {
        return KML_BLOB_BAD_VERSION;
    }
#if KML_BLOB_REQUIRE_SIGNATURE
    if (!(flags & KML_FLAG_SIGNED)) {
        return KML_BLOB_UNSIGNED;
    }
    /* over the header up to the signature: it holds the SHA-256 of the payload */
    if (kml_ed25519_verify(blob + KML_H_SIGNATURE, blob, KML_H_SIGNATURE,
                           kml_blob_public_key) != 1) {
        return KML_BLOB_BAD_SIGNATURE;
    }
#endif
    counter = kml_rd32(blob + KML_H_COUNTER);
    if (counter < kml_blob_min && !kml_blob_downgrade_ok) {
        return KML_BLOB_DOWNGRADE;
    }
    r = kml_sections(blob + KML_BLOB_HEADER_BYTES, payload_bytes, &sections);
    if (r == KML_BLOB_OK) {
#if KML_BLOB_KIND == 2
        r = kml_parse_network(&sections, &slot->network);
#else
        r = kml_parse_forest(&sections, &slot->forest);
#endif
    }
    if (r == KML_BLOB_OK) {
        r = kml_parse_decision(&sections, &slot->decision);
    }
    if (r == KML_BLOB_OK) {
        r = kml_parse_golden(&sections, slot);
    }
    if (r != KML_BLOB_OK) {
        return r;
    }
#if KML_BLOB_KIND == 2
    slot->model.network = &slot->network;
#else
    slot->model.forest = &slot->forest;
#endif
    slot->model.decision = &slot->decision;
    slot->counter = counter;
    slot->model_id = blob + KML_H_MODEL_ID;
    return KML_BLOB_OK;
}

static int32_t kml_run_golden(const kml_blob_slot_t *slot)
{
    kml_decision_state state;
    float scores[KML_BLOB_CLASSES], smoothed[KML_BLOB_CLASSES];
    int32_t i, candidate, decision;
    state.history = kml_blob_history;
    state.votes = kml_blob_votes;
    kml_decision_reset(&state);
    for (i = 0; i < slot->n_golden; ++i) {
        const float *x = slot->golden_x + (uint32_t)i * (uint32_t)KML_BLOB_FEATURES;
#if KML_BLOB_KIND == 2
        const int32_t label = kml_blob_network_predict(&slot->network, x, scores);
#else
        const int32_t label = kml_forest_predict(&slot->forest, x, scores);
#endif
        (void)kml_decision_step(&slot->decision, &state, scores, label, smoothed, &candidate,
                                &decision);
        if (label != slot->golden_label[i] || decision != slot->golden_decision[i]) {
            return KML_BLOB_SELFTEST_FAILED;
        }
    }
    return KML_BLOB_OK;
}

int32_t kml_blob_check(const uint8_t *blob, uint32_t n)
{
    kml_blob_slot_t scratch;
    return kml_parse(blob, n, &scratch);
}

int32_t kml_blob_activate(const uint8_t *blob, uint32_t n)
{
    const int32_t target = kml_blob_current == 0 ? 1 : 0; /* never the running slot */
    kml_blob_slot_t *slot = &kml_blob_slots[target];
    int32_t r = kml_parse(blob, n, slot);
    if (r == KML_BLOB_OK) {
        r = kml_run_golden(slot);
    }
    if (r != KML_BLOB_OK) {
        return r;
    }
    kml_blob_current = target;
    if (slot->counter > kml_blob_min) {
        kml_blob_min = slot->counter;
    }
    return KML_BLOB_OK;
}

int32_t kml_selftest(void)
{
    return kml_blob_current < 0 ? KML_BLOB_OK : kml_run_golden(&kml_blob_slots[kml_blob_current]);
}

const char *kml_blob_reason_name(int32_t reason)
{
    static const char *const names[] = {
        "ok", "bad_magic", "bad_version", "bad_interface", "bad_layout", "bad_length",
        "bad_hash", "bad_signature", "unsigned", "downgrade", "bad_payload",
        "selftest_failed", "bad_alignment"};
    if (reason < 0 || reason >= (int32_t)(sizeof names / sizeof names[0])) {
        return "unknown";
    }
    return names[reason];
}

void kml_blob_set_min_counter(uint32_t counter)
{
    kml_blob_min = counter;
}

uint32_t kml_blob_min_counter(void)
{
    return kml_blob_min;
}

void kml_blob_allow_downgrade(int32_t allow)
{
    kml_blob_downgrade_ok = allow != 0;
}

#if KML_BLOB_KIND == 2
const kml_blob_network_t *kml_blob_network(void)
{
    return kml_blob_current < 0 ? kml_blob_builtin.network
                                : kml_blob_slots[kml_blob_current].model.network;
}
#else
const kml_forest_t *kml_blob_forest(void)
{
    return kml_blob_current < 0 ? kml_blob_builtin.forest
                                : kml_blob_slots[kml_blob_current].model.forest;
}
#endif

const kml_decision_params *kml_blob_decision(void)
{
    return kml_blob_current < 0 ? kml_blob_builtin.decision
                                : kml_blob_slots[kml_blob_current].model.decision;
}

uint32_t kml_blob_active_counter(void)
{
    return kml_blob_current < 0 ? 0u : kml_blob_slots[kml_blob_current].counter;
}

const uint8_t *kml_blob_active_model_id(void)
{
    return kml_blob_current < 0 ? NULL : kml_blob_slots[kml_blob_current].model_id;
}
