"""A blob against a run's library, on the host: the library regenerated from the run's
pipeline (a run folder's C is never compiled), kml_blob_activate run on the blob, and the
refusal explained from the header."""

from __future__ import annotations

from pathlib import Path

from kiloml.blob import format as fmt
from kiloml.blob import harness as bh
from kiloml.display import shown_path
from kiloml.errors import KilomlError


def _explain(reason: str, blob: bytes, config: str) -> str:
    import re

    def macro(name: str) -> str:
        m = re.search(rf"^#define {name} (\S+)", config, re.M)
        return m.group(1).rstrip("u") if m else "?"

    if len(blob) < fmt.HEADER_BYTES or reason in ("bad_magic", "bad_version", "bad_length"):
        return ""
    h = fmt.Header(model_id=b"", interface_hash=int.from_bytes(blob[24:28], "little"),
                   layout_hash=int.from_bytes(blob[28:32], "little"),
                   counter=int.from_bytes(blob[32:36], "little"))
    if reason == "bad_interface":
        return (f" (the blob's interface 0x{h.interface_hash:08x}, the library's "
                f"{macro('KML_BLOB_INTERFACE_HASH')}: other channels, units, rates, window "
                "or classes)")
    if reason == "bad_layout":
        return (f" (the blob's layout 0x{h.layout_hash:08x}, the library's "
                f"{macro('KML_BLOB_LAYOUT_HASH')}: other feature code, leaf mode, decision "
                "smoothing, or more trees than it holds)")
    if reason == "downgrade":
        return f" (its counter {h.counter} is below the minimum)"
    return ""


def check_on_host(blob: bytes, run_dir: Path, work: Path, *, min_counter: int = 0,
                  allow_downgrade: bool = False) -> tuple[str, str]:
    """(reason name, detail) of the run's library activating ``blob``."""
    from kiloml.codegen.identity import created_in
    from kiloml.codegen.library import write_library
    from kiloml.persist.pipeline_state import load_pipeline

    pipeline = load_pipeline(run_dir / "pipeline.json")
    if not pipeline.library_updatable:
        raise KilomlError(f"the library of {shown_path(run_dir)} is not updatable (built "
                          "without [library] updatable = true): it takes no blob")
    firmware = write_library(pipeline, work / "firmware", created_utc=created_in(
        run_dir / "firmware" / "kiloml_model.h", pipeline.library_prefix))
    exe = bh.build_host(firmware.directory, work / "host")
    ops = bh.Ops(_no_windows(pipeline)).min_counter(min_counter)
    ops.allow_downgrade(allow_downgrade).blob(blob)
    (result,) = bh.run_host(exe, ops, pipeline.n_classes, work / "host")
    assert isinstance(result, bh.BlobResult)
    reason = bh.reason_name(result.activate)
    if reason == "ok":
        return reason, f" counter {result.active_counter}, golden vectors matched"
    config = (firmware.directory / "kml_config.h").read_text()
    return reason, _explain(reason, blob, config)


def _no_windows(pipeline):
    import numpy as np
    return np.zeros((0, pipeline.window_samples, pipeline.n_channels), np.float32)
