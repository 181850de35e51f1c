"""Generated C under AddressSanitizer and UndefinedBehaviorSanitizer, on random and
extreme inputs, with a comparison against the Python reference.

A family's library (a pipeline's ``firmware/`` or a standalone network's) is built once
with the host gcc, the product's strict flags and the sanitizers, together with a driver
(``harness/sanitize_main.c`` or ``harness/sanitize_nn_main.c``) that generates its
inputs in the process from a seed (``harness/sanitize_values.h``: realistic values,
NaN, +-inf, denormals, +-FLT_MAX, +-FLT_MIN, +-0, constant windows, alternating
extremes, maximum-amplitude int8 ...) and calls every public entry point. Any sanitizer
report, or a broken API promise the driver checks, is a finding. The first inputs and
their outputs are dumped and compared with the Python reference, which proves the run
exercised the real code: features, labels and scores bit for bit, the streaming windows
and the decision layer's every output.

    python -m kiloml.verify.sanitize --inputs 100000 --json out.json   (bench/sanitize.py)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kiloml.codegen.library import SPDX_LINE, STRICT_CFLAGS, FirmwareLibrary, write_library
from kiloml.errors import ToolchainError
from kiloml.nn.graph import Graph
from kiloml.pipeline import Pipeline
from kiloml.verify.sanitize_families import Family, build_pipeline, load_network

HARNESS_DIR = Path(__file__).resolve().parent / "harness"
# The product's flags (STRICT_CFLAGS: C99, warnings as errors, no FP contraction) plus
# the sanitizers. float-cast-overflow is not part of gcc's "undefined" group: a float to
# integer conversion out of range (NaN, inf, 1e10 -> int32) is undefined behaviour too.
SANITIZER_FLAGS = ["-fsanitize=address,undefined,float-cast-overflow",
                   "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:abort_on_error=0:"
                    "detect_stack_use_after_return=1:check_initialization_order=1:"
                    "strict_string_checks=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}
_REPORT = re.compile(r"((\S+: )?runtime error: .*|ERROR: (Address|Leak)Sanitizer: .*|"
                     r"SUMMARY: \w+Sanitizer: .*|sanitize_(nn_)?main: check failed.*)")


@dataclass
class SanitizerRun:
    family: str
    group: str
    inputs: int  # the fewest inputs any entry point got (windows, streamed windows, ...)
    findings: list[str]  # sanitizer reports and failed checks (distinct lines)
    build_s: float  # fitting the model, writing and compiling the library
    run_s: float  # the sanitized run
    summary: dict = field(default_factory=dict)  # the driver's counts
    parity: dict = field(default_factory=dict)  # the dumped inputs against Python

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def parity_ok(self) -> bool:
        """Every dumped input agrees with Python, finite and non-finite ones."""
        p = self.parity
        if not p:
            return False
        if "all_equal" in p:  # a standalone network
            return bool(p["all_equal"])
        return all(p[part][subset]["all_equal"] for part in ("windows", "streams", "decide")
                   for subset in ("finite", "non_finite"))


def _compile(sources: list[Path], includes: list[Path], driver: Path, exe: Path,
             defines: list[str] | None = None) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ToolchainError("'gcc' is not installed; install the Debian package 'gcc' "
                             "(it brings libasan and libubsan)")
    cmd = [gcc, *STRICT_CFLAGS, *SANITIZER_FLAGS, *(defines or []),
           *[f"-I{d}" for d in includes], *map(str, sources), str(driver), "-lm",
           "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolchainError(f"the sanitizer build failed: {result.stderr.strip()[:2000]}")


def build_pipeline_driver(library: FirmwareLibrary, work: Path) -> Path:
    exe = work / "sanitize_main"
    _compile(library.sources, [*library.harness_includes(work), HARNESS_DIR],
             HARNESS_DIR / "sanitize_main.c", exe)
    return exe


def build_network_driver(library: FirmwareLibrary, graph: Graph, work: Path) -> Path:
    flags = {"INPUT": [t.dtype == "float32" for t in graph.input_tensors],
             "OUTPUT": [t.dtype == "float32" for t in graph.output_tensors]}
    (work / "sanitize_nn_io.h").write_text(SPDX_LINE + "\n" + "".join(
        f"#define KML_SAN_{k}_FLOAT {{{', '.join(str(int(b)) for b in v)}}}\n"
        for k, v in flags.items()))
    exe = work / "sanitize_nn_main"
    _compile(library.sources, [library.directory, work, HARNESS_DIR],
             HARNESS_DIR / "sanitize_nn_main.c", exe, ["-DKML_HOST"])
    return exe


def _run(cmd: list[str], timeout_s: float) -> tuple[dict, list[str]]:
    """(the driver's JSON summary, the findings)."""
    env = dict(os.environ, **SANITIZER_ENV)
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {}, [f"timeout after {timeout_s:g} s"]
    findings = list(dict.fromkeys(m.group(0).strip() for m in _REPORT.finditer(result.stderr)))
    if result.returncode != 0 and not findings:
        tail = result.stderr.strip().splitlines()[-3:]
        findings = [f"exit status {result.returncode}: {' | '.join(tail)}"]
    elif result.stderr.strip() and not findings:
        findings = [f"unexpected output on stderr: {result.stderr.strip()[:300]}"]
    summary = {}
    if result.returncode == 0:
        try:
            summary = json.loads(result.stdout)
        except json.JSONDecodeError:
            findings.append(f"the driver's summary is not JSON: {result.stdout[:200]}")
    return summary, findings


# ---- pipeline families -------------------------------------------------------------------

@dataclass(frozen=True)
class Counts:
    """Inputs per entry point of a pipeline family, and how many are dumped for Python."""

    windows: int  # kml_compute_features + kml_classify (+ kml_decide on the result)
    stream_windows: int  # windows reported by kml_push_sample (kml_decide_latest, ...)
    decide_calls: int  # kml_decide on random results
    dump_windows: int = 400
    dump_streams: int = 40
    dump_blocks: int = 40

    @classmethod
    def each(cls, inputs: int, dump: int = 400) -> Counts:
        """`inputs` windows, streamed windows and kml_decide calls each."""
        return cls(inputs, inputs, inputs, min(dump, inputs), max(2, dump // 10),
                   max(2, dump // 10))


def run_pipeline_family(family: Family, work: Path, counts: Counts, seed: int = 1,
                        timeout_s: float = 3600.0) -> SanitizerRun:
    started = time.perf_counter()
    pipeline = build_pipeline(family, work)
    library = write_library(pipeline, work / family.name / "firmware")
    return run_library(family, pipeline, library, work / family.name, counts, seed,
                       timeout_s, started)


def run_library(family: Family, pipeline: Pipeline, library: FirmwareLibrary, folder: Path,
                counts: Counts, seed: int = 1, timeout_s: float = 3600.0,
                started: float | None = None) -> SanitizerRun:
    """Build the written library with the sanitizers, run it, compare the dump."""
    started = time.perf_counter() if started is None else started
    exe = build_pipeline_driver(library, folder)
    built = time.perf_counter()
    dump = folder / "dump"
    summary, findings = _run([str(exe), str(seed), str(counts.windows),
                              str(counts.stream_windows), str(counts.decide_calls), str(dump),
                              str(counts.dump_windows), str(counts.dump_streams),
                              str(counts.dump_blocks)], timeout_s)
    ran = time.perf_counter()
    parity = pipeline_parity(pipeline, library.n_features, dump) if not findings else {}
    inputs = min(summary.get("windows", 0), summary.get("streamed_windows", 0),
                 summary.get("decide_calls", 0))
    return SanitizerRun(family.name, family.group, inputs, findings, round(built - started, 2),
                        round(ran - built, 2), summary, parity)


def _bits_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: every element has the same float32 bits, or both are NaN (numpy and C
    may set a NaN's sign bit differently; no kiloml output depends on it)."""
    a32, b32 = np.asarray(a, np.float32), np.asarray(b, np.float32)
    same = (a32.view(np.int32) == b32.view(np.int32)) | (np.isnan(a32) & np.isnan(b32))
    return same.reshape(len(a32), -1).all(axis=1)


def _window_records(pipeline: Pipeline, n_features: int) -> np.dtype:
    t, c, k = pipeline.window_samples, pipeline.n_channels, pipeline.n_classes
    return np.dtype([("kind", "<i4"), ("finite", "<i4"), ("window", "<f4", (t, c)),
                     ("label", "<i4"), ("scores", "<f4", (k,)),
                     ("features", "<f4", (n_features,))])


def _subset(mask: np.ndarray, equal: dict[str, np.ndarray]) -> dict:
    return {"n": int(mask.sum()),
            **{name: int(v[mask].sum()) for name, v in equal.items()},
            "all_equal": bool(all(v[mask].all() for v in equal.values()))}


def reference_labels(pipeline: Pipeline, features: np.ndarray) -> np.ndarray:
    """The Python decisions. scikit-learn refuses infinite features, so forests take the
    flattened tables' mirror (labels equal to scikit-learn's predict, checked here on
    the rows scikit-learn accepts); NaN features follow its missing-value routing."""
    tables = getattr(pipeline.model, "tables", None)
    if tables is None:
        return np.asarray(pipeline.model.predict(features), np.int64)
    labels = np.asarray(tables.predict_batch(features)[0], np.int64)
    accepted = ~np.isinf(features).any(axis=1)
    if accepted.any():
        sklearn = np.asarray(pipeline.model.predict(features[accepted]), np.int64)
        if not np.array_equal(sklearn, labels[accepted]):
            raise AssertionError("the forest's table mirror disagrees with its model")
    return labels


def window_parity(pipeline: Pipeline, n_features: int, path: Path) -> dict:
    """kml_compute_features / kml_classify on the dumped windows against Python: features,
    labels and device scores bit for bit, on the finite windows and on the others."""
    rec = np.fromfile(path, dtype=_window_records(pipeline, n_features))
    with np.errstate(all="ignore"):
        features = pipeline.compute_features(rec["window"])
        labels = reference_labels(pipeline, features)
        scores = pipeline.device_scores(features)
    equal = {"features_equal": _bits_equal(features, rec["features"]),
             "labels_equal": labels.astype(np.int64) == rec["label"],
             "scores_equal": _bits_equal(scores, rec["scores"])}
    finite = rec["finite"] == 1
    return {"finite": _subset(finite, equal), "non_finite": _subset(~finite, equal),
            "first_mismatches": [int(i) for i in np.flatnonzero(
                ~(equal["features_equal"] & equal["labels_equal"] & equal["scores_equal"]))[:8]]}


def _read_streams(pipeline: Pipeline, path: Path) -> list[tuple[bool, np.ndarray, np.ndarray]]:
    """(finite, samples [n, C], event records) per dumped stream."""
    from kiloml.verify.host import StreamEvents

    k, c = pipeline.n_classes, pipeline.n_channels
    event_bytes = 4 * (6 + 2 * k)
    raw, at, out = path.read_bytes(), 0, []
    while at < len(raw):
        finite, n = np.frombuffer(raw, "<i4", 2, at)
        at += 8
        samples = np.frombuffer(raw, "<f4", int(n) * c, at).reshape(int(n), c)
        at += samples.nbytes
        m = int(np.frombuffer(raw, "<i4", 1, at)[0])
        at += 4
        events = StreamEvents.parse(raw[at:at + m * event_bytes], k)
        at += m * event_bytes
        out.append((bool(finite), samples, events))
    return out


def stream_reference(pipeline: Pipeline, recordings: list[np.ndarray]) -> dict[str, np.ndarray]:
    """What Python expects from streaming these raw recordings (a kml_reset before each):
    the windows (stream, last raw sample), labels, device scores and the decision layer's
    outputs (Reference.build's computation, with labels that accept infinite features)."""
    from kiloml.data.recording import Recording
    from kiloml.data.windows import window_starts
    from kiloml.decision.layer import DecisionLayer
    from kiloml.verify.parity import expected_stream

    raw = [Recording(s, pipeline.input_rate_hz, list(pipeline.channels), "g", f"s{i}",
                     label="x") for i, s in enumerate(recordings)]
    w, stride, k = pipeline.window_samples, pipeline.stride_samples, pipeline.n_classes
    layer = DecisionLayer(pipeline.decision_params)
    parts: dict[str, list[np.ndarray]] = {"labels": [], "scores": [], "decision": [],
                                          "changed": [], "candidate": [], "smoothed": []}
    with np.errstate(all="ignore"):
        processed = pipeline.preprocess_recordings(raw)
        for r in processed:
            starts = window_starts(r.n_samples, w, stride)
            view = np.lib.stride_tricks.sliding_window_view(r.samples, w, axis=0)
            f = pipeline.compute_features(np.ascontiguousarray(view[starts].transpose(0, 2, 1)))
            labels = reference_labels(pipeline, f)
            scores = pipeline.device_scores(f)
            steps = layer.run(scores, labels)
            for name, v in (("labels", labels), ("scores", scores),
                            ("decision", steps.decision), ("changed", steps.changed),
                            ("candidate", steps.candidate), ("smoothed", steps.smoothed)):
                parts[name].append(v)
    rec, _, last = expected_stream([r.n_samples for r in processed], w, stride)
    out = {name: (np.concatenate(v) if v else np.zeros((0, k) if name in ("scores", "smoothed")
                                                       else 0))
           for name, v in parts.items()}
    return {"recording": rec, "last_sample": last * pipeline.decimation, **out}


def stream_parity(pipeline: Pipeline, path: Path) -> dict:
    """kml_push_sample / kml_decide_latest on the dumped streams against the Python
    reference of the same recordings: the same windows at the same samples, the same
    labels, device scores, smoothed scores, candidates, decisions and switches."""
    streams = _read_streams(pipeline, path)
    out = {}
    for name, want in (("finite", True), ("non_finite", False)):
        chosen = [(s, e) for f, s, e in streams if f == want]
        if not chosen:
            out[name] = {"n_streams": 0, "n_windows": 0, "all_equal": True}
            continue
        ref = stream_reference(pipeline, [s for s, _ in chosen])
        c = _concat_events([e for _, e in chosen])
        same_windows = (np.array_equal(c.recording, ref["recording"])
                        and np.array_equal(c.last_sample, ref["last_sample"]))
        checks = {"windows_equal": same_windows}
        if same_windows:
            checks.update(
                labels_equal=np.array_equal(c.labels, ref["labels"]),
                device_scores_equal=bool(_bits_equal(c.scores, ref["scores"]).all()),
                smoothed_equal=bool(_bits_equal(c.smoothed, ref["smoothed"]).all()),
                decisions_equal=bool(np.array_equal(c.decision, ref["decision"])
                                     and np.array_equal(c.changed, ref["changed"])
                                     and np.array_equal(c.candidate, ref["candidate"])))
        out[name] = {"n_streams": len(chosen), "n_windows": len(ref["recording"]),
                     "n_reported": len(c.recording), **checks,
                     "all_equal": bool(all(checks.values()) and len(checks) > 1)}
    return out


def _concat_events(parts: list):
    from kiloml.verify.host import StreamEvents

    fields = StreamEvents.__dataclass_fields__
    merged = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields
              if all(getattr(p, f) is not None for p in parts)}
    # recordings numbered in the order they were chosen
    merged["recording"] = np.concatenate([np.full(len(p.recording), i, np.int32)
                                          for i, p in enumerate(parts)])
    return StreamEvents(**merged)


def decide_parity(pipeline: Pipeline, path: Path) -> dict:
    """kml_decide on the dumped blocks (a kml_reset before each) against DecisionLayer."""
    from kiloml.decision.layer import DecisionLayer

    k = pipeline.n_classes
    call = np.dtype([("label", "<i4"), ("scores", "<f4", (k,)), ("decision", "<i4"),
                     ("changed", "<i4"), ("candidate", "<i4"), ("smoothed", "<f4", (k,))])
    raw, at = path.read_bytes(), 0
    layer = DecisionLayer(pipeline.decision_params)
    counts = {True: [0, 0, 0], False: [0, 0, 0]}  # blocks, calls, calls equal
    while at < len(raw):
        finite, n = (int(v) for v in np.frombuffer(raw, "<i4", 2, at))
        at += 8
        rec = np.frombuffer(raw, call, n, at)
        at += rec.nbytes
        with np.errstate(all="ignore"):
            steps = layer.run(rec["scores"], rec["label"])
        equal = ((steps.decision == rec["decision"]) & (steps.changed == rec["changed"])
                 & (steps.candidate == rec["candidate"])
                 & _bits_equal(steps.smoothed, rec["smoothed"]))
        c = counts[bool(finite)]
        c[0] += 1
        c[1] += n
        c[2] += int(equal.sum())
    return {name: {"blocks": c[0], "calls": c[1], "calls_equal": c[2],
                   "all_equal": c[1] == c[2]}
            for name, c in (("finite", counts[True]), ("non_finite", counts[False]))}


def pipeline_parity(pipeline: Pipeline, n_features: int, dump: Path) -> dict:
    return {"windows": window_parity(pipeline, n_features, dump.with_suffix(".windows")),
            "streams": stream_parity(pipeline, dump.with_suffix(".stream")),
            "decide": decide_parity(pipeline, dump.with_suffix(".decide"))}


# ---- standalone networks -----------------------------------------------------------------

def run_network_family(family: Family, work: Path, invokes: int, seed: int = 1,
                       dump_n: int = 300, timeout_s: float = 3600.0) -> SanitizerRun:
    from kiloml.codegen.nn_library import write_nn_library

    started = time.perf_counter()
    graph = load_network(family)
    folder = work / family.name
    library, _ = write_nn_library(graph, folder / "lib")
    exe = build_network_driver(library, graph, folder)
    built = time.perf_counter()
    dump = folder / "dump.nn"
    summary, findings = _run([str(exe), str(seed), str(invokes), str(dump),
                              str(min(dump_n, invokes))], timeout_s)
    ran = time.perf_counter()
    parity = network_parity(graph, dump) if not findings else {}
    return SanitizerRun(family.name, family.group, int(summary.get("invokes", 0)), findings,
                        round(built - started, 2), round(ran - built, 2), summary, parity)


def network_parity(graph: Graph, path: Path) -> dict:
    """kml_nn_invoke on the dumped inputs against the reference interpreter (TFLM's
    arithmetic), every output bit for bit."""
    from kiloml.nn.reference import Interpreter

    ins, outs = graph.input_tensors, graph.output_tensors
    fields = [("kind", "<i4")]
    fields += [(f"in{i}", np.dtype(t.dtype).newbyteorder("<"), tuple(t.shape))
               for i, t in enumerate(ins)]
    fields += [(f"out{i}", np.dtype(t.dtype).newbyteorder("<"), tuple(t.shape))
               for i, t in enumerate(outs)]
    rec = np.fromfile(path, dtype=np.dtype(fields))
    interpreter = Interpreter(graph)
    equal = np.ones(len(rec), bool)
    for row in range(len(rec)):  # one sample at a time: the graphs have batch 1
        with np.errstate(all="ignore"):
            got = interpreter.run([rec[f"in{i}"][row] for i in range(len(ins))])
        for i, y in enumerate(got):
            want = np.asarray(y).reshape(rec[f"out{i}"][row].shape)
            equal[row] &= bool(np.array_equal(want.view(np.uint8),
                                              rec[f"out{i}"][row].view(np.uint8)))
    return {"n": len(rec), "outputs_equal": int(equal.sum()), "all_equal": bool(equal.all()),
            "first_mismatches": np.flatnonzero(~equal)[:8].tolist()}


def run_family(family: Family, work: Path, inputs: int, seed: int = 1,
               dump: int = 400) -> SanitizerRun:
    """One family: `inputs` per entry point (windows, streamed windows, kml_decide calls;
    or network invokes)."""
    if family.standalone_network:
        return run_network_family(family, work, inputs, seed, dump_n=dump)
    return run_pipeline_family(family, work, Counts.each(inputs, dump), seed)


def _run_quietly(job: tuple[Family, Path, int, int]) -> SanitizerRun:
    import contextlib
    import io

    family, work, inputs, seed = job
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # data loading's progress bars
            return run_family(family, work, inputs, seed)
    except Exception as exc:  # a family that cannot be built is a failure, not a crash
        return SanitizerRun(family.name, family.group, 0,
                            [f"the family could not be built: {type(exc).__name__}: {exc}"],
                            0.0, 0.0)


def run_all(families: list[Family], work: Path, inputs: int, seed: int = 1, jobs: int = 1,
            report=None) -> list[SanitizerRun]:
    """Every family (in `jobs` processes); `report(run)` as each one finishes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    work.mkdir(parents=True, exist_ok=True)
    todo = [(f, work, inputs, seed) for f in families]
    if jobs <= 1:
        runs = []
        for job in todo:
            runs.append(_run_quietly(job))
            if report:
                report(runs[-1])
        return runs
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = []
        for run in pool.map(_run_quietly, todo):
            runs.append(run)
            if report:
                report(run)
    return runs


def print_run(run: SanitizerRun) -> None:
    s = run.summary
    what = (f"{s.get('windows', 0):,} windows, {s.get('streamed_windows', 0):,} streamed, "
            f"{s.get('decide_calls', 0):,} kml_decide" if "windows" in s else
            f"{s.get('invokes', 0):,} invokes")
    print(f"{run.group:9s} {run.family:48s} {what:58s} findings {len(run.findings)}  "
          f"parity {'ok' if run.parity_ok else 'FAILED'}  {run.build_s + run.run_s:.1f} s",
          flush=True)
    for line in run.findings:
        print(f"    {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    from kiloml.verify.sanitize_families import families

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000,
                        help="inputs per entry point and family")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="families run in parallel")
    parser.add_argument("--only", nargs="*", help="family names (default: all)")
    parser.add_argument("--json", type=Path, help="write every run here")
    parser.add_argument("--work", type=Path, help="build folder (default: a temporary one)")
    args = parser.parse_args(argv)
    chosen = [f for f in families() if not args.only or f.name in args.only]
    with tempfile.TemporaryDirectory(prefix="kiloml-sanitize-") as tmp:
        runs = run_all(chosen, args.work or Path(tmp), args.inputs, args.seed, args.jobs,
                       print_run)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.as_dict() for r in runs], indent=1) + "\n")
    return 0 if all(not r.findings and r.parity_ok for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
