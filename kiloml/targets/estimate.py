"""Resource estimates without compiling, from cost models calibrated on emulator runs.

What is exact and what is fitted:

- constants (flash) and static RAM: the generated C is written (Python only, nothing is
  compiled) and every top-level ``static`` / ``const`` object in it is sized from its
  type and length: tree tables, weights, filter coefficients, the ring buffer, the
  feature buffer, the scratch buffer, the decision state and the network's arena (the
  memory planner's, exact). A fitted per-core constant covers what the C library adds
  besides (newlib's reentrancy data, alignment).
- runtime code (flash): the size of every runtime and libgcc/newlib function as linked
  for the core class (measured once, in ``calibration/<core class>.json``), summed over
  the functions reachable from what the generated C calls (the call graph comes from
  the same disassembly). The generated functions themselves are a fitted linear model
  (a base, per stage, per network call and argument, per inline tree node).
- instructions per inference: per stage, a linear model in the stage's work counts
  (samples x channels for statistics, FFT butterflies and log calls for spectral and
  MFCC, tree nodes visited for forests, MACs and output elements per network kernel),
  coefficients fitted per core class with non-negative least squares on a sweep of
  synthetic pipelines and random networks measured in QEMU (`python -m
  kiloml.targets.calibrate`). Forests: the worst case (every tree's deepest path).
- stack: the deepest measured stack of the calibration cases that use each component
  (stage kind, network kernel), the largest component's figure.

Targets without an emulator (cortex-m33) reuse the closest calibrated core's file; the
``note`` says which.
"""

from __future__ import annotations

import functools
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np

from kiloml.optional import needs
from kiloml.pipeline import Pipeline
from kiloml.targets.core_class import CLOSEST_CLASS, core_class
from kiloml.targets.profiles import TargetProfile

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
# A core class without a calibration file of its own takes the closest one's.
STACK_FALLBACK_BYTES = 256


# --- calibration data ----------------------------------------------------------------


@functools.cache
def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def calibration_file(profile: TargetProfile) -> tuple[Path, str]:
    """The calibration file for the profile and how it was chosen (a note)."""
    cls = core_class(profile)
    path = CALIBRATION_DIR / f"{cls}.json"
    if path.exists():
        return path, f"calibrated on {cls}"
    known = sorted(p.stem for p in CALIBRATION_DIR.glob("*.json"))
    if not known:
        raise FileNotFoundError(f"no calibration files in {CALIBRATION_DIR}; run "
                                f"`python -m kiloml.targets.calibrate`")
    closest = CLOSEST_CLASS.get(cls)
    if closest not in known:
        # same FPU / DSP flags first, then anything
        same = [k for k in known if ("-fpu" in k) == profile.has_fpu
                and ("-dsp" in k) == profile.has_dsp_ext]
        closest = (same or known)[0]
    return (CALIBRATION_DIR / f"{closest}.json",
            f"{cls} has no emulator calibration: reuses {closest}'s coefficients")


def load_calibration(profile: TargetProfile) -> tuple[dict, str]:
    path, how = calibration_file(profile)
    return _read(path), how


# --- sizes of the generated C (exact, from the text) -----------------------------------

CTYPE_BYTES = {"float": 4, "double": 8, "int32_t": 4, "uint32_t": 4, "int16_t": 2,
               "uint16_t": 2, "int8_t": 1, "uint8_t": 1, "char": 1, "int": 4,
               "unsigned": 4}
_DEFINE = re.compile(r"^#define\s+(KML_\w+)\s+([^/\n]+)", re.M)
_DECL = re.compile(r"^(static\s+)?(const\s+)?([A-Za-z_]\w*)\s*(\*\s*const\s+|\*\s*)?"
                   r"([A-Za-z_]\w*)\s*(?:\[([^\]]*)\])?\s*(=|;)", re.M)


def _defines(*texts: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in texts:
        for name, value in _DEFINE.findall(text):
            out[name] = value.strip()
    return out


def _eval_size(expr: str, defines: dict[str, str]) -> int:
    for _ in range(4):
        expr = re.sub(r"\bKML_\w+\b", lambda m: defines.get(m.group(0), "1"), expr)
    expr = re.sub(r"(\d+)[uUlL]+", r"\1", expr)
    if not re.fullmatch(r"[\d\s+\-*/()]*", expr):
        return 1
    return int(eval(expr)) if expr.strip() else 1


def _initializer(text: str, start: int) -> str:
    """The ``{...}`` after position ``start`` (balanced braces, strings skipped)."""
    i = text.index("{", start)
    depth, j, in_str = 0, i, False
    while j < len(text):
        ch = text[j]
        if in_str:
            if ch == "\\":
                j += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i:j + 1]
        j += 1
    return text[i:]


