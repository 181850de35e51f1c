"""Int8 networks, side by side: kiloml's generated C against the TFLM interpreter.

For every converter-made int8 fixture (tests/nn/fixtures/*_int8.tflite) and the watch
example's 1-D CNN (trained by `kiloml run examples/watch/cnn1d.toml`), all in one run:

1. arena: kiloml's planned arena against the smallest `arena_size` with which TFLM's
   Python interpreter loads the model and gives the same outputs as with a 1 MiB arena
   (bisection; every probe in its own process, so a crash is a failed probe);
2. host instructions per inference (valgrind callgrind, deterministic): kml_nn_invoke
   built with gcc -O2 against tflite::micro::MicroInterpreter::Invoke() in TFLM's
   Python runtime, on the same random inputs;
3. emulated Cortex-M4F (QEMU mps2-an386, `kiloml.nn.compile.compile_model`): instructions
   per inference and per MAC, with the DSP kernels and with the portable ones;
4. flash: what the library (weights + code) adds to a minimal M4 firmware, and code alone.

Writes bench/results/nn.json (a list of rows, one per model) and bench/results/nn.md.
`--models mlp_int8,dscnn_int8` picks fixtures, `--skip-example` skips the 1.5 min training.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "nn" / "fixtures"
EXAMPLE_TOML = ROOT / "examples" / "watch" / "cnn1d.toml"
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))
TARGET = "cortex-m4f"
N_INFERENCES = 20  # random inputs per model, shared by every measurement
BIG_ARENA = 1 << 20
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
TFLM_INVOKE = "tflite::micro::MicroInterpreter::Invoke()"
GOALS = {"arena": 0.7, "host": 0.5, "per_mac": 1.0}

# Runs in a fresh interpreter: load the model with the given arena, invoke it on every
# input, save the outputs. Exit 3 when TFLM refuses (RuntimeError); a crash is any other
# non-zero status. Also the program callgrind watches for TFLM's instruction count.
TFLM_PROBE = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
model, arena, inputs, outputs, report = sys.argv[1:6]
x = np.load(inputs, allow_pickle=False)
try:
    it = runtime.Interpreter.from_bytes(open(model, "rb").read(), arena_size=int(arena))
    out = []
    for i in range(len(x)):
        it.set_input(x[i:i + 1], 0)
        it.invoke()
        out.append(it.get_output(0).copy())
except RuntimeError:
    sys.exit(3)
np.save(outputs, np.stack(out))
if report == "1":
    it.print_allocations()
"""


# --- TFLM ---------------------------------------------------------------------------


def tflm_run(model: Path, arena: int, x_file: Path, work: Path, report: bool = False,
             wrapper: list[str] | None = None) -> tuple[np.ndarray | None, str]:
    """Outputs of TFLM on the inputs in x_file (None if it failed or crashed), and stderr."""
    out = work / f"tflm_out_{arena}.npy"
    out.unlink(missing_ok=True)
    cmd = [*(wrapper or []), sys.executable, "-c", TFLM_PROBE, str(model), str(arena),
           str(x_file), str(out), "1" if report else "0"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0 or not out.exists():
        return None, result.stderr
    return np.load(out, allow_pickle=False), result.stderr


def tflm_smallest_arena(model: Path, x_file: Path, want: np.ndarray, work: Path) -> int:
    """Smallest arena_size (bytes) with which TFLM loads and gives the big-arena outputs."""
    def works(n: int) -> bool:
        got, _ = tflm_run(model, n, x_file, work)
        return got is not None and np.array_equal(got, want)

    hi = 4096
    while not works(hi):  # double from a small guess: bisection then spans few bytes
        if hi >= BIG_ARENA:
            raise RuntimeError(f"TFLM fails with every arena up to {BIG_ARENA} B")
        hi *= 2
    lo = hi // 2 if hi > 4096 else 0  # lo fails (or is 0), hi works
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if works(mid):
            hi = mid
        else:
            lo = mid
    return hi


def callgrind_total(cmd: list[str], function: str, cwd: Path) -> int:
    """Instructions executed inside `function` (and its callees) over the whole run."""
    out_file = cwd / "callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
                    f"--toggle-collect={function}", *cmd], cwd=cwd, check=True,
                   capture_output=True, timeout=1800)
    totals = re.search(r"^totals:\s+(\d+)", out_file.read_text(), re.MULTILINE)
    if totals is None or int(totals.group(1)) == 0:
        raise RuntimeError(f"callgrind counted nothing in {function}")
    return int(totals.group(1))


