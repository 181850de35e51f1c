"""`kiloml shadow PRODUCTION_RUN CANDIDATE_RUN --out DIR`: the shadow package (both
libraries, the glue, a README) and the count the device will report on the production
run's held-out streams, computed by the same C on the host."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from kiloml.codegen import identity
from kiloml.codegen.library import FirmwareLibrary
from kiloml.errors import KilomlError
from kiloml.export.common import check_export_folder, write_package
from kiloml.persist.pipeline_state import PIPELINE_FILE, load_pipeline
from kiloml.pipeline import Pipeline
from kiloml.shadow import glue
from kiloml.shadow.harness import build, run
from kiloml.verify.combined import member_from_run
from kiloml.verify.reference import REFERENCE_FILE, Reference


@dataclass
class ShadowOutcome:
    out: Path
    windows: int
    disagreements: int


def interface(library: FirmwareLibrary, pipeline: Pipeline) -> dict:
    """What check_pair compares: the library's prefix and identity, the pipeline's
    interface (kiloml.codegen.identity.interface)."""
    face = identity.interface(pipeline)
    return {"prefix": library.prefix, "interface_hash": library.info["interface_hash"],
            "window_samples": face["window_samples"], "stride_samples": face["stride_samples"],
            "n_classes": len(face["classes"])}


def held_out_streams(run_dir: Path, pipeline: Pipeline) -> list[np.ndarray]:
    return Reference.load(run_dir / "verify" / REFERENCE_FILE, pipeline).stream_recordings


def shadow_package(production_run: Path, candidate_run: Path, out: Path) -> ShadowOutcome:
    check_export_folder(out)
    for what, folder in (("production", production_run), ("candidate", candidate_run)):
        if not (folder / "pipeline.json").is_file():
            raise KilomlError(f"the {what} is not a finished `kiloml run` folder (no "
                              "pipeline.json)", file=folder)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prod = member_from_run(production_run, work / "libs").library
        cand = member_from_run(candidate_run, work / "libs").library
        prod_pipeline = load_pipeline(production_run / PIPELINE_FILE)
        glue.check_pair(interface(prod, prod_pipeline),
                        interface(cand, load_pipeline(candidate_run / PIPELINE_FILE)))
        outputs = run(build(prod, cand, work / "build"),
                      held_out_streams(production_run, prod_pipeline), work / "run")
        last = outputs.records[-1]
        summary = {"production": {"prefix": prod.prefix, "model_id": prod.info["model_id"],
                                  "run": str(production_run)},
                   "candidate": {"prefix": cand.prefix, "model_id": cand.info["model_id"],
                                 "run": str(candidate_run)},
                   "held_out_windows": int(last["windows"]),
                   "disagreements": int(last["disagreements"]),
                   "label_disagreements": int(last["label_disagreements"])}
        files: dict[str, str | bytes | Path] = {
            f"{glue.GLUE_NAME}/{glue.GLUE_NAME}.h": glue.header(prod.prefix, cand.prefix),
            f"{glue.GLUE_NAME}/{glue.GLUE_NAME}.c": glue.source(prod.prefix, cand.prefix),
            "shadow.json": json.dumps(summary, indent=2, sort_keys=True) + "\n",
            "README.md": readme(summary)}
        for lib in (prod, cand):
            for f in [*lib.sources, *lib.headers]:
                files[f"{lib.prefix}/{f.name}"] = f.read_bytes()
        write_package(out, files)
    return ShadowOutcome(out, summary["held_out_windows"], summary["disagreements"])


def readme(s: dict) -> str:
    p, c = s["production"]["prefix"], s["candidate"]["prefix"]
    return f"""# Shadow / A-B: {c} beside {p}

Build `{p}/*.c`, `{c}/*.c` (a runtime kernel `kml_*.c` present in both folders is the same
file: compile one copy) and `shadow/shadow.c` into your firmware, with all three folders on
the include path. Feed every raw sample to `shadow_push_sample(sample, &decision)` instead
of `{p}_push_sample`: it returns 1 when a window was decided, with production's decision in
`decision` (act on it); the candidate decides on the same window and only the comparison is
kept. `shadow_snapshot(uptime_s, record)` writes the 48-byte kml_shadow_v1 record
(docs/shadow.md of kiloml: windows compared, decisions and arg-max labels that differ since
boot, per-record counts, both model ids; CRC-16/CCITT-FALSE).

On production's held-out streams the glue, compiled on the host, counts
{s['disagreements']} decisions that differ of {s['held_out_windows']} windows
({s['label_disagreements']} arg-max labels): the device reports the same (the libraries are
bit-exact with their runs on the host and on the Cortex-M).
"""


def shadow_command(
        production: Annotated[Path, typer.Argument(help="The production run folder")],
        candidate: Annotated[Path, typer.Argument(help="The candidate run folder (another "
                                                  "[library] prefix, the same interface)")],
        out: Annotated[Path, typer.Option("--out", help="A new or empty folder")],
) -> None:
    """Generate the shadow / A-B glue: the candidate runs beside production on the same
    windows and its disagreements are counted into a kml_shadow_v1 telemetry record."""
    o = shadow_package(production, candidate, out)
    print(f"shadow         {o.out}: on production's held-out streams {o.disagreements} of "
          f"{o.windows} decisions differ (what the device's record will count)")
