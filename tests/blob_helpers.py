"""Shared by the blob tests: two versions of the toy project (same interface), one with
another interface, their blobs, hostile variants, and what each version must decide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from conftest import run_cli, write_toy_project

from kiloml.blob import format as fmt
from kiloml.blob.build import blob_bytes
from kiloml.decision.layer import DecisionLayer
from kiloml.persist.pipeline_state import load_pipeline
from kiloml.verify.reference import REFERENCE_FILE, Reference

F32 = np.float32
VERSIONS = {  # name: (n_estimators, max_depth, window_ms, updatable)
    "v1": (5, 6, 1000, True),
    "v2": (8, 5, 1000, True),
    "other": (5, 6, 1200, True),  # another window: another interface
    "plain": (5, 6, 1000, False),  # not built updatable
    "monitored": (5, 6, 1000, True),  # v1 with a [monitor]
}


def make_run(root: Path, name: str) -> Path:
    n, depth, window, updatable = VERSIONS[name]
    toml = write_toy_project(root / name)
    text = toml.read_text().replace("n_estimators = 5\nmax_depth = 6",
                                    f"n_estimators = {n}\nmax_depth = {depth}")
    text = text.replace("window_ms = 1000", f"window_ms = {window}")
    if updatable:
        text += "\n[library]\nupdatable = true\n"
    if name == "monitored":
        text += "\n[monitor]\nfeatures = 4\n"
    toml.write_text(text)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code == 0, result.stdout + result.stderr
    return root / name / "out"


@dataclass(frozen=True)
class Expected:
    labels: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray


def reference_windows(run: Path) -> np.ndarray:
    pipeline = load_pipeline(run / "pipeline.json")
    return Reference.load(run / "verify" / REFERENCE_FILE, pipeline).windows


def expected(run: Path, windows: np.ndarray) -> Expected:
    """What ``run``'s model decides on ``windows`` in the C library (from kml_reset)."""
    pipeline = load_pipeline(run / "pipeline.json")
    features = np.asarray(pipeline.compute_features(windows), F32)
    tables = pipeline.model.tables or pipeline.model.compile(features.shape[1])
    labels, _, scores = tables.predict_batch(features)
    steps = DecisionLayer(pipeline.decision_params).run(scores, labels)
    return Expected(np.asarray(labels, np.int64), np.asarray(scores, F32), steps.decision)


def blob_of(run: Path, counter: int, key: Path | None = None) -> bytes:
    blob = blob_bytes(run, signing_key=key, counter=counter)
    assert blob is not None
    return blob


def repack(blob: bytes, *, key=None, sections: dict[int, bytes] | None = None,
           **header) -> bytes:
    """``blob`` with some sections' data or header fields replaced, hashed (and signed
    with ``key``, a private key object) again: hostile but intact."""
    h, payload = fmt.unpack(blob)
    if sections:
        payload = b"".join(fmt.section(tag, sections.get(tag, data),
                                       optional=bool(flags & fmt.SECTION_OPTIONAL))
                           for tag, flags, data in fmt.sections(payload))
    fields = {"model_id": h.model_id, "interface_hash": h.interface_hash,
              "layout_hash": h.layout_hash, "counter": h.counter, "kind": h.kind, **header}
    return fmt.pack(fmt.Header(**fields), payload, key)


def section_data(blob: bytes, tag: int) -> bytes:
    return next(d for t, _, d in fmt.sections(fmt.unpack(blob)[1]) if t == tag)