def c_object_sizes(source: str, defines: dict[str, str]) -> dict:
    """Flash and RAM of the top-level objects of a generated C file: const objects are
    flash, others RAM (and flash too when initialized: .data)."""
    flash = ram = 0
    n_objects = 0
    for m in _DECL.finditer(source):
        if "(" in source[m.start():m.end()]:
            continue
        _, const, ctype, pointer, _, dims, end = m.groups()
        if ctype in ("return", "typedef", "extern", "struct", "enum"):
            continue
        count = _eval_size(dims, defines) if dims is not None else 1
        init = _initializer(source, m.end() - 1) if end == "=" else ""
        if pointer:
            size = 4 * count
            if ctype == "char" and init:  # an array of string literals
                size += sum(len(s.encode().decode("unicode_escape")) + 1
                            for s in re.findall(r'"((?:[^"\\]|\\.)*)"', init))
        elif ctype in CTYPE_BYTES:
            size = CTYPE_BYTES[ctype] * count
        else:  # a parameter struct: 4 bytes per initializer value (int32, float, pointer)
            flat = init.replace("{", ",").replace("}", ",")
            size = 4 * max(1, len([v for v in flat.split(",") if v.strip()]))
        n_objects += 1
        is_const = bool(const) or (pointer is not None and "const" in pointer)
        if is_const:
            flash += size
        else:
            ram += size
            if init:
                flash += size
    return {"constant_flash_bytes": flash, "static_ram_bytes": ram, "objects": n_objects}


_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_FUNC_DEF = re.compile(r"^[A-Za-z_][\w \*]*?\b([A-Za-z_]\w*)\s*\([^;{]*\)\s*\{", re.M)


def called_functions(source: str) -> set[str]:
    """Names the C text calls that it does not define."""
    defined = set(_FUNC_DEF.findall(source))
    return {n for n in _CALL.findall(source) if n not in defined}


def generated_pipeline_c(pipeline: Pipeline) -> dict:
    """Write the pipeline's C library into a temporary folder (nothing is compiled) and
    return its model source, defines and the network's emitted form if any."""
    from kiloml.codegen.library import write_library

    with tempfile.TemporaryDirectory(prefix="kiloml-estimate-") as tmp:
        lib = write_library(pipeline, Path(tmp), prefix="kml")  # the names it is fitted on
        source = (lib.directory / "kiloml_model.c").read_text()
        header = (lib.directory / "kiloml_model.h").read_text()
        config = (lib.directory / "kml_config.h").read_text()
    return {"source": source, "defines": _defines(header, config), "n_features": lib.n_features,
            "network": getattr(pipeline.model, "network_c", None)}


# --- cost terms (shared by the fit and the estimate) ------------------------------------


def feature_stage_terms(stage, window_rows: int, channels: int) -> tuple[str, dict[str, float]]:
    """(group, work counts) of one feature stage's instructions."""
    kind = stage.kind
    if kind == "statistics":
        return "statistics", {"sample_channel": window_rows * channels, "channel": channels,
                              "output": len(stage.statistics) * channels, "call": 1}
    if kind == "raw":
        return "raw", {"sample_channel": window_rows * channels, "call": 1}
    if kind == "scale":
        n = len(stage.offset) if getattr(stage, "offset", None) is not None else 0
        return "scale", {"feature": n, "call": 1}
    if kind == "spectral":
        n = stage.cfg.fft_length
        bins = n // 2 + 1
        ch = len(stage.selected)
        frames = stage.n_frames
        what = set(stage.what)
        log = bool(stage.cfg.log)
        logs = (stage.cfg.n_bands if "band_energies" in what and log else 0) + \
            (stage.cfg.n_peaks if "peaks" in what and log else 0) + \
            (bins if "entropy" in what else 0) + (bins if "flatness" in what else 0)
        scans = sum(f in what for f in ("band_energies", "peaks", "centroid", "entropy",
                                        "flatness"))
        return "spectral", {"butterfly": ch * frames * n / 2 * math.log2(n),
                            "frame_sample": ch * frames * n, "bin": ch * bins,
                            "scan_bin": ch * bins * scans, "log": ch * logs,
                            "channel": ch, "call": 1}
    if kind in ("mfcc", "mfe"):
        n = stage.cfg.fft_length
        ch = len(stage.selected)
        frames = stage.n_frames * ch
        nf = stage.cfg.n_filters
        return "mfcc", {"butterfly": frames * n / 2 * math.log2(n),
                        "frame_sample": frames * n, "weight": frames * len(stage.weights),
                        "log": frames * nf,
                        "dct": frames * nf * stage.cfg.n_coefficients if kind == "mfcc" else 0,
                        "frame": frames, "call": 1}
    return f"other:{kind}", {"call": 1}