def measure_tflm(model: Path, x: np.ndarray, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    x_file = work / "inputs.npy"
    np.save(x_file, x)
    want, log = tflm_run(model, BIG_ARENA, x_file, work, report=True)
    if want is None:
        raise RuntimeError(f"TFLM does not run the model with a {BIG_ARENA} B arena: "
                           f"{log.strip()[-300:]}")
    recorded = re.search(r"Arena allocation total (\d+) bytes", log)
    arena = tflm_smallest_arena(model, x_file, want, work)
    total = callgrind_total([sys.executable, "-c", TFLM_PROBE, str(model), str(BIG_ARENA),
                             str(x_file), str(work / "cg_out.npy"), "0"], TFLM_INVOKE, work)
    return {"outputs": want, "tflm_arena_bytes": arena,
            "tflm_arena_recorded_bytes": int(recorded.group(1)) if recorded else None,
            "tflm_host_instructions": round(total / len(x))}


# --- kiloml -------------------------------------------------------------------------


def measure_kiloml_host(graph, x: np.ndarray, work: Path) -> dict:
    from kiloml.codegen.nn_library import write_nn_library
    from kiloml.nn.compile import build_host_harness

    library, net = write_nn_library(graph, work / "lib")
    exe = build_host_harness(library, work / "host")
    run = work / "host_run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "kml_in.bin").write_bytes(np.int32(len(x)).tobytes()
                                     + np.ascontiguousarray(x).tobytes())
    total = callgrind_total([str(exe)], "kml_nn_invoke", run)
    # kml_out.bin: per input the output values, then a uint32 (stack, 0 on the host)
    y = graph.output_tensors[0]
    item = np.dtype(y.dtype).itemsize * y.size + 4
    rows = np.frombuffer((run / "kml_out.bin").read_bytes(), np.uint8).reshape(len(x), item)
    outputs = rows[:, :-4].copy().view(np.dtype(y.dtype)).reshape(len(x), *y.shape)
    return {"kiloml_arena_bytes": net.plan.arena_bytes,
            "arena_lower_bound_bytes": net.plan.lower_bound_bytes,
            "planner_strategy": net.plan.strategy,
            "kiloml_host_instructions": round(total / len(x)), "outputs": outputs}


def conv_fc_per_mac(layers: list[dict]) -> tuple[float | None, int]:
    """Instructions per MAC over the CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED layers."""
    chosen = [la for la in layers if la["op"] in MAC_OPS and la.get("instructions")]
    macs = sum(la["macs"] for la in chosen)
    instructions = sum(la["instructions"] for la in chosen)
    return (round(instructions / macs, 3) if macs else None), macs


def measure_kiloml_m4(model: Path, work: Path, portable: bool) -> dict:
    """One compile_model run on the emulated M4; keys end in _portable for that build."""
    from kiloml.nn.compile import compile_model

    work.mkdir(parents=True, exist_ok=True)
    res = compile_model(model, TARGET, work / "lib", portable=portable)
    per_mac, conv_fc_macs = conv_fc_per_mac(res["layers"])
    macs, mean = res["macs"], res["instructions_mean"]
    sfx = "_portable" if portable else ""
    out = {"macs": macs, "conv_fc_macs": conv_fc_macs, "weights_bytes": res["weights_bytes"],
           f"m4_instructions_per_inference{sfx}": round(mean),
           f"m4_instructions_per_mac{sfx}": per_mac,
           f"m4_model_instructions_per_mac{sfx}": round(mean / macs, 3) if macs else None,
           f"m4_bit_exact{sfx}": f"{res['parity'][TARGET]['bit_exact']}/"
                                 f"{res['parity'][TARGET]['n']}",
           f"kiloml_flash_bytes{sfx}": res["flash_bytes"],
           f"kiloml_code_flash_bytes{sfx}": res["code_flash_bytes"],
           f"kiloml_ram_bytes{sfx}": res["ram_bytes"],
           f"kiloml_stack_bytes{sfx}": res["stack_bytes"], f"m4_compiler{sfx}": res["compiler"],
           f"m4_layers{sfx}": [la for la in res["layers"] if la["op"] in MAC_OPS]}
    return out


