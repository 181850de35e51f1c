"""`kiloml model compile` and `kiloml model verify`: a network's C library, proven and measured.

compile: load + validate the model, generate the library (kiloml/codegen/nn_library.py),
check the arena against the target's RAM, build and run it on the host and (where the
target has an emulator) on the emulated MCU with a few inputs, and write resources.json
with flash, RAM, arena, stack, instructions and a per-layer breakdown.

verify: run user inputs through the generated C on the emulated target (or the host) and
compare every output with kiloml's reference interpreter (bit-exact with TFLM).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.library import STRICT_CFLAGS, FirmwareLibrary
from kiloml.codegen.nn_c import NetworkC
from kiloml.codegen.nn_calls import CodegenError, is_float_copy
from kiloml.codegen.nn_library import write_nn_library
from kiloml.errors import KilomlError, ToolchainError
from kiloml.nn.graph import Graph
from kiloml.nn.load import load_model
from kiloml.nn.reference import Interpreter
from kiloml.outputs import Protected, check_output_folder, make_staging, replace_folder
from kiloml.targets.profiles import TargetProfile, load_profile

NN_DIR = Path(__file__).resolve().parent.parent / "verify" / "nn"
HOST = "host"


def check_int8(graph: Graph, model: Path) -> None:
    float_ops = [f"{op.kind} ({op.name})" for op in graph.ops
                 if op.kind not in ("QUANTIZE", "DEQUANTIZE")
                 and graph.tensors[op.outputs[0]].dtype != "int8"
                 and not is_float_copy(graph, op)]  # a float SPLIT moves bytes only
    if float_ops:
        raise KilomlError(f"the C generator compiles int8 networks; {len(float_ops)} operators "
                          f"compute in float ({', '.join(float_ops[:3])}); quantize the model "
                          f"first (`kiloml model quantize MODEL --calibration X.npy`, `model "
                          f"compile --calibration X.npy`, or a project with [model] kind = "
                          f"'imported')", file=model)


def check_arena(net: NetworkC, graph: Graph, profile: TargetProfile, model: Path) -> None:
    if net.plan.arena_bytes <= profile.ram_bytes:
        return
    t = graph.tensors
    biggest = sorted(((t[op.outputs[0]].nbytes, i, op) for i, op in enumerate(graph.ops)),
                     key=lambda r: -r[0])[:3]
    named = "; ".join(f"op {i} {op.kind} output {list(t[op.outputs[0]].shape)} ({size:,} B)"
                      for size, i, op in biggest)
    raise KilomlError(
        f"the arena needs {net.plan.arena_bytes:,} B, more than {profile.name}'s "
        f"{profile.ram_bytes:,} B of RAM; the largest activations: {named}. Fewer channels "
        f"in those layers, a stride of 2 or pooling earlier, or a shorter input would shrink "
        f"them", file=model)


def build_host_harness(library: FirmwareLibrary, work: Path, *, portable: bool = False,
                       optimize: str = "-O2") -> Path:
    work.mkdir(parents=True, exist_ok=True)
    exe = work / "nn_host"
    cmd = ["gcc", *STRICT_CFLAGS, optimize, "-DKML_HOST", *(["-DKML_NN_DSP=0"] if portable
                                                             else []),
           f"-I{library.directory}", *[str(s) for s in library.sources],
           str(NN_DIR / "nn_main.c"), "-lm", "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolchainError(f"building the network on the host failed: "
                             f"{result.stderr.strip().splitlines()[0][:300]}")
    return exe


Inputs = np.ndarray | list[np.ndarray]  # [N, ...] for one model input, or one per input


def _as_list(x: Inputs) -> list[np.ndarray]:
    return [x] if isinstance(x, np.ndarray) else list(x)


def input_payload(x: Inputs) -> bytes:
    """int32 n, then per inference the bytes of each model input in order."""
    xs = [np.ascontiguousarray(a) for a in _as_list(x)]
    n = len(xs[0])
    rows = np.concatenate([a.reshape(n, -1).view(np.uint8) for a in xs], axis=1)
    return np.int32(n).tobytes() + rows.tobytes()


def parse_outputs(raw: bytes, n: int, graph: Graph) -> tuple[list[np.ndarray], np.ndarray]:
    """Every output [n, ...shape[1:]] and the stack bytes per inference."""
    sizes = [np.dtype(y.dtype).itemsize * y.size for y in graph.output_tensors]
    item = sum(sizes) + 4
    if len(raw) != n * item:
        raise ToolchainError(f"the harness wrote {len(raw)} bytes, expected {n * item}")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(n, item)
    outs, at = [], 0
    for y, size in zip(graph.output_tensors, sizes, strict=True):
        # [N, ...shape[1:]] for a batch-1 tensor, [N, ...shape] otherwise
        shape = y.shape[1:] if y.shape and y.shape[0] == 1 else y.shape
        outs.append(rows[:, at:at + size].copy().view(np.dtype(y.dtype)).reshape(n, *shape))
        at += size
    stack = rows[:, -4:].copy().view("<u4").reshape(n)
    return outs, stack


def run_host_all(exe: Path, x: Inputs, graph: Graph, work: Path) -> list[np.ndarray]:
    """Every output of the host build on the inputs (one array per model input)."""
    (work / "kml_in.bin").write_bytes(input_payload(x))
    # absolute: the harness runs in `work`, and a relative path names another file there
    result = subprocess.run([str(Path(exe).absolute())], cwd=work, capture_output=True,
                            timeout=600)
    if result.returncode != 0:
        raise ToolchainError(f"the host harness failed with status {result.returncode}")
    return parse_outputs((work / "kml_out.bin").read_bytes(), len(_as_list(x)[0]), graph)[0]


def run_host(exe: Path, x: Inputs, graph: Graph, work: Path) -> np.ndarray:
    return run_host_all(exe, x, graph, work)[0]


@dataclass
class TargetRun:
    outputs: np.ndarray  # the first output [N, ...]
    all_outputs: list[np.ndarray]
    instructions: np.ndarray  # per inference
    stack_bytes: int
    layer_instructions: list[float] | None  # mean per layer (marked build)
    flash_bytes: int
    ram_bytes: int
    compiler: str


def run_target(library: FirmwareLibrary, graph: Graph, profile: TargetProfile, x: Inputs,
               work: Path, *, portable: bool = False, per_layer: bool = True,
               optimize: str = "-O2") -> TargetRun:
    from kiloml.verify.mcu import build, qemu
    from kiloml.verify.mcu.toolchain import find_toolchain

    toolchain = find_toolchain()
    machine = profile.qemu_machine
    if machine is None:
        raise KilomlError(f"target '{profile.name}' has no emulator; use --target host or one "
                          f"of the emulated targets (see `kiloml targets`)")
    extra = ["-DKML_NN_DSP=0"] if portable else []
    objects = build.compile_objects(toolchain, library.sources, [library.directory], profile,
                                    optimize, work / "library", extra=extra)
    probe = build.budget_probe(toolchain, library, objects, profile, optimize, work / "probe",
                               probe_source=NN_DIR / "nn_budget_main.c")
    elf = build.build_harness(toolchain, library, objects, profile, machine, optimize, work,
                              harness_source=NN_DIR / "nn_main.c")
    plugin = qemu.build_plugin(toolchain, work / "plugin")
    n = len(_as_list(x)[0])
    run = qemu.run_harness(toolchain, elf, machine, input_payload(x), plugin, work / "run",
                           timeout_s=120 + 0.5 * n)
    outputs, stacks = parse_outputs(run.output, n, graph)
    layers = None
    if per_layer:
        marked = build.compile_objects(toolchain, [library.directory / "kiloml_nn.c"],
                                       [library.directory], profile, optimize,
                                       work / "marked", extra=[*extra, "-DKML_NN_LAYER_MARKS"])
        others = [o for o in objects if o.stem != "kiloml_nn"]
        elf_m = build.build_harness(toolchain, library, [*marked, *others], profile, machine,
                                    optimize, work / "marked_elf",
                                    harness_source=NN_DIR / "nn_main.c")
        run_m = qemu.run_harness(toolchain, elf_m, machine,
                                 input_payload([a[:4] for a in _as_list(x)]), plugin,
                                 work / "run_marked", timeout_s=120)
        marks = np.array([m for m in run_m.marks if m], dtype=np.float64)
        if marks.size:
            # marks[k] = instructions from the region start to layer mark k
            layers = np.diff(marks, axis=1).mean(axis=0).tolist()
    version = subprocess.run([toolchain.gcc, "-dumpversion"], capture_output=True,
                             text=True).stdout.strip()
    return TargetRun(outputs[0], outputs, run.instructions, int(stacks.max(initial=0)), layers,
                     probe.flash_bytes, probe.ram_bytes,
                     f"arm-none-eabi-gcc {version} {optimize} {' '.join(profile.cflags)}"
                     + (" -DKML_NN_DSP=0" if portable else ""))


def random_inputs(graph: Graph, n: int, seed: int = 0) -> np.ndarray:
    t = graph.input_tensors[0]
    rng = np.random.default_rng(seed)
    if t.dtype == "int8":
        return rng.integers(-128, 128, size=(n, *t.shape[1:])).astype(np.int8)
    return rng.normal(size=(n, *t.shape[1:])).astype(np.float32)


def compile_model(model: Path, target: str, out_dir: Path, *, portable: bool = False,
                  calibration: Path | None = None) -> dict:
    """``calibration`` (X.npy) quantizes a float model first (kiloml.nn.quantize_model);
    the int8 model compiled is written beside the library as model_int8.tflite."""
    from kiloml.nn.quantize_model import is_float_model, quantize_file

    model, out_dir = Path(model).absolute(), Path(out_dir).absolute()
    protected = [Protected("the model file", model, folder=False),
                 Protected("the current folder", Path.cwd(), folder=True, inside_ok=True)]
    if calibration is not None:
        calibration = Path(calibration).absolute()
        protected.append(Protected("the calibration file", calibration, folder=False))
    check_output_folder(out_dir, "model-compile", protected, name="--out")
    graph = load_model(model)
    quantized = None
    if calibration is not None:
        if not is_float_model(graph):
            raise KilomlError("--calibration quantizes float models; this one is int8 "
                              "already (compile it without --calibration)", file=model)
        quantized = quantize_file(model, calibration)
        graph = quantized.graph
    elif is_float_model(graph):
        raise KilomlError("the model is float32 and the C generator compiles int8 networks: "
                          "give --calibration X.npy (representative inputs, float32 [N, "
                          f"{', '.join(str(d) for d in graph.input_tensors[0].shape[1:])}]) "
                          "to quantize it first, or `kiloml model quantize`", file=model)
    check_int8(graph, model)
    profile = None if target == HOST else load_profile(target)
    try:
        staging = make_staging(out_dir, "model-compile")
    except OSError as exc:
        raise KilomlError(f"the output folder cannot be written: {exc.strerror or exc}",
                          file=out_dir) from None
    try:
        try:
            library, net = write_nn_library(graph, staging)
        except CodegenError as exc:
            raise KilomlError(str(exc), file=model) from None
        if profile is not None:
            check_arena(net, graph, profile, model)
        resources = measure(graph, library, net, profile, staging / "build", model,
                            portable=portable)
        if quantized is not None:
            from kiloml.nn.tflite_io import write_tflite

            (staging / "model_int8.tflite").write_bytes(write_tflite(graph))
            resources["quantized"] = {**quantized.report, "calibration": str(calibration),
                                      "model_file": "model_int8.tflite"}
        (staging / "resources.json").write_text(json.dumps(resources, indent=2) + "\n")
        shutil.rmtree(staging / "build", ignore_errors=True)
        replace_folder(staging, out_dir, "model-compile")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return resources


def measure(graph: Graph, library: FirmwareLibrary, net: NetworkC,
            profile: TargetProfile | None, work: Path, model: Path, *,
            portable: bool = False, n_inputs: int = 8) -> dict:
    x = random_inputs(graph, n_inputs)
    want = Interpreter(graph).run([x])[0]
    host = run_host(build_host_harness(library, work / "host", portable=portable), x, graph,
                    work / "host")
    weights = graph.weight_bytes()
    total_macs = sum(layer["macs"] for layer in net.layers)
    out: dict = {
        "model": str(model), "target": profile.name if profile else HOST,
        "kernels": "portable" if portable else "dsp where the core has it",
        "arena_bytes": net.plan.arena_bytes,
        "arena_lower_bound_bytes": net.plan.lower_bound_bytes,
        "planner": {"strategy": net.plan.strategy, "strategies": net.plan.strategies,
                    "in_place_tensors": len(net.plan.aliased),
                    "outputs_over_inputs": len(net.plan.overlapped)},
        "weights_bytes": weights, "constant_bytes": net.constant_bytes,
        "macs": total_macs,
        "parity": {"host": {"n": len(x), "bit_exact": int(sum(
            np.array_equal(a, b) for a, b in zip(host, want, strict=True)))}},
        "notes": list(net.notes),
    }
    layers = [dict(layer) for layer in net.layers]
    if profile is not None and profile.qemu_machine:
        run = run_target(library, graph, profile, x, work / profile.name, portable=portable)
        out["parity"][profile.name] = {"n": len(x), "bit_exact": int(sum(
            np.array_equal(a, b) for a, b in zip(run.outputs, want, strict=True)))}
        mean = float(run.instructions.mean())
        # code alone: what the library adds to flash less the network's constant tables
        # (weights, biases, multipliers, shifts, parameter structs)
        out.update(flash_bytes=run.flash_bytes,
                   code_flash_bytes=run.flash_bytes - net.constant_bytes,
                   ram_bytes=run.ram_bytes, stack_bytes=run.stack_bytes,
                   instructions_per_inference=int(run.instructions.max()),
                   instructions_mean=mean,
                   latency_us=mean * profile.cycles_per_instruction / profile.clock_hz * 1e6,
                   measured_on=f"QEMU {profile.qemu_machine}", compiler=run.compiler)
        if run.layer_instructions is not None:
            for layer, count in zip(layers, run.layer_instructions, strict=False):
                layer["instructions"] = round(count, 1)
                layer["instructions_per_mac"] = (round(count / layer["macs"], 3)
                                                 if layer["macs"] else None)
    elif profile is not None:
        out["notes"].append(f"{profile.name} has no emulator: flash, stack and instructions "
                            f"are not measured")
    out["layers"] = layers
    for where, p in out["parity"].items():
        if p["bit_exact"] != p["n"]:
            raise KilomlError(f"the generated C differs from the reference interpreter on "
                              f"{where}: {p['n'] - p['bit_exact']} of {p['n']} random inputs "
                              f"(a kiloml bug; please report it)", file=model)
    return out


def verify_model(model: Path, inputs: Path, target: str, output: Path, *,
                 portable: bool = False) -> dict:
    from kiloml.nn.load import load_inputs
    from kiloml.nn.npy_output import check_output_npy, write_npy

    check_output_npy(output, model, inputs)
    graph = load_model(model)
    check_int8(graph, model)
    x = load_inputs(inputs, graph)
    profile = None if target == HOST else load_profile(target)
    want = Interpreter(graph).run([x])[0]
    with tempfile.TemporaryDirectory(prefix="kiloml-nn-") as tmp:
        work = Path(tmp)
        try:
            library, net = write_nn_library(graph, work / "lib")
        except CodegenError as exc:
            raise KilomlError(str(exc), file=model) from None
        if profile is None:
            exe = build_host_harness(library, work / "host", portable=portable)
            got = run_host(exe, x, graph, work / "host")
            instructions = None
        else:
            check_arena(net, graph, profile, model)
            run = run_target(library, graph, profile, x, work / profile.name,
                             portable=portable, per_layer=False)
            got, instructions = run.outputs, run.instructions
    write_npy(output, got)
    equal = int(sum(np.array_equal(a, b) for a, b in zip(got, want, strict=True)))
    result = {"n": len(x), "bit_exact": equal, "target": target,
              "max_abs_diff": int(np.abs(got.astype(np.int64) - want.astype(np.int64)).max(
                  initial=0)) if got.dtype == np.int8 else float(np.abs(got - want).max(
                      initial=0.0))}
    if instructions is not None:
        result["instructions_mean"] = float(instructions.mean())
    return result