TREE_VOTES = {0: "votes", 1: "fractions", 2: "fractions", 3: "weights"}


def tree_group(tables, c_style: str) -> str:
    """The cost group of a forest's kernel: integer votes (pure leaves), integer leaf
    weights (compacted leaves, score_mode 3) or exact fractions."""
    return f"tree.{c_style}.{TREE_VOTES[tables.score_mode]}"


def tree_terms(tables, nodes_visited: float) -> dict[str, float]:
    """Work counts of one forest inference: nodes visited (float32 or int16 comparisons),
    the features quantized first with int16 thresholds (kml_forest_quantize: a subtract,
    a multiply and a floor-clamp each, soft-float on cores without an FPU), per tree and
    per tree x class (a mixed leaf's row added)."""
    mixed = tables.score_mode != 0
    quantized = bool(getattr(tables, "quantized", False))
    return {"node": 0.0 if quantized else nodes_visited,
            "qnode": nodes_visited if quantized else 0.0,
            "input": float(tables.n_inputs) if quantized else 0.0,
            "quantize": 1.0 if quantized else 0.0,
            "tree": tables.n_trees,
            "tree_class": tables.n_trees * tables.n_classes if mixed else 0,
            "class": tables.n_classes, "call": 1}


def forest_stack_arrays(tables, c_style: str) -> int:
    """Bytes of the forest kernel's stack arrays: the uint16 leaf per tree (the table walk
    and the inline fraction vote) and the int16 quantized features."""
    payloads = c_style == "table" or tables.score_mode in (1, 2)
    quantized = bool(getattr(tables, "quantized", False))
    return 2 * tables.n_trees * payloads + 2 * tables.n_inputs * quantized


def tree_depths(estimators) -> list[int]:
    """Each tree's deepest path (internal nodes on it)."""
    return [int(e.tree_.max_depth) for e in estimators]


def nn_op_group(graph, op, call) -> str:
    return "nn." + call.kernel + (".portable" if call.portable_reason else "")


def nn_op_terms(graph, op, call) -> dict[str, float]:
    from kiloml.nn.analysis import op_macs

    t = graph.tensors
    out = int(t[op.outputs[0]].size)
    inp = int(t[op.inputs[1] if op.kind == "SPLIT" else op.inputs[0]].size)
    window = 0
    if op.kind.endswith("POOL_2D"):
        window = out * int(op.options.get("filter_h", 1)) * int(op.options.get("filter_w", 1))
    if call.no_op:
        return {"call": 0.0}
    terms = {"mac": float(op_macs(graph, op)), "window": float(window), "out": float(out),
             "in": float(inp), "call": 1.0}
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        shape = t[op.outputs[0]].shape
        pixels = int(np.prod(shape[:-1]))
        w = t[op.inputs[1]].shape
        terms["pixel"] = float(pixels)
        # the input values gathered per output pixel (im2col for conv)
        terms["gather"] = float(pixels * w[1] * w[2] * (w[3] if op.kind == "CONV_2D" else 1))
    return terms


def nn_calls(graph):
    from kiloml.codegen.nn_calls import kernel_call
    from kiloml.nn.op_params import prepare

    return [kernel_call(graph, op, prepare(graph, op)) for op in graph.ops]


def _apply(coefs: dict[str, dict[str, float]], group: str, terms: dict[str, float],
           missing: list[str]) -> float:
    table = coefs.get(group)
    if table is None:
        # an unseen kernel: the generic network kernel's coefficients
        table = coefs.get("nn.generic") if group.startswith("nn.") else None
        if table is None:
            missing.append(group)
            return 0.0
        missing.append(f"{group} (generic coefficients)")
    return float(sum(table.get(k, 0.0) * v for k, v in terms.items()))


