"""`make bench`: time each step of the watch pipeline and the host C library.

Wall-clock figures depend on the machine; they are benchmarks, not test limits.
The host instruction count comes from valgrind (callgrind) and is repeatable.
Results: bench/results/foundation.json and foundation.md.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))


def timed(label: str, rows: list, func, *args, **kwargs):
    start = time.perf_counter()
    value = func(*args, **kwargs)
    rows.append({"step": label, "seconds": round(time.perf_counter() - start, 4)})
    return value


def main() -> int:
    from kiloml.codegen.library import write_library
    from kiloml.data.sources import load_recordings
    from kiloml.data.splits import make_split
    from kiloml.data.windows import make_windows
    from kiloml.models.trees import TreeModel
    from kiloml.pipeline import Pipeline, make_feature_stages
    from kiloml.project import load_project
    from kiloml.verify import host
    from kiloml.verify.sizes import measure_library

    project = load_project(ROOT / "examples" / "watch" / "kiloml.toml")
    cfg = project.config
    steps: list[dict] = []
    recordings = timed("load recordings (seglearn watch)", steps, load_recordings, project)
    windows = timed("window", steps, make_windows, recordings, cfg.window.window_ms,
                    cfg.window.stride_ms)
    split = timed("grouped split", steps, make_split, windows, cfg.evaluation)
    pipeline = Pipeline(cfg.name, windows.channels, windows.sample_rate_hz,
                        windows.window_samples, windows.stride_samples, windows.class_names,
                        make_feature_stages(project, windows.sample_rate_hz,
                                            windows.window_samples, windows.channels),
                        TreeModel(cfg.model, len(windows.class_names)))
    features = timed("statistics features (Python reference)", steps,
                     pipeline.compute_features, windows.x)
    timed("train random forest", steps, pipeline.model.fit, features[split.train],
          windows.y[split.train])
    work = Path(tempfile.mkdtemp(prefix="kiloml-bench-"))
    try:
        library = timed("emit C library", steps, write_library, pipeline, work / "firmware")
        exe = timed("host build (gcc -O2)", steps, host.build_host, library, work / "host")
        test_x = windows.x[split.test]
        timed(f"host C classify {len(test_x)} windows (incl. I/O)", steps, host.run_windows,
              exe, test_x, pipeline.n_classes, library.n_features, work / "run")
        sizes = measure_library(library, work / "sizes")
        instructions = callgrind_instructions(exe, test_x[:200], pipeline, library, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = len(windows)
    feature_step = next(s for s in steps if s["step"].startswith("statistics"))
    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or
                    platform.machine(), "cores": _cores()},
        "data": {"recordings": len(recordings), "windows": n,
                 "window_samples": windows.window_samples, "channels": len(windows.channels)},
        "steps": steps,
        "python_feature_windows_per_s": round(n / max(feature_step["seconds"], 1e-9)),
        "host_library": {"flash_bytes": sizes.flash_bytes, "ram_bytes": sizes.ram_bytes,
                         "measured_on": f"host-gcc-{platform.machine()} -Os"},
        "host_instructions_per_window": instructions,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "foundation.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Foundation benchmark: the watch pipeline", "",
             f"{len(recordings)} recordings, {n} windows of {windows.window_samples} samples x "
             f"{len(windows.channels)} channels; {result['machine']['cores']} cores, Python "
             f"{result['machine']['python']}. Wall-clock seconds (machine-dependent).", "",
             "| step | seconds |", "|---|---:|"]
    lines += [f"| {s['step']} | {s['seconds']:.3f} |" for s in steps]
    lines += ["", f"Python reference features: {result['python_feature_windows_per_s']:,} "
              f"windows/s.", "",
              f"Host library (x86-64 gcc -Os): flash {sizes.flash_bytes:,} B, static RAM "
              f"{sizes.ram_bytes:,} B.", ""]
    if instructions:
        lines.append(f"Host instructions per window (valgrind callgrind, features + forest, "
                     f"harness I/O excluded): {instructions:,}.")
    (RESULTS / "foundation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def callgrind_instructions(exe: Path, x: np.ndarray, pipeline, library, work: Path) -> int | None:
    """Instructions in kml_classify per window on the host (repeatable), via callgrind."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        return None
    src = work / "cg.in"
    src.write_bytes(np.int32(len(x)).tobytes() + np.ascontiguousarray(x, "<f4").tobytes())
    out_file = work / "callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
                    str(exe), "windows", str(src), str(work / "cg.out")],
                   check=True, capture_output=True)
    report = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out_file)],
                            capture_output=True, text=True, check=True).stdout
    for line in report.splitlines():
        if "kml_classify" in line and "kml_classify_latest" not in line:
            count = int(re.sub(r"[^\d]", "", line.split()[0]))
            return count // len(x)
    return None


if __name__ == "__main__":
    sys.exit(main())