def merge_layers(row: dict) -> None:
    """Per conv/FC layer: the DSP and the portable instruction counts side by side."""
    dsp = {la["index"]: la for la in row.pop("m4_layers", [])}
    port = {la["index"]: la for la in row.pop("m4_layers_portable", [])}
    row["layers"] = []
    for index in sorted(dsp.keys() | port.keys()):
        a, b = dsp.get(index, {}), port.get(index, {})
        base = a or b
        row["layers"].append({
            "index": index, "op": base["op"], "kernel": base["kernel"],
            "fast_path": base.get("fast_path"), "macs": base["macs"],
            "output_shape": base["output_shape"],
            "instructions": a.get("instructions"),
            "instructions_per_mac": a.get("instructions_per_mac"),
            "instructions_portable": b.get("instructions"),
            "instructions_per_mac_portable": b.get("instructions_per_mac")})


# --- models -------------------------------------------------------------------------


def fixture_models(names: list[str] | None) -> dict[str, tuple[Path, str]]:
    found = {p.name.removesuffix(".tflite"): p for p in sorted(FIXTURES.glob("*_int8.tflite"))}
    unknown = sorted(set(names or []) - set(found))
    if unknown:
        raise SystemExit(f"unknown fixture(s) {', '.join(unknown)}; have {', '.join(found)}")
    return {n: (p, "litert-torch 0.10.0" if "litert" in n else "TF 2.21 TFLiteConverter")
            for n, p in found.items() if names is None or n in names}


def example_model(work: Path) -> tuple[Path | None, str]:
    """Train the watch 1-D CNN with `kiloml run` in a scratch folder; its model.tflite."""
    from kiloml.progress import console

    console.print("training the watch 1-D CNN (kiloml run examples/watch/cnn1d.toml, "
                  "about 1.5 min)")
    work.mkdir(parents=True, exist_ok=True)
    # without [output] dir the project writes to ./build/<name>: run from the scratch folder
    kiloml = Path(sys.executable).parent / "kiloml"
    result = subprocess.run([str(kiloml), "run", str(EXAMPLE_TOML)], cwd=work,
                            capture_output=True, text=True, timeout=1800)
    model = work / "build" / "watch-cnn1d" / "model.tflite"
    if result.returncode != 0 or not model.exists():
        tail = [ln for ln in result.stderr.strip().splitlines() if ln.strip()][-1:]
        return None, (f"`kiloml run examples/watch/cnn1d.toml` failed (status "
                      f"{result.returncode}): {' '.join(tail)[:400]}")
    return model, ""