# --- flash of the runtime code (function table + call graph) --------------------------


def forest_variant(integer_votes: bool, quantized: bool) -> str:
    """The key of a forest kernel build's call graph (kml_config.h selects the code)."""
    return f"{'integer' if integer_votes else 'exact'}-{'int16' if quantized else 'float32'}"


def runtime_code_bytes(entries: set[str], flash_cal: dict, *, integer_votes: bool = False,
                       quantized: bool | None = None) -> tuple[int, list[str]]:
    sizes: dict[str, int] = flash_cal["functions"]
    calls: dict[str, list[str]] = flash_cal["calls"]
    variants = flash_cal.get("calls_forest", {})
    if quantized is not None and forest_variant(integer_votes, quantized) in variants:
        # the forest kernels' callees as built for this variant: float32 thresholds never
        # reach kml_forest_quantize, integer votes never the exact float64 vote
        calls = {**calls, **variants[forest_variant(integer_votes, quantized)]}
    elif integer_votes:  # forests without mixed leaves never reach the exact float64 vote
        calls = {**calls, **flash_cal.get("calls_integer_votes", {})}
    seen: set[str] = set()
    stack = [e for e in entries if e in sizes]
    while stack:
        f = stack.pop()
        if f in seen:
            continue
        seen.add(f)
        stack.extend(c for c in calls.get(f, []) if c in sizes and c not in seen)
    return int(sum(sizes[f] for f in seen)), sorted(seen)


# --- the estimate ---------------------------------------------------------------------


def network_terms(graph, coefs: dict, missing: list[str]) -> tuple[float, list[str], int, int]:
    """Instructions of one invoke, kernels used, calls and arguments in the invoke."""
    instructions = 0.0
    kernels: list[str] = []
    n_calls = n_args = 0
    for op, call in zip(graph.ops, nn_calls(graph), strict=True):
        group = nn_op_group(graph, op, call)
        terms = nn_op_terms(graph, op, call)
        if any(terms.values()):  # an aliased reshape runs no code
            instructions += _apply(coefs, group, terms, missing)
        kernels.append(group)
        if not call.no_op:
            n_calls += 1
            n_args += len(call.args)
    return instructions, kernels, n_calls, n_args


def _stack(cal: dict, components: list[str]) -> int:
    table = cal["stack"]
    known = [table[c] for c in components if c in table]
    return int(max(known)) if known else int(table.get("default", STACK_FALLBACK_BYTES))


def _finish(profile: TargetProfile, flash: float, ram: float, stack: int, instructions: float,
            note: str, detail: dict | None = None) -> dict:
    instructions = round(instructions)
    out = {
        "flash_bytes": round(flash),
        "ram_bytes": round(ram),
        "stack_bytes": int(stack),
        "instructions_per_inference": instructions,
        "latency_us": round(profile.latency_us(instructions), 3),
        "energy_uj": round(profile.energy_uj(instructions), 4),
        "note": note,
    }
    if detail is not None:
        out["detail"] = detail
    return out


def _note(cal: dict, how: str, missing: list[str]) -> str:
    fitted = cal.get("fitted", {})
    text = (f"calibrated estimate ({how}; coefficients fitted {fitted.get('date', '?')} on "
            f"{fitted.get('cases', '?')} synthetic pipelines and networks measured on "
            f"{fitted.get('machine', '?')}, {fitted.get('compiler', '?')})")
    if missing:
        text += "; no coefficients for: " + ", ".join(sorted(set(missing)))
    return text


