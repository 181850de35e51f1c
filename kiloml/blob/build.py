"""model.kmlb from a run folder: the run's forest (or network) and decision parameters
with golden vectors from its held-out windows, for an updatable library of the same interface and
layout (``kiloml release`` calls :func:`write_blob`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from kiloml.atomic import write_atomically
from kiloml.blob import format as fmt
from kiloml.blob.forest_payload import GOLDEN_VECTORS, golden_of, payload
from kiloml.blob.layout import layout_hash
from kiloml.display import shown_path
from kiloml.errors import KilomlError


def _model_id(run_dir: Path) -> str:
    header = run_dir / "firmware" / "kiloml_model.h"
    try:
        text = header.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise KilomlError(f"{shown_path(header)} cannot be read: the run folder has no "
                          "default-prefix library") from None
    m = re.search(r'^#define KML_MODEL_ID "([0-9a-f]{16})"', text, re.M)
    if not m:
        raise KilomlError(f"{shown_path(header)} has no KML_MODEL_ID")
    return m.group(1)


def golden_rows(n_rows: int, count: int = GOLDEN_VECTORS) -> np.ndarray:
    """Indices of the held-out windows the golden vectors are (spread over the set, in
    order)."""
    return np.unique(np.linspace(0, n_rows - 1, min(count, n_rows)).round().astype(np.int64))


def blob_bytes(run_dir: Path, *, signing_key: Path | None, counter: int) -> bytes | None:
    """The blob of ``run_dir``'s parameters, or None when its library takes none."""
    from kiloml.codegen.identity import interface_hash
    from kiloml.codegen.library import emit_feature_stages
    from kiloml.codegen.updatable import (
        describe_layout,
        describe_network_layout,
        forest_tables_of,
        network_code_of,
    )
    from kiloml.persist.pipeline_state import load_pipeline

    pipeline = load_pipeline(run_dir / "pipeline.json")
    if not pipeline.library_updatable:
        return None
    try:
        tables = forest_tables_of(pipeline)
        code = network_code_of(pipeline) if tables is None else None
    except KilomlError:
        return None
    key = None
    if signing_key is not None:
        from kiloml.blob.keys import load_private_key, public_key_bytes
        key = load_private_key(signing_key)
        trusted = pipeline.library_update_key
        if trusted is not None and public_key_bytes(signing_key, "signing key") != trusted:
            raise KilomlError(f"signing key {shown_path(signing_key)} is not the key the "
                              "library trusts ([library] update_key)")
    elif pipeline.library_update_key is not None:
        raise KilomlError("the library requires signed blobs ([library] update_key): give "
                          "the Ed25519 private key to sign with")
    from kiloml.verify.reference import REFERENCE_FILE, Reference
    path = run_dir / "verify" / REFERENCE_FILE
    features = Reference.load(path, pipeline).features
    if not len(features):
        raise KilomlError(f"{shown_path(path)} holds no held-out windows for the golden "
                          "vectors")
    d = pipeline.decision_params
    emitted = emit_feature_stages(pipeline)
    if code is not None:
        from kiloml.blob import network_payload as nn
        golden = nn.network_golden(pipeline.model, d, features[golden_rows(
            len(features), nn.GOLDEN_VECTORS)])
        described = describe_network_layout(pipeline, code.graph_code, emitted)
        body, kind = nn.payload(code.pool, d, golden), fmt.KIND_NETWORK
    else:
        assert tables is not None
        golden = golden_of(tables, d, features[golden_rows(len(features))])
        described = describe_layout(pipeline, tables, emitted)
        body, kind = payload(tables, d, golden), fmt.KIND_FOREST
    header = fmt.Header(model_id=fmt.model_id_bytes(_model_id(run_dir)),
                        interface_hash=interface_hash(pipeline),
                        layout_hash=layout_hash(described), counter=counter, kind=kind)
    return fmt.pack(header, body, key)


def write_blob(run_dir: Path, out: Path, *, signing_key: Path | None, counter: int) -> bool:
    """Write ``out`` (model.kmlb) from ``run_dir``; False (nothing written) when the run's
    library cannot take a blob: not built updatable, or not a table-style forest or a
    network whose kernels take blobs."""
    blob = blob_bytes(Path(run_dir), signing_key=signing_key, counter=counter)
    if blob is None:
        return False
    write_atomically(Path(out), lambda f: f.write(blob))
    return True


def describe(blob: bytes) -> dict:
    """What ``kiloml blob inspect`` shows: the header's fields and the sections."""
    header, body = fmt.unpack(blob)
    sections = [{"tag": tag, "name": fmt.SECTION_NAMES.get(tag, "unknown"), "bytes": len(d),
                 "optional": bool(flags & fmt.SECTION_OPTIONAL)}
                for tag, flags, d in fmt.sections(body)]
    info = {"format_version": fmt.FORMAT_VERSION, "bytes": len(blob),
            "payload_bytes": header.payload_bytes, "model_id": header.model_id.hex(),
            "interface_hash": f"0x{header.interface_hash:08x}",
            "layout_hash": f"0x{header.layout_hash:08x}", "counter": header.counter,
            "kind": header.kind, "signed": header.signed, "sha256": header.sha256.hex(),
            "sections": sections}
    forest = next((d for tag, _, d in fmt.sections(body) if tag == fmt.FOREST), None)
    if forest is not None and len(forest) == 40:
        names = ["n_trees", "n_classes", "n_features", "max_depth", "proba", "n_nodes",
                 "n_mixed", "n_entries"]
        info["forest"] = dict(zip(names, np.frombuffer(forest[:32], "<i4").tolist(),
                                  strict=True))
    found = {tag: d for tag, _, d in fmt.sections(body)}
    if header.kind == fmt.KIND_NETWORK and fmt.NN_INT8 in found and fmt.NN_WORDS in found:
        info["network"] = {"int8_bytes": len(found[fmt.NN_INT8]),
                           "words": len(found[fmt.NN_WORDS]) // 4}
    return json.loads(json.dumps(info))
