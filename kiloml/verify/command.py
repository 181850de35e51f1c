"""`kiloml verify`: check an existing run's library on an (emulated) MCU target.

The run folder may come from someone else, and its C is compiled and run (QEMU with
semihosting can touch host files), so nothing of it is trusted: the pipeline is read
from pipeline.json (checked, never unpickled), the library is generated again from it
and built from that copy, and the folder's firmware/ must be that library byte for byte.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kiloml.codegen.library import FirmwareLibrary, write_library
from kiloml.codegen.prefix import model_header_name, model_source_name
from kiloml.errors import KilomlError
from kiloml.outputs import require_kiloml_folder
from kiloml.persist.pipeline_state import PIPELINE_FILE, load_pipeline, refuse_old_run
from kiloml.pipeline import Pipeline
from kiloml.project import TargetConfig, load_project
from kiloml.results import METRICS_FILE, read_metrics, record_target, run_ok, write_results
from kiloml.targets.budget import Budget
from kiloml.targets.estimate import estimate_resources
from kiloml.verify.reference import REFERENCE_FILE, Reference
from kiloml.verify.target import TargetResult, verify_target


@dataclass
class VerifyOutcome:
    output_dir: Path
    target: str
    result: TargetResult
    ok: bool
    host_cflags: dict | None = None  # host parity under --cflags (user_cflags.host_parity)


def firmware_library(firmware: Path, n_features: int) -> FirmwareLibrary:
    sources = sorted(firmware.glob("*.c"))
    return FirmwareLibrary(firmware, sources, sorted(firmware.glob("*.h")), n_features)


def generated_library(pipeline: Pipeline, firmware: Path, directory: Path) -> FirmwareLibrary:
    """The library ``pipeline`` generates, written into ``directory``; the run's
    ``firmware`` folder must hold the same files with the same bytes."""
    from kiloml.codegen.identity import created_in

    # the creation time is the run's (it is no part of the model id)
    header = firmware / model_header_name(pipeline.library_prefix)
    library = write_library(pipeline, directory,
                            created_utc=created_in(header, pipeline.library_prefix))
    for made in sorted(p for p in directory.iterdir() if p.is_file()):
        theirs = firmware / made.name
        try:
            same = theirs.is_file() and theirs.read_bytes() == made.read_bytes()
        except OSError:
            same = False
        if not same:
            raise KilomlError(f"{'differs from' if theirs.exists() else 'is missing from'} "
                              f"the library {PIPELINE_FILE} generates (edited, or written by "
                              "another kiloml); run `kiloml run` again", file=theirs)
    return library


def verify_project(project_path: str | Path, target: str | None = None,
                   cflags: str | None = None) -> VerifyOutcome:
    """``cflags``: the user's compiler flags; host parity and the target's are then checked
    with the library built under them (kiloml.verify.user_cflags)."""
    from kiloml.verify.user_cflags import host_parity, parity_holds, parse_cflags

    flags = None if cflags is None else parse_cflags(cflags)
    project = load_project(project_path)
    cfg = project.config
    out = project.output_dir
    refuse_old_run(out, project.path)  # never unpickled
    needed = [out / PIPELINE_FILE, out / "verify" / REFERENCE_FILE, out / METRICS_FILE]
    missing = [p for p in needed if not p.exists()]
    if not missing and not any((out / "firmware").glob("*_model.c")):
        missing = [out / "firmware" / "kiloml_model.c"]
    if missing:
        raise KilomlError(f"no complete `kiloml run` output here ({missing[0].name} is "
                          f"missing); run `kiloml run {project.path}` first", file=out)
    require_kiloml_folder(out, "run", what="the run's output folder")
    try:
        own_file = target is not None and target.endswith(".toml")  # relative to the cwd
        profile = project.target_profile(str(Path(target).resolve()) if own_file else target)
    except KilomlError as exc:
        raise KilomlError(exc.message, where="--target") from None
    same = profile.name == cfg.target.name
    budget = Budget.for_target(profile, cfg.target if same else TargetConfig(name=profile.name))
    pipeline = load_pipeline(out / PIPELINE_FILE)
    if not (out / "firmware" / model_source_name(pipeline.library_prefix)).exists():
        raise KilomlError(f"no {model_source_name(pipeline.library_prefix)} in the run's "
                          f"firmware/; run `kiloml run {project.path}` again", file=out)
    reference = Reference.load(out / "verify" / REFERENCE_FILE, pipeline)
    with tempfile.TemporaryDirectory(prefix="kiloml-verify-") as tmp:
        library = generated_library(pipeline, out / "firmware", Path(tmp) / "firmware")
        # built and measured in a staging folder beside verify/<target>, moved over it only
        # when the verify has finished: an error or Ctrl-C leaves the earlier one whole
        work = out / "verify" / profile.name
        staging = Path(tempfile.mkdtemp(prefix=f".{profile.name}.partial-", dir=work.parent))
        try:
            host = None if flags is None else host_parity(
                pipeline, library, reference, staging / "host-cflags", flags)
            estimate = estimate_resources(pipeline, profile, library.n_features)
            result = verify_target(pipeline, library, reference, profile, budget, staging,
                                   latency_budget_ms=cfg.target.latency_budget_ms if same
                                   else None, estimate=estimate, cflags=flags)
            metrics = read_metrics(out)
            metrics.setdefault("estimates", {})[profile.name] = estimate
            record_target(metrics, profile, result)
            # the last verify of this target under --cflags (none: the entry goes)
            user = metrics.setdefault("user_cflags", {})
            if host is None:
                user.pop(profile.name, None)
            else:  # bit-exact features stay so under the user's flags, or it fails
                exact = metrics["parity"].get("host", {}).get("features_bit_exact", False)
                host_ok = parity_holds(host, features_bit_exact=exact)
                target_ok = not result.parity.get("emulated") or parity_holds(
                    result.parity, features_bit_exact=exact)
                user[profile.name] = {"cflags": flags, "host": host, "host_ok": host_ok,
                                      "target_ok": target_ok}
            if not user:
                metrics.pop("user_cflags")
            old = work.with_name(f".{profile.name}.old-{os.getpid()}")
            if work.exists():
                work.rename(old)
            staging.rename(work)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    write_results(out, metrics, pipeline)
    ok = result.ok and run_ok(metrics) and (host is None or (
        user[profile.name]["host_ok"] and user[profile.name]["target_ok"]))
    return VerifyOutcome(out, profile.name, result, ok, host)