def estimate_pipeline_detail(pipeline: Pipeline, profile: TargetProfile,
                             tree_nodes: float | None = None, cal: dict | None = None) -> dict:
    """The estimate with its parts (used by estimate_resources and the calibration)."""
    how = "given calibration"
    if cal is None:
        cal, how = load_calibration(profile)
    coefs = cal["instructions"]
    missing: list[str] = []
    gen = generated_pipeline_c(pipeline)
    objects = c_object_sizes(gen["source"], gen["defines"])
    rows, ch = pipeline.window_samples, pipeline.n_channels

    parts: dict[str, float] = {"framework": float(coefs.get("framework", {}).get("call", 0.0))}
    components = ["framework"]
    for i, stage in enumerate(pipeline.features):
        group, terms = feature_stage_terms(stage, rows, ch)
        parts[f"stage {i}: {stage.kind}"] = _apply(coefs, group, terms, missing)
        components.append(group)
    model = pipeline.model
    code_terms: dict[str, float] = {"base": 1.0, "feature_stage": len(pipeline.features),
                                    "preprocess_stage": len(pipeline.preprocess),
                                    "class": pipeline.n_classes, "channel": ch}
    if hasattr(model, "graph") and getattr(model, "graph", None) is not None:
        graph = model.graph
        invoke, kernels, n_calls, n_args = network_terms(graph, coefs, missing)
        n_in = int(gen["n_features"])
        glue = _apply(coefs, "nn.model", {"input": n_in, "class": pipeline.n_classes,
                                          "call": 1}, missing)
        parts["model"] = invoke + glue
        components += ["nn.model"] + [f"{k}@pipeline" for k in kernels]
        code_terms.update(nn_model=1.0, nn_call=n_calls, nn_arg=n_args)
    elif getattr(model, "kind", None) == "linear":
        from kiloml.targets.linear_cost import linear_instructions

        linear_tables = model.compile(int(gen["n_features"]))
        parts["model"] = linear_instructions(profile, linear_tables)
        components.append("linear")
        code_terms.update(linear=1.0)
    else:
        tables = model.tables or model.compile(int(gen["n_features"]))
        style = model.config.c_style
        nodes = float(sum(tree_depths(model.estimators))) if tree_nodes is None else tree_nodes
        group = tree_group(tables, style)
        parts["model"] = _apply(coefs, group, tree_terms(tables, nodes), missing)
        components.append(group)
        quantized = bool(getattr(tables, "quantized", False))
        if style == "inline":
            code_terms.update({"tree_inline_qnode" if quantized else "tree_inline_node":
                               tables.n_nodes,
                               "tree_inline_leaf": tables.n_nodes + tables.n_trees})
        code_terms.update(tree_fractions=float(tables.score_mode in (1, 2)),
                          tree_weights=float(tables.score_mode == 3),
                          tree_quantized=float(quantized))
    instructions = sum(parts.values())

    flash_cal = cal["flash"]
    kind = "nn" if "nn_model" in code_terms else "linear" if "linear" in code_terms \
        else "trees"
    entries = called_functions(gen["source"]) | set(flash_cal.get(f"implicit_{kind}", []))
    if kind == "linear":  # what kml_linear calls (it is not in the function table itself)
        from kiloml.targets.linear_cost import LINEAR_CALLEES

        entries |= set(LINEAR_CALLEES)
    votes = kind == "trees" and code_terms.get("tree_fractions", 1.0) == 0.0
    runtime, _ = runtime_code_bytes(
        entries, flash_cal, integer_votes=votes,
        quantized=bool(code_terms.get("tree_quantized")) if kind == "trees" else None)
    if kind == "linear":  # kml_linear's own functions, measured per core class
        from kiloml.targets.linear_cost import linear_code_bytes

        runtime += linear_code_bytes(profile)
    generated = sum(flash_cal["generated_code"].get(k, 0.0) * v for k, v in code_terms.items())
    flash = objects["constant_flash_bytes"] + runtime + generated
    ram = objects["static_ram_bytes"] + cal["ram"].get("base", 0.0)
    stack = _stack(cal, components)
    if kind == "linear":
        from kiloml.targets.linear_cost import linear_stack_bytes

        stack = max(stack, linear_stack_bytes(profile, linear_tables))
    if kind == "trees" and "forest_arrays_offset" in cal["stack"]:
        # the forest path's frame grows with its arrays (trees, quantized features)
        stack = max(stack, int(cal["stack"]["forest_arrays_offset"]
                               + forest_stack_arrays(tables, style)))
    return {"flash": flash, "ram": ram, "stack": stack, "instructions": instructions,
            "note": _note(cal, how, missing),
            "parts": {"constant_flash_bytes": objects["constant_flash_bytes"],
                      "runtime_code_bytes": runtime, "generated_code_bytes": round(generated),
                      "static_ram_bytes": objects["static_ram_bytes"],
                      "instructions_by_stage": {k: round(v) for k, v in parts.items()}},
            "code_terms": code_terms, "entries": sorted(entries), "components": components}


