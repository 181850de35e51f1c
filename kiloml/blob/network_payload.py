"""The payload of a network blob: the updatable network library's weight pool and
parameter words (kiloml.blob.nn_pool), the decision layer's parameters and golden vectors
(held-out feature vectors with the label and decision the library gives; the network's
Python twin, bit for bit) (docs/blob_format.md, "Networks")."""

from __future__ import annotations

import numpy as np

from kiloml.blob import format as fmt
from kiloml.blob.forest_payload import Golden, decision_section, golden_section
from kiloml.blob.nn_pool import Pool
from kiloml.decision.layer import DecisionLayer, DecisionParams

F32 = np.float32
GOLDEN_VECTORS = 16  # a network's input is often a whole window: fewer than a forest's


def network_golden(model, decision: DecisionParams, features: np.ndarray) -> Golden:
    """What the C library decides on ``features`` (in order, from a reset decision layer):
    the int8 graph's arg-max (the first maximum) and its dequantized scores."""
    x = np.ascontiguousarray(features, F32)
    labels = np.asarray(model.predict(x), np.int64)
    scores = np.asarray(model.predict_proba(x), F32)
    steps = DecisionLayer(decision).run(scores, labels)
    return Golden(x, labels, steps.decision)


def network_sections(pool: Pool) -> bytes:
    return fmt.section(fmt.NN_INT8, bytes(pool.w8)) + fmt.section(
        fmt.NN_WORDS, np.asarray(pool.words, np.int64).astype("<i4").tobytes())


def payload(pool: Pool, d: DecisionParams, g: Golden) -> bytes:
    return network_sections(pool) + decision_section(d) + golden_section(g)
