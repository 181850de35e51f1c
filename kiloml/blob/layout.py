"""The layout hash: what an updatable library's compiled code assumes about the
parameters it reads (table types, leaf mode, classes, features, the decision layer's
smoothing, the feature code itself). A blob made for other code is refused (reason
"bad_layout"). Pure functions of their inputs: the code generator and the blob writer
both call them."""

from __future__ import annotations

import hashlib
import json

from kiloml.models.forest import ForestTables
from kiloml.models.forest_c import UPDATABLE_TYPES, updatable_config_lines

LAYOUT_FORMAT = 1


def forest_problem(tables: ForestTables) -> str | None:
    """Why these forest tables cannot live in a blob (None: they can)."""
    if tables.quantized:
        return "its thresholds are int16 ([model] thresholds = \"int16\")"
    if tables.score_mode == 3:
        return "its leaves are integer weights ([model] leaves)"
    if tables.float32_sums:
        return "it is an imported ensemble"
    if tables.n_features > 1 << 14 or tables.n_nodes > 65535:
        return f"it has {tables.n_nodes} nodes on {tables.n_features} features (at most " \
               "65535 on 16384)"
    if tables.n_classes > 256:
        return f"it has {tables.n_classes} classes (at most 256)"
    if tables.score_mode == 1 and int(tables.leaf_num.max(initial=0)) > 0xFFFF:
        return "its leaf fractions exceed 16 bits"
    if tables.n_classes + tables.n_mixed > 0xFFFF:
        return f"it has {tables.n_mixed} mixed leaves (at most {0xFFFF - tables.n_classes})"
    return None


def feature_code_digest(parts: list[str]) -> str:
    """SHA-256 of the feature and preprocessing stages' generated C (and geometry)."""
    return hashlib.sha256("\n\x00".join(parts).encode("utf-8")).hexdigest()


def layout(tables: ForestTables, *, smoothing: int, smoothing_windows: int,
           feature_code: str) -> dict:
    types = {k: str(v.__name__) for k, v in UPDATABLE_TYPES.items()}
    if tables.score_mode != 1:
        types.pop("fraction")
    return {"format": LAYOUT_FORMAT, "kind": "forest", "types": types,
            "proba": tables.score_mode, "classes": tables.n_classes,
            "features": tables.n_features, "smoothing": smoothing,
            "smoothing_windows": smoothing_windows, "feature_code": feature_code}


def layout_hash(described: dict) -> int:
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def config_lines(tables: ForestTables, *, interface_hash: int, layout_hash_value: int,
                 smoothing: int, smoothing_windows: int, public_key: bytes | None
                 ) -> list[str]:
    """kml_config.h's lines of an updatable library (the forest's and kml_blob's)."""
    lines = [*updatable_config_lines(tables),
             "#define KML_BLOB_UPDATABLE 1",
             f"#define KML_BLOB_INTERFACE_HASH 0x{interface_hash:08x}u",
             f"#define KML_BLOB_LAYOUT_HASH 0x{layout_hash_value:08x}u",
             f"#define KML_BLOB_FEATURES {tables.n_features}",
             f"#define KML_BLOB_SMOOTHING {smoothing}",
             f"#define KML_BLOB_SMOOTHING_WINDOWS {smoothing_windows}",
             f"#define KML_BLOB_REQUIRE_SIGNATURE {int(public_key is not None)}"]
    return lines + public_key_lines(public_key)


def public_key_lines(public_key: bytes | None) -> list[str]:
    """The trusted Ed25519 key as kml_config.h defines it (none: no line)."""
    if public_key is None:
        return []
    key = ", ".join(f"0x{b:02x}" for b in public_key)
    return [f"#define KML_BLOB_PUBLIC_KEY {{{key}}} /* [library] update_key */"]


def network_layout(*, graph_code: str, classes: int, features: int, smoothing: int,
                   smoothing_windows: int, feature_code: str) -> dict:
    """The layout of an updatable network library: its graph (kernel calls, shapes, arena
    plan, the pools' sizes and every parameter word's accepted range) is code."""
    graph = hashlib.sha256(graph_code.encode("utf-8")).hexdigest()
    return {"format": LAYOUT_FORMAT, "kind": "network", "graph": graph, "classes": classes,
            "features": features, "smoothing": smoothing,
            "smoothing_windows": smoothing_windows, "feature_code": feature_code}


def network_config_lines(*, interface_hash: int, layout_hash_value: int, classes: int,
                         features: int, smoothing: int, smoothing_windows: int,
                         int8_bytes: int, words: int, ranges: int,
                         public_key: bytes | None) -> list[str]:
    """kml_config.h's lines of an updatable network library (kml_blob's)."""
    lines = ["#define KML_BLOB_UPDATABLE 1",
             "#define KML_BLOB_KIND 2 /* a network */",
             f"#define KML_BLOB_INTERFACE_HASH 0x{interface_hash:08x}u",
             f"#define KML_BLOB_LAYOUT_HASH 0x{layout_hash_value:08x}u",
             f"#define KML_BLOB_FEATURES {features}",
             f"#define KML_BLOB_CLASSES {classes}",
             f"#define KML_BLOB_SMOOTHING {smoothing}",
             f"#define KML_BLOB_SMOOTHING_WINDOWS {smoothing_windows}",
             f"#define KML_BLOB_NN_INT8_BYTES {int8_bytes}",
             f"#define KML_BLOB_NN_WORDS {words}",
             f"#define KML_BLOB_NN_RANGES {ranges}",
             f"#define KML_BLOB_REQUIRE_SIGNATURE {int(public_key is not None)}"]
    return lines + public_key_lines(public_key)