def estimate_resources(pipeline: Pipeline, profile: TargetProfile, n_features: int) -> dict:
    """Flash, static RAM, stack and instructions per inference (the worst case: every
    tree's deepest path) of the pipeline's C library on the profile, without compiling.
    Keys: flash_bytes, ram_bytes, stack_bytes, instructions_per_inference, latency_us,
    energy_uj, note (what the coefficients were calibrated on)."""
    d = estimate_pipeline_detail(pipeline, profile)
    return _finish(profile, d["flash"], d["ram"], d["stack"], d["instructions"], d["note"])


def estimate_graph_detail(graph, profile: TargetProfile, cal: dict | None = None) -> dict:
    from kiloml.codegen.nn_library import write_nn_library

    how = "given calibration"
    if cal is None:
        cal, how = load_calibration(profile)
    coefs = cal["instructions"]
    missing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kiloml-estimate-") as tmp:
        lib, net = write_nn_library(graph, Path(tmp))
        source = (lib.directory / "kiloml_nn.c").read_text()
        header = (lib.directory / "kiloml_nn.h").read_text()
    objects = c_object_sizes(source, _defines(header))
    invoke, kernels, n_calls, n_args = network_terms(graph, coefs, missing)
    instructions = invoke + float(coefs.get("nn.graph", {}).get("call", 0.0))
    flash_cal = cal["flash"]
    entries = called_functions(source)
    runtime, _ = runtime_code_bytes(entries, flash_cal)
    terms = {"base": 1.0, "nn_call": n_calls, "nn_arg": n_args,
             "io": len(graph.inputs) + len(graph.outputs)}
    generated = sum(flash_cal["graph_code"].get(k, 0.0) * v for k, v in terms.items())
    flash = objects["constant_flash_bytes"] + runtime + generated
    ram = objects["static_ram_bytes"] + cal["ram"].get("graph_base", 0.0)
    stack = _stack(cal, ["nn.graph", *kernels])
    kernels = list(kernels)
    return {"flash": flash, "ram": ram, "stack": stack, "instructions": instructions,
            "note": _note(cal, how, missing), "arena_bytes": net.plan.arena_bytes,
            "code_terms": terms, "kernels": kernels, "components": ["nn.graph", *kernels],
            "parts": {"constant_flash_bytes": objects["constant_flash_bytes"],
                      "runtime_code_bytes": runtime, "generated_code_bytes": round(generated),
                      "static_ram_bytes": objects["static_ram_bytes"]}}


def estimate_graph(graph, profile: TargetProfile) -> dict:
    """A standalone int8 network (`kiloml model compile`'s library): the same keys as
    estimate_resources, plus arena_bytes (the planner's, exact)."""
    d = estimate_graph_detail(graph, profile)
    out = _finish(profile, d["flash"], d["ram"], d["stack"], d["instructions"], d["note"])
    out["arena_bytes"] = d["arena_bytes"]
    return out


# --- before training ---------------------------------------------------------------------


def untrained_network(config, n_classes: int, sample_shape: tuple[int, ...], seed: int = 0):
    """The NeuralModel a template config makes, with random weights quantized on random
    calibration data: the same int8 graph structure (weights, arena, MACs) as after
    training, in a fraction of a second."""
    with needs("torch", "estimating a network before training"):
        import torch

    from kiloml.models.neural import NeuralModel
    from kiloml.nn.template_params import template_params
    from kiloml.nn.torch_export import to_graph
    from kiloml.nn.torch_models import build_model, fit_standardization

    model = NeuralModel(config, n_classes, tuple(sample_shape))
    torch.manual_seed(seed)
    module = build_model(config.kind, model.sample_shape, n_classes,
                         **{**template_params(config), "standardize": "external"})
    module.eval()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, *model.sample_shape)).astype(np.float32)
    fit_standardization(module, x)
    model.input_mean = module.norm.mean.detach().numpy().astype(np.float32)
    model.input_std = module.norm.std.detach().numpy().astype(np.float32)
    model.float_graph = to_graph(module, model.sample_shape)
    model.float_graph.name = config.kind
    model._quantize(x)
    return model