def random_inputs(model: Path, n: int) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    details = runtime.Interpreter.from_bytes(model.read_bytes(),
                                             arena_size=BIG_ARENA).get_input_details(0)
    rng = np.random.default_rng(0)
    shape, dtype = tuple(int(d) for d in details["shape"][1:]), details["dtype"]
    if dtype != np.int8:
        raise RuntimeError(f"input dtype {np.dtype(dtype).name}, this bench runs int8 models")
    return rng.integers(-128, 128, size=(n, *shape)).astype(np.int8)


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def bench_model(name: str, path: Path, source: str, n: int, work: Path) -> dict:
    from kiloml.nn.load import load_model

    row: dict = {"model": name, "source": source, "tflite_bytes": path.stat().st_size,
                 "kiloml_arena_bytes": None, "tflm_arena_bytes": None,
                 "kiloml_host_instructions": None, "tflm_host_instructions": None,
                 "m4_instructions_per_mac": None, "kiloml_flash_bytes": None,
                 "weights_bytes": None, "errors": []}
    x = random_inputs(path, n)  # one input per row, without the batch dimension

    def attempt(label: str, func) -> dict:
        try:
            return func()
        except Exception as exc:  # one failing side must not hide the others' numbers
            detail = "".join(traceback.format_exception_only(exc)).strip()
            row["errors"].append(f"{label}: {detail[:600]}")
            return {}

    tflm = attempt("TFLM arena + callgrind", lambda: measure_tflm(path, x, work / "tflm"))
    host = attempt("kiloml host build + callgrind",
                   lambda: measure_kiloml_host(load_model(path), x, work / "host"))
    m4 = attempt("kiloml Cortex-M4, DSP kernels (compile_model, QEMU)",
                 lambda: measure_kiloml_m4(path, work / "m4_dsp", portable=False))
    m4p = attempt("kiloml Cortex-M4, portable kernels (compile_model portable=True, QEMU)",
                  lambda: measure_kiloml_m4(path, work / "m4_portable", portable=True))
    for part in (tflm, host, m4p, m4):
        row.update({k: v for k, v in part.items() if k != "outputs"})
    merge_layers(row)
    if tflm and host:  # the same inputs went through both: their outputs must agree
        same = sum(np.array_equal(a.reshape(-1), b.reshape(-1))
                   for a, b in zip(host["outputs"], tflm["outputs"], strict=True))
        row["host_bit_exact_vs_tflm"] = f"{same}/{n}"
    row["arena_ratio"] = ratio(row["kiloml_arena_bytes"], row["tflm_arena_bytes"])
    row["host_instructions_ratio"] = ratio(row["kiloml_host_instructions"],
                                           row["tflm_host_instructions"])
    row["goals_met"] = {
        "arena": None if row["arena_ratio"] is None else row["arena_ratio"] <= GOALS["arena"],
        "host": None if row["host_instructions_ratio"] is None
        else row["host_instructions_ratio"] <= GOALS["host"],
        "per_mac": None if row["m4_instructions_per_mac"] is None
        else row["m4_instructions_per_mac"] <= GOALS["per_mac"]}
    return row


# --- report -------------------------------------------------------------------------


