"""``Library.verify``: the library built and run on the host and in QEMU on the caller's
inputs, compared with its Python reference, with the same figures as ``kiloml verify``
(kiloml.verify: host parity, the target's cross build, budget probe, QEMU runs with
instruction counts and stack painting, the calibrated estimate).

The inputs are the held-out windows: every one through ``kml_classify``; for a library
whose model reads its input as it is, they are also streamed end to end through
``kml_push_sample`` (one recording; a window every T samples is each input again) and
given to ``kml_predict`` on the host."""

from __future__ import annotations

import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from kiloml.codegen.library import STRICT_CFLAGS, FirmwareLibrary, reads_input_as_is, write_library
from kiloml.data.recording import Recording
from kiloml.errors import ToolchainError
from kiloml.verify.host import HARNESS_DIR, require_tool

F32 = np.float32


def check_predict_entry(library: FirmwareLibrary, features: np.ndarray, labels: np.ndarray,
                        scores: np.ndarray, work: Path) -> dict:
    """kml_predict on the host for every input: return values, labels and score bits."""
    cc = require_tool("gcc", "gcc")
    work.mkdir(parents=True, exist_ok=True)
    exe = work / "predict_main"
    cmd = [cc, *STRICT_CFLAGS, "-O2", *[f"-I{d}" for d in library.harness_includes(work)],
           *[str(s) for s in library.sources], str(HARNESS_DIR / "predict_main.c"), "-lm",
           "-o", str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    if built.returncode != 0:
        lines = built.stderr.strip().splitlines() or ["(no output)"]
        raise ToolchainError(f"host build of kml_predict's check failed: {lines[0]}")
    x = np.ascontiguousarray(features, dtype="<f4")
    (work / "predict.in").write_bytes(np.int32(len(x)).astype("<i4").tobytes() + x.tobytes())
    run = subprocess.run([str(exe), str(work / "predict.in"), str(work / "predict.out")],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise ToolchainError(f"predict_main failed (exit {run.returncode}): "
                             f"{run.stderr.strip()[:200]}")
    k = scores.shape[1]
    record = np.dtype([("returned", "<i4"), ("label", "<i4"), ("scores", "<f4", (k,))])
    out = np.frombuffer((work / "predict.out").read_bytes(), dtype=record)
    if len(out) != len(x):
        raise ToolchainError(f"predict_main returned {len(out)} results for {len(x)} inputs")
    equal = (out["returned"] == labels) & (out["label"] == labels)
    return {"n": len(x), "decisions_equal": int(equal.sum()),
            "all_decisions_equal": bool(equal.all()),
            "scores_bit_exact": bool(np.array_equal(out["scores"].view(np.int32),
                                                    np.asarray(scores, F32).view(np.int32))),
            "first_mismatches": np.flatnonzero(~equal)[:10].tolist()}


def verify_library(lib, windows: np.ndarray, target: str, *, emulate: bool = True,
                   work: Path | None = None) -> dict:
    """The figures of one verify (see the module docstring)."""
    from kiloml.project import TargetConfig
    from kiloml.results import record_target, run_ok
    from kiloml.targets.budget import Budget, check_budget
    from kiloml.targets.estimate import estimate_resources
    from kiloml.targets.profiles import load_profile
    from kiloml.verify.host_parity import verify_host
    from kiloml.verify.reference import Reference
    from kiloml.verify.sizes import measure_library
    from kiloml.verify.target import verify_target

    profile = load_profile(target)
    p = lib.pipeline
    features = p.compute_features_batched(windows)
    labels = np.asarray(p.model.predict(features), np.int64)
    scores = np.asarray(p.model.predict_proba(features), np.float64)
    as_is = reads_input_as_is(p)
    streamed = []
    if as_is and len(windows):  # stride = T: the stream's windows are the inputs again
        streamed = [Recording(windows.reshape(-1, p.n_channels), p.input_rate_hz,
                              list(p.channels), "inputs", "Library.verify inputs", label="")]
    with tempfile.TemporaryDirectory(prefix="kiloml-library-") as tmp:
        root = work if work is not None else Path(tmp)
        library = write_library(p, root / "firmware")
        # after the library: a monitor's telemetry records hold its model id
        reference = Reference.build(p, windows, features, labels, scores, streamed, streamed,
                                    model_id=bytes.fromhex(library.info["model_id"]))
        parity = {"host": verify_host(p, library, reference, root / "host")}
        if as_is:
            parity["host"]["kml_predict"] = check_predict_entry(
                library, features, labels, p.device_scores(features), root / "predict")
        estimate = estimate_resources(p, profile, library.n_features)
        metrics: dict = {"parity": parity, "resources": {}, "estimates": {profile.name: estimate}}
        if emulate:
            budget = Budget.for_target(profile, TargetConfig(name=profile.name))
            result = verify_target(p, library, reference, profile, budget,
                                   root / "verify" / profile.name, estimate=estimate)
            record_target(metrics, profile, result)
        else:
            sizes = measure_library(library, root / "sizes")
            check = check_budget(sizes.flash_bytes, sizes.ram_bytes,
                                 Budget.for_target(profile, TargetConfig(name=profile.name)))
            metrics["resources"][profile.name] = {
                **check.as_dict(), "measured_on": f"host-gcc-{platform.machine()} (not run "
                                                  f"on the MCU: emulate=False)"}
    ok = run_ok(metrics) and (not as_is or parity["host"]["kml_predict"]["all_decisions_equal"])
    return {"target": profile.name, "n": len(windows), **metrics, "ok": bool(ok)}