def estimate_before_training(pipeline: Pipeline, model_config, profile: TargetProfile,
                             n_features: int, n_train_windows: int,
                             probe: tuple[np.ndarray, np.ndarray] | None = None,
                             probe_trees: int = 4) -> dict:
    """The estimate for a candidate before anything is trained: ``pipeline.features`` are
    built but not fitted and ``pipeline.model`` is None. Trees: an upper bound from
    n_estimators x min(2**max_depth - 1, n_train_windows / min_samples_leaf) internal nodes
    (max_depth None: n_train_windows), each tree walked to that depth. Networks
    (mlp, cnn1d, dscnn): the untrained network's int8 graph (random weights, random
    calibration data), so weights, arena and MACs are those of the trained network.
    With ``probe`` (the training windows' features and labels), trees are instead
    predicted from the first ``probe_trees`` trees of the forest grown on them (a
    fraction of one training), extrapolated linearly to n_estimators: a tree's size
    depends on the data, and the bound is often several times too large to reject on.
    Same keys as estimate_resources."""
    from kiloml.project import LINEAR_KINDS, NeuralModelConfig

    n_classes = pipeline.n_classes
    if isinstance(model_config, NeuralModelConfig):
        return _before_training_network(pipeline, model_config, profile, n_features)
    if model_config.kind in LINEAR_KINDS:
        from kiloml.targets.linear_cost import untrained_linear

        model = untrained_linear(model_config, n_classes, n_features)
        d = estimate_pipeline_detail(_unfitted_features_copy(pipeline, model), profile)
        return _finish(profile, d["flash"], d["ram"], d["stack"], d["instructions"],
                       d["note"] + "; before training: the tables' sizes are exact (one "
                                   "coefficient per feature and score), the instructions "
                                   "the fast path's")
    if probe is not None:
        return _probed_trees(pipeline, model_config, profile, probe, max(2, probe_trees))
    return _before_training_trees(pipeline, model_config, profile, n_features,
                                  n_train_windows, n_classes)


def _unfitted_features_copy(pipeline: Pipeline, model) -> Pipeline:
    """A shallow copy with the model set and vector stages (scaling) given placeholder
    parameters of the right size, so the C can be generated."""
    import copy

    from kiloml.dsp.scaling import Scale

    p = copy.copy(pipeline)
    feats = []
    n = 0
    for stage in pipeline.features:
        if stage.reads == "window":
            n += len(stage.feature_names(list(pipeline.channels)))
            feats.append(stage)
        elif isinstance(stage, Scale) and getattr(stage, "offset", None) is None:
            s = copy.copy(stage)
            s.fit(np.random.default_rng(0).normal(size=(4, n)).astype(np.float32))
            feats.append(s)
        else:
            feats.append(stage)
    p.features = feats
    p.model = model
    return p