def tool_versions() -> dict[str, str]:
    import tflite_micro

    from kiloml import __version__

    def first_line(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "not found"

    runtime_so = next(Path(tflite_micro.__file__).parent.rglob("_runtime*.so"), None)
    built_with = "unknown"
    if runtime_so is not None and shutil.which("readelf"):
        comment = subprocess.run(["readelf", "-p", ".comment", str(runtime_so)],
                                 capture_output=True, text=True).stdout
        found = re.findall(r"GCC: \(.*?\) [\d.]+[^\n]*", comment)
        built_with = found[0].strip() if found else built_with
    return {"kiloml": __version__,
            "tflite-micro": getattr(tflite_micro, "__version__", "unknown"),
            "tflite-micro _runtime.so built with": built_with,
            "host gcc": first_line(["gcc", "--version"]),
            "arm-none-eabi-gcc": first_line(["arm-none-eabi-gcc", "--version"]),
            "valgrind": first_line(["valgrind", "--version"]),
            "qemu-system-arm": first_line(["qemu-system-arm", "--version"]),
            "python": sys.version.split()[0]}


def fmt(v, spec: str = ",") -> str:
    return "n/a" if v is None else format(v, spec)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def markdown(rows: list[dict], versions: dict[str, str], notes: list[str], n: int,
             dsp_source: bool) -> str:
    lines = [
        "# Int8 networks: kiloml's generated C and the TFLM interpreter", "",
        "Goals (from the issue): kiloml's arena at most "
        f"{GOALS['arena']}x TFLM's smallest working arena; host instructions per inference "
        f"at most {GOALS['host']}x TFLM's; on the Cortex-M4 at most {GOALS['per_mac']} "
        "instruction per MAC in the CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED layers.",
        "", "| model | MACs | arena B kiloml / TFLM (ratio) | host instr. kiloml / TFLM "
        "(ratio) | M4 instr./MAC conv+FC DSP / portable | M4 instr./MAC whole model DSP / "
        "portable "
        "| M4 instr./inference DSP / portable | flash B (code) | weights B | arena goal "
        "| host goal | per-MAC goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        g = r["goals_met"]
        lines.append(
            f"| {r['model']} | {fmt(r.get('macs'))} | {fmt(r['kiloml_arena_bytes'])} / "
            f"{fmt(r['tflm_arena_bytes'])} ({fmt(r['arena_ratio'], '.2f')}) | "
            f"{fmt(r['kiloml_host_instructions'])} / {fmt(r['tflm_host_instructions'])} "
            f"({fmt(r['host_instructions_ratio'], '.2f')}) | "
            f"{fmt(r['m4_instructions_per_mac'], '.2f')} / "
            f"{fmt(r.get('m4_instructions_per_mac_portable'), '.2f')} | "
            f"{fmt(r.get('m4_model_instructions_per_mac'), '.2f')} / "
            f"{fmt(r.get('m4_model_instructions_per_mac_portable'), '.2f')} | "
            f"{fmt(r.get('m4_instructions_per_inference'))} / "
            f"{fmt(r.get('m4_instructions_per_inference_portable'))} | "
            f"{fmt(r['kiloml_flash_bytes'])} ({fmt(r.get('kiloml_code_flash_bytes'))}) | "
            f"{fmt(r['weights_bytes'])} | {verdict(g['arena'])} | {verdict(g['host'])} | "
            f"{verdict(g['per_mac'])} |")
    lines += ["", "## Per layer on the Cortex-M4 (conv and fully connected)", "",
              "| model | layer | op | kernel | MACs | instr. DSP | instr./MAC DSP | "
              "instr./MAC portable |", "|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        for la in r.get("layers", []):
            lines.append(f"| {r['model']} | {la['index']} | {la['op']} | {la['kernel']} | "
                         f"{fmt(la['macs'])} | {fmt(la['instructions'], ',.0f')} | "
                         f"{fmt(la['instructions_per_mac'], '.2f')} | "
                         f"{fmt(la['instructions_per_mac_portable'], '.2f')} |")
    lines += ["", "## Extras", "",
              "| model | source | .tflite B | arena lower bound B | TFLM arena recorded B | "
              "host outputs = TFLM | M4 bit-exact DSP / portable | RAM B | stack B |",
              "|---|---|---:|---:|---:|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['source']} | {r['tflite_bytes']:,} | "
                     f"{fmt(r.get('arena_lower_bound_bytes'))} | "
                     f"{fmt(r.get('tflm_arena_recorded_bytes'))} | "
                     f"{r.get('host_bit_exact_vs_tflm', 'n/a')} | "
                     f"{r.get('m4_bit_exact', 'n/a')} / "
                     f"{r.get('m4_bit_exact_portable', 'n/a')} | "
                     f"{fmt(r.get('kiloml_ram_bytes'))} | "
                     f"{fmt(r.get('kiloml_stack_bytes'))} |")
    errors = [f"- {r['model']}: {e}" for r in rows for e in r["errors"]]
    if errors or notes:
        lines += ["", "## Failures and notes", "", *[f"- {m}" for m in notes], *errors]
    compiler = next((r["m4_compiler"] for r in rows if r.get("m4_compiler")), "n/a")
    lines += [
        "", "## How each number was measured", "",
        f"All numbers come from one run, on the same {n} random int8 inputs per model "
        "(numpy default_rng(0), uniform over -128..127).", "",
        "- **Arena, kiloml**: `write_nn_library(graph, dir)` -> `net.plan.arena_bytes`, "
        "the one static buffer holding every activation and scratch buffer (tensor "
        "metadata, quantization parameters and weights are constants in flash). Lower "
        "bound: `net.plan.lower_bound_bytes`, the largest set of tensors alive at once.",
        f"- **Arena, TFLM**: the smallest `arena_size` for which "
        "`runtime.Interpreter.from_bytes(model, arena_size=N)` loads and then gives, on "
        f"every input, outputs equal to a run with a {BIG_ARENA:,} B arena; bisection to "
        "the byte, each probe in its own Python process (a crash counts as a failure). "
        "The TFLM arena holds the activations plus the interpreter's persistent data "
        "(eval tensors, node structs, op data). The Python runtime uses TFLM's "
        "RecordingMicroAllocator, whose object lives in the arena's tail too (a few "
        "hundred bytes more than a plain MicroAllocator on a device). 'TFLM arena "
        "recorded' is its own `print_allocations()` total.",
        "- **Host instructions**: `valgrind --tool=callgrind` (instructions, exact and "
        "repeatable), divided by the number of inferences. kiloml: the generated C "
        "(`build_host_harness`, host gcc -O2, harness `kiloml/verify/nn/nn_main.c`), "
        "counting only `kml_nn_invoke` (`--toggle-collect=kml_nn_invoke`); on the host the "
        "kernels are the portable C ones. TFLM: the tflite-micro wheel's `_runtime.so` "
        f"(reference kernels, built as shipped) under the Python runtime, counting only "
        f"`--toggle-collect='{TFLM_INVOKE}'` (setting inputs, reading outputs and Python "
        "are excluded on both sides).",
        "- **Cortex-M4**: `kiloml.nn.compile.compile_model(model, 'cortex-m4f', dir)` "
        f"with the DSP kernels and again with `portable=True`; {compiler}; QEMU "
        "mps2-an386 with kiloml's instruction-counting plugin (mean over 8 random inputs, "
        "bit-exact against kiloml's reference interpreter). Per-layer counts come from a "
        "build with layer marks (mean over 4 inputs). 'conv+FC' = the instructions of "
        "the CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED layers over their MACs; "
        "'whole model' = all instructions of an inference over all MACs.",
        "- **Flash**: `flash_bytes` of the budget probe: what the network library "
        "(weights, other constants and code, with libgcc/newlib helpers it pulls in) adds "
        "to a minimal firmware linked with --gc-sections, DSP build; code = that flash "
        "less the network's constant tables (weights, biases, multipliers, shifts, "
        "parameter structs): the kernels and generated calls as linked. Weights = the "
        "model's constant tensors.",
    ]
    if not dsp_source:
        lines += ["", "kiloml/runtime/kml_nn_dsp.c does not exist yet: the DSP numbers "
                  "equal the portable ones."]
    elif rows and all(r.get("m4_instructions_per_inference") is not None
                      and r.get("m4_instructions_per_inference")
                      == r.get("m4_instructions_per_inference_portable") for r in rows):
        lines += ["", "The DSP and portable builds execute the same number of instructions "
                  "on every model: kml_nn_dsp.c has no fast path in use yet."]
    lines += ["", "## Tool versions", ""] + [f"- {k}: {v}" for k, v in versions.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from kiloml.codegen.library import RUNTIME_DIR
    from kiloml.progress import console, track

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated fixture names (default: every "
                        "tests/nn/fixtures/*_int8.tflite), e.g. mlp_int8,dscnn_int8")
    parser.add_argument("--skip-example", action="store_true",
                        help="do not train and measure the watch 1-D CNN example")
    parser.add_argument("--inferences", type=int, default=N_INFERENCES,
                        help=f"random inputs per model (default {N_INFERENCES})")
    args = parser.parse_args(argv)
    for tool in ("valgrind", "gcc"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/nn.py needs {tool} on the PATH")

    names = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    models = fixture_models(names)
    notes: list[str] = []
    rows = []
    work = Path(tempfile.mkdtemp(prefix="kiloml-bench-nn-"))
    try:
        if not args.skip_example:
            path, why = example_model(work / "example")
            if path is None:
                notes.append(why)
                console.print(f"[yellow]{why}; continuing with the fixtures[/yellow]")
            else:
                models["watch_cnn1d"] = (path, "kiloml run examples/watch/cnn1d.toml")
        for name in track(list(models), "networks"):
            path, source = models[name]
            console.print(f"{name}: TFLM arena bisection and callgrind, kiloml host and "
                          f"Cortex-M4 (DSP and portable)")
            row = bench_model(name, path, source, args.inferences, work / name)
            for e in row["errors"]:
                console.print(f"[red]{name}: {e}[/red]")
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nn.json").write_text(json.dumps(rows, indent=2) + "\n")
    text = markdown(rows, tool_versions(), notes, args.inferences,
                    (RUNTIME_DIR / "kml_nn_dsp.c").exists())
    (RESULTS / "nn.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