def _before_training_network(pipeline: Pipeline, cfg, profile: TargetProfile,
                             n_features: int) -> dict:
    from kiloml.dsp.raw import RawWindow

    p = pipeline
    if cfg.reads == "window":
        shape: tuple[int, ...] = (pipeline.window_samples, pipeline.n_channels)
        features = [RawWindow(pipeline.window_samples, pipeline.n_channels)]
    else:
        features = list(pipeline.features)
        if cfg.kind == "dscnn":
            st = [s for s in features if s.reads == "window"]
            values = st[0].output_shape[1] if st and st[0].output_shape else n_features
            shape = (n_features // values, values)
        else:
            shape = (n_features,)
    model = untrained_network(cfg, pipeline.n_classes, shape)
    import copy

    p = copy.copy(pipeline)
    p.features = features
    p = _unfitted_features_copy(p, model)
    d = estimate_pipeline_detail(p, profile)
    out = _finish(profile, d["flash"], d["ram"], d["stack"], d["instructions"],
                  d["note"] + "; before training: the untrained network's int8 graph")
    return out


def _probed_trees(pipeline: Pipeline, cfg, profile: TargetProfile,
                  probe: tuple[np.ndarray, np.ndarray], probe_trees: int) -> dict:
    """Trees predicted from a probe: the first k trees of the forest (scikit-learn seeds
    tree i the same whatever n_estimators is), extrapolated from 1 and k trees (flash and
    instructions grow with each tree; RAM and stack do not)."""
    from kiloml.models.trees import TreeModel

    x, y = probe
    n = 1 if cfg.kind == "decision_tree" else cfg.n_estimators
    k = min(n, probe_trees)

    def grown(trees: int) -> tuple[dict, TreeModel]:
        c = cfg if cfg.kind == "decision_tree" else cfg.model_copy(update={"n_estimators": trees})
        model = TreeModel(c, pipeline.n_classes).fit(x, y)
        return estimate_pipeline_detail(_unfitted_features_copy(pipeline, model), profile), model

    dk, model_k = grown(k)
    if k == n:
        return _finish(profile, dk["flash"], dk["ram"], dk["stack"], dk["instructions"],
                       dk["note"] + "; before training: the model grown on the training "
                                    "windows once (no cross-validation yet)")
    d1, _ = grown(1)

    def code(d: dict) -> float:
        return d["parts"]["runtime_code_bytes"]

    def extrapolate(a: float, b: float) -> float:
        return b + (n - k) * (b - a) / (k - 1)

    # Tables grow with each tree; the runtime code is a step: probe trees with pure leaves
    # vote in integers, but one mixed leaf among the other trees brings in the fraction
    # vote and its exact float64 fallback. Count that code unless leaves are integers.
    runtime = code(dk)
    tables = model_k.tables or model_k.compile(x.shape[1])
    if tables.score_mode == 0 and getattr(cfg, "leaves", "exact") == "exact":
        mixed = TreeModel(cfg, pipeline.n_classes)
        mixed.tables = synthetic_tables(1, 1, pipeline.n_classes, x.shape[1])
        p = _unfitted_features_copy(pipeline, mixed)
        runtime = max(runtime, code(estimate_pipeline_detail(p, profile, tree_nodes=1.0)))
    flash = extrapolate(d1["flash"] - code(d1), dk["flash"] - code(dk)) + runtime
    return _finish(profile, flash, dk["ram"], dk["stack"],
                   extrapolate(d1["instructions"], dk["instructions"]),
                   dk["note"] + f"; before training: predicted from the first {k} of {n} "
                                f"trees grown on the training windows")


def _before_training_trees(pipeline: Pipeline, cfg, profile: TargetProfile, n_features: int,
                           n_train_windows: int, n_classes: int) -> dict:
    """Upper bound: n_estimators trees with the most internal nodes the config allows,
    every leaf a distinct mixed leaf, every inference walking each tree to full depth."""
    from kiloml.models.trees import TreeModel

    cap = max(1, n_train_windows // max(1, cfg.min_samples_leaf))
    depth = cfg.max_depth if cfg.max_depth is not None else max(1, n_train_windows)
    internal = int(min(2 ** min(depth, 40) - 1, cap))
    walk = min(depth, internal)  # the deepest path has at most `internal` nodes
    trees = 1 if cfg.kind == "decision_tree" else cfg.n_estimators
    model = TreeModel(cfg, n_classes)
    model.tables = synthetic_tables(trees, internal, n_classes, n_features)
    p = _unfitted_features_copy(pipeline, model)
    d = estimate_pipeline_detail(p, profile, tree_nodes=float(walk * trees))
    return _finish(profile, d["flash"], d["ram"], d["stack"], d["instructions"],
                   d["note"] + f"; before training: upper bound, {trees} trees x {internal} "
                               f"internal nodes, paths of {walk} nodes")


def synthetic_tables(trees: int, internal: int, n_classes: int, n_features: int):
    """ForestTables of `trees` distinct trees with `internal` internal nodes each and every
    leaf mixed (distinct class fractions, distinct thresholds): as large as tables of
    trees of that size get."""
    from sklearn.tree import DecisionTreeClassifier

    from kiloml.models.forest import forest_tables

    n_leaves = internal + 1
    rng = np.random.default_rng(0)
    estimators = []
    for _ in range(trees):
        values = np.sort(rng.normal(size=n_leaves)).astype(np.float32)
        counts = rng.integers(1, 30, size=(n_leaves, 2))
        xs = np.repeat(values, counts.sum(axis=1))
        first = np.arange(n_leaves) % n_classes
        second = (first + 1) % n_classes
        ys = np.concatenate([np.concatenate([np.full(a, f), np.full(b, s)])
                             for (a, b), f, s in zip(counts, first, second, strict=True)])
        # one column: the tables' size does not depend on which feature a node reads
        # (n_features sets the index width), and fitting on one is n_features times faster
        x = xs.reshape(-1, 1)
        est = DecisionTreeClassifier(max_leaf_nodes=max(2, n_leaves), random_state=0)
        estimators.append(est.fit(x, ys))
    return forest_tables(estimators, n_classes, n_features)
