"""Calibrate the resource estimator: measure a sweep of synthetic pipelines and random int8
networks on every emulated core class, fit the cost models' coefficients, write
``kiloml/targets/calibration/<core class>.json``.

    python -m kiloml.targets.calibrate [--targets cortex-m4f,cortex-m0plus] [--jobs 2]

The sweep never includes the examples or the conformance fixtures: bench/estimator.py
evaluates on those, so its error is measured on pipelines the fit has not seen.
Measurements are cached (``--cache``, default ~/.cache/kiloml/calibrate) so a re-run only
refits; ``--fresh`` measures again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import statistics
import sys
import traceback
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from kiloml.targets.estimate import (
    CALIBRATION_DIR,
    core_class,
    estimate_graph_detail,
    estimate_pipeline_detail,
    feature_stage_terms,
    forest_stack_arrays,
    forest_variant,
    nn_calls,
    nn_op_group,
    nn_op_terms,
    tree_group,
    tree_terms,
)

CALIBRATED_TARGETS = ("cortex-m4f", "cortex-m0plus", "cortex-m3", "cortex-m7")
N_WINDOWS = 8
DEFAULT_CACHE = Path(os.environ.get("KILOML_CALIBRATE_CACHE",
                                    Path.home() / ".cache" / "kiloml" / "calibrate"))

ALL_STATS = ["mean", "std", "min", "max", "rms", "peak_to_peak", "zero_crossing_rate",
             "mean_crossing_rate", "skewness", "kurtosis"]
SMALL_TREE = {"kind": "decision_tree", "max_depth": 2}


def _stats(names=None) -> dict:
    return {"stage": "statistics", **({"statistics": names} if names else {})}


def sweep() -> list[dict]:
    """The synthetic configurations (deterministic)."""
    cases: list[dict] = []

    def add(name: str, **kw) -> None:
        base = {"name": name, "rate": 50.0, "rows": 64, "channels": 3, "classes": 3,
                "features": [_stats()], "model": SMALL_TREE, "preprocess": []}
        base.update(kw)
        cases.append(base)

    # statistics: window length, channels, statistic sets
    for rows, ch, names in [(16, 1, None), (64, 3, None), (200, 6, None), (128, 2, ["mean"]),
                            (100, 4, ["std", "rms", "kurtosis"]), (40, 6, ALL_STATS[:5]),
                            (256, 1, None)]:
        add(f"stats_t{rows}_c{ch}_{len(names or ALL_STATS)}", rows=rows, channels=ch,
            features=[_stats(names)])
    # spectral: FFT length, frames, channels, features
    for rows, ch, n, feats, bands, peaks, log in [
            (64, 1, 32, None, 4, 2, True), (128, 3, 64, None, 8, 3, True),
            (256, 2, 128, ["band_energies"], 16, 1, True),
            (200, 1, 64, ["peaks", "centroid"], 4, 4, False),
            (100, 4, 16, ["entropy", "flatness"], 2, 1, True),
            (512, 1, 256, None, 6, 2, True), (96, 6, 32, ["band_energies", "peaks"], 3, 2, False)]:
        spec = {"stage": "spectral", "fft_length": n, "n_bands": bands, "n_peaks": peaks,
                "log": log, **({"features": feats} if feats else {})}
        add(f"spectral_t{rows}_c{ch}_n{n}_{'-'.join(feats or ['all'])}", rows=rows, channels=ch,
            features=[spec])
    # mfcc / mfe at 8 kHz
    for rows, n, frame_ms, stride_ms, filters, coefs, kind in [
            (2000, 128, 16, 16, 16, 8, "mfcc"), (4000, 256, 32, 32, 20, 10, "mfcc"),
            (3000, 512, 64, 32, 32, 13, "mfcc"), (2000, 256, 25, 10, 24, 0, "mfe"),
            (4000, 128, 16, 20, 12, 12, "mfcc")]:
        spec = {"stage": kind, "fft_length": n, "frame_ms": frame_ms,
                "frame_stride_ms": stride_ms, "n_filters": filters,
                **({"n_coefficients": coefs} if kind == "mfcc" else {})}
        add(f"{kind}_t{rows}_n{n}_f{filters}_c{coefs}", rate=8000.0, rows=rows, channels=1,
            features=[spec])
    # trees: count, depth, classes, C form, leaf fractions
    for trees, depth, k, style, kind, extra in [
            (1, 3, 2, "table", "decision_tree", {}), (5, 6, 4, "table", "random_forest", {}),
            (20, 10, 3, "table", "random_forest", {}), (50, 4, 8, "table", "random_forest", {}),
            (10, None, 5, "table", "extra_trees", {}),
            (8, 8, 6, "table", "random_forest", {"class_weight": "balanced"}),
            (15, None, 3, "table", "random_forest", {"min_samples_leaf": 5}),
            (5, 5, 3, "inline", "random_forest", {}), (20, 8, 4, "inline", "extra_trees", {}),
            (3, None, 2, "inline", "random_forest", {})]:
        model = {"kind": kind, "n_estimators": trees, "max_depth": depth, "c_style": style,
                 **extra}
        add(f"trees_{kind}_{trees}x{depth}_k{k}_{style}{'_' + '_'.join(extra) if extra else ''}",
            rows=32, channels=3, classes=k, model=model)
    # compacted forests (int16 thresholds: the features quantized per inference; uint8 /
    # uint16 leaves: integer leaf weights, score_mode 3), both C forms
    for trees, depth, k, style, kind, thr, leaves, rows, ch in [
            (10, 6, 4, "table", "random_forest", "int16", "uint8", 32, 3),
            (30, 8, 3, "table", "random_forest", "int16", "uint8", 64, 6),
            (6, 10, 6, "table", "extra_trees", "int16", "uint16", 48, 2),
            (15, 5, 5, "table", "random_forest", "float32", "uint8", 32, 4),
            (12, None, 4, "table", "extra_trees", "int16", "exact", 40, 5),
            (8, 7, 3, "table", "random_forest", "int16", "exact", 32, 3),
            (5, 6, 4, "inline", "random_forest", "int16", "uint8", 32, 3),
            (12, 8, 3, "inline", "extra_trees", "int16", "uint16", 64, 5),
            (20, 6, 4, "inline", "random_forest", "int16", "uint8", 48, 6),
            (8, 5, 5, "inline", "random_forest", "float32", "uint8", 32, 2),
            (4, None, 3, "inline", "random_forest", "int16", "exact", 48, 4)]:
        model = {"kind": kind, "n_estimators": trees, "max_depth": depth, "c_style": style,
                 "thresholds": thr, "leaves": leaves}
        add(f"trees_compact_{kind}_{trees}x{depth}_k{k}_{style}_{thr}_{leaves}_c{ch}",
            rows=rows, channels=ch, classes=k, model=model)
    # scaling and preprocessing
    add("scale_standard", features=[_stats(), {"stage": "scale", "method": "standard"}],
        model={"kind": "random_forest", "n_estimators": 4, "max_depth": 4})
    add("pre_emphasis_filter", preprocess=[{"stage": "pre_emphasis", "coefficient": 0.9},
                                           {"stage": "filter", "type": "lowpass",
                                            "cutoff_hz": 10.0, "order": 4}])
    # networks inside a pipeline
    for name, model, feats, rows, ch, rate in [
            ("mlp_32_16", {"kind": "mlp", "hidden": [32, 16]}, [_stats()], 64, 3, 50.0),
            ("mlp_64", {"kind": "mlp", "hidden": [64]}, [_stats()], 64, 6, 50.0),
            ("mlp_16x3", {"kind": "mlp", "hidden": [16, 16, 16]}, [_stats(["mean", "std"])],
             32, 3, 50.0),
            ("cnn1d_8_16", {"kind": "cnn1d", "filters": [8, 16], "kernel_size": 3},
             None, 64, 3, 50.0),
            ("cnn1d_16_32_pool", {"kind": "cnn1d", "filters": [16, 32], "kernel_size": 5,
                                  "pool": True}, None, 128, 6, 50.0),
            ("cnn1d_12_24_24", {"kind": "cnn1d", "filters": [12, 24, 24], "kernel_size": 7,
                                "stride": 1}, None, 96, 2, 50.0),
            ("dscnn_mfe", {"kind": "dscnn", "filters": [8, 16]},
             [{"stage": "mfe", "fft_length": 128, "frame_ms": 16, "frame_stride_ms": 16,
               "n_filters": 16}], 2000, 1, 8000.0)]:
        add(f"nn_{name}", rows=rows, channels=ch, rate=rate, features=feats or [],
            model={**model, "epochs": 1})
    # standalone int8 graphs
    for seed in range(8):
        cases.append({"name": f"chain_{seed}", "graph": "chain", "seed": seed})
    for kind, seeds in [("FULLY_CONNECTED", 3), ("CONV_2D", 2), ("DEPTHWISE_CONV_2D", 2),
                        ("SOFTMAX", 2), ("MEAN", 2), ("ADD", 1), ("MUL", 1),
                        ("AVERAGE_POOL_2D", 1), ("MAX_POOL_2D", 1), ("CONCATENATION", 1),
                        ("PAD", 1), ("LOGISTIC", 1), ("RELU", 1), ("REDUCE_MAX", 1),
                        ("TANH", 1), ("RESHAPE", 1), ("UNPACK", 3)]:
        for seed in range(seeds):
            cases.append({"name": f"op_{kind.lower()}_{seed}", "graph": "case", "kind": kind,
                          "seed": seed})
    # every other kernel nn_calls.py emits, on tensors of a few hundred to a few thousand
    # elements (the conformance generators with larger shapes): transpose, requantize
    # and float quantize (QUANTIZE), dequantize, clamp (RELU6), the logistic / tanh
    # tables (64 elements and more), slices, split / unpack, and more of the others
    for kind, seeds in [("TRANSPOSE", 4), ("QUANTIZE", 8), ("DEQUANTIZE", 2), ("RELU6", 3),
                        ("LOGISTIC", 3), ("TANH", 3), ("SLICE", 3), ("STRIDED_SLICE", 3),
                        ("SPLIT", 3), ("CONCATENATION", 2), ("PAD", 2),
                        ("ADD", 2), ("MUL", 2), ("RELU", 1), ("MEAN", 2), ("REDUCE_MAX", 1),
                        ("AVERAGE_POOL_2D", 1), ("MAX_POOL_2D", 1)]:
        for seed in range(seeds):
            cases.append({"name": f"big_{kind.lower()}_{seed}", "graph": "case", "kind": kind,
                          "seed": 100 + seed, "large": True})
    # small chains of those around a convolution (the layouts converters emit: transpose
    # in and out of NCHW, requantize between branches, tables and clamps after a conv)
    for seed in range(4):
        cases.append({"name": f"layout_chain_{seed}", "graph": "layout_chain", "seed": seed})
    for name, model, shape in [("mlp", {"kind": "mlp", "hidden": [48, 24]}, (40,)),
                               ("cnn1d", {"kind": "cnn1d", "filters": [8, 16, 16]}, (80, 3)),
                               ("dscnn", {"kind": "dscnn", "filters": [16, 16]}, (20, 10)),
                               # long strided 1-D inputs (a few seconds of a 6-axis IMU)
                               ("cnn1d_t180_c6", {"kind": "cnn1d", "filters": [16, 32],
                                                  "kernel_size": 5, "stride": 2}, (180, 6)),
                               ("cnn1d_t240_c3", {"kind": "cnn1d", "filters": [16, 32, 24],
                                                  "kernel_size": 3, "stride": 2}, (240, 3)),
                               ("cnn1d_t256_c6", {"kind": "cnn1d", "filters": [32, 32],
                                                  "kernel_size": 7, "stride": 4}, (256, 6)),
                               ("cnn1d_t150_c4", {"kind": "cnn1d", "filters": [8, 32, 32],
                                                  "kernel_size": 5, "stride": 3}, (150, 4))]:
        cases.append({"name": f"template_{name}", "graph": "template", "model": model,
                      "shape": list(shape)})
    return cases


# --- building a case ---------------------------------------------------------------------


def build_pipeline(case: dict):
    """(pipeline, windows to measure [N, T, C], nodes visited per window or None)."""
    from pydantic import TypeAdapter

    from kiloml.dsp.raw import RawWindow
    from kiloml.pipeline import Pipeline, make_feature_stages
    from kiloml.project import (
        FeatureStageConfig,
        NeuralModelConfig,
        PreprocessStageConfig,
        TreeModelConfig,
    )
    from kiloml.targets.estimate import untrained_network

    rng = np.random.default_rng(zlib.crc32(case["name"].encode()))
    rows, ch, k, rate = case["rows"], case["channels"], case["classes"], case["rate"]
    channels = [f"c{i}" for i in range(ch)]
    n_train = 400
    y = np.arange(n_train) % k
    t = np.arange(rows) / rate
    freq = 1.0 + y[:, None, None] * rate / 16
    x = (np.sin(2 * np.pi * freq * t[None, :, None] + rng.uniform(0, 6, (n_train, 1, ch)))
         * rng.uniform(0.5, 2.0, (n_train, 1, ch))
         + 0.5 * rng.normal(size=(n_train, rows, ch))).astype(np.float32)
    feature_cfgs = [TypeAdapter(FeatureStageConfig).validate_python(f) for f in case["features"]]
    pre_cfgs = [TypeAdapter(PreprocessStageConfig).validate_python(f)
                for f in case["preprocess"]]
    from kiloml.dsp.filters import Butterworth, PreEmphasis

    pre = []
    for c in pre_cfgs:
        if c.stage == "pre_emphasis":
            pre.append(PreEmphasis(c.coefficient))
        else:
            pre.append(Butterworth(c.type, c.cutoff_hz, c.order, rate, "[preprocess]"))
    stages = make_feature_stages(None, rate, rows, channels, configs=feature_cfgs) \
        if feature_cfgs else []
    pipeline = Pipeline(case["name"], channels, rate, rows, max(1, rows // 2),
                        [f"k{i}" for i in range(k)], stages, None,  # type: ignore[arg-type]
                        preprocess=pre)
    m = case["model"]
    nodes = None
    if m["kind"] in ("mlp", "cnn1d", "dscnn"):
        cfg = NeuralModelConfig(**m)
        if cfg.reads == "window":
            pipeline.features = [RawWindow(rows, ch)]
        feats = pipeline.assemble(pipeline.window_features(x), fit_rows=np.arange(n_train))
        if cfg.kind == "dscnn":
            shape = (feats.shape[1] // stages[0].output_shape[1], stages[0].output_shape[1])
        elif cfg.reads == "window":
            shape = (rows, ch)
        else:
            shape = (feats.shape[1],)
        pipeline.model = untrained_network(cfg, k, shape, seed=1)
    else:
        from kiloml.models.trees import TreeModel

        cfg = TreeModelConfig(**m)
        feats = pipeline.assemble(pipeline.window_features(x), fit_rows=np.arange(n_train),
                                  y=y)
        pipeline.model = TreeModel(cfg, k)
        labels = y if cfg.max_depth is not None else rng.integers(0, k, n_train)
        labels[:k] = np.arange(k)
        pipeline.model.fit(feats, labels)
        pipeline.model.compile(feats.shape[1])
    windows = x[:N_WINDOWS]
    if nodes is None and hasattr(pipeline.model, "estimators"):
        f32 = pipeline.compute_features(windows).astype(np.float32)
        nodes = [float(sum(int(e.decision_path(f32[i:i + 1]).nnz) - 1
                           for e in pipeline.model.estimators)) for i in range(len(f32))]
    return pipeline, windows, nodes


def _large_shape(rng: np.random.Generator, rank: int | None = None) -> tuple[int, ...]:
    """conformance._random_shape with larger dimensions: 64-768 elements in rank 2,
    up to a few thousand in ranks 3 and 4."""
    rank = rank or int(rng.integers(2, 5))
    lo, hi = {2: (64, 769), 3: (8, 33), 4: (4, 13)}[rank]
    return (1, *(int(d) for d in rng.integers(lo, hi, size=rank - 1)))


def large_case(kind: str, seed: int):
    """A conformance operator case (random options and quantization) on larger tensors."""
    from kiloml.nn import conformance

    original = conformance._random_shape
    conformance._random_shape = _large_shape
    try:
        return conformance.random_case(kind, seed)
    finally:
        conformance._random_shape = original


def layout_chain(seed: int):
    """A small int8 chain: TRANSPOSE (NCHW -> NHWC) -> CONV_2D (1 x k) -> one of
    LOGISTIC / TANH (tables) / RELU6 (clamp) / QUANTIZE (requantize) -> TRANSPOSE back,
    with random sizes."""
    from kiloml.nn.conformance import act_quant, act_tensor, new_graph
    from kiloml.nn.graph import Quantization, Tensor
    from kiloml.nn.op_params import out_size

    rng = np.random.default_rng([seed, 4099])
    g = new_graph(f"layout{seed}")
    c, w = int(rng.integers(2, 9)), int(rng.integers(24, 129))
    q = act_quant(rng)
    x = act_tensor(g, "x", (1, c, 1, w), q)
    perm = g.add_tensor(Tensor("perm", (4,), "int32", data=np.array([0, 2, 3, 1], np.int32)))
    xt = act_tensor(g, "xt", (1, 1, w, c), q)
    g.add_op("TRANSPOSE", [x, perm], [xt])
    k, stride, cout = int(rng.integers(1, 6)), int(rng.integers(1, 3)), int(rng.integers(4, 17))
    ow = out_size("VALID", w, k, stride, 1)
    scale = np.exp(rng.uniform(np.log(0.002), np.log(0.05), cout)).astype(np.float32)
    wi = g.add_tensor(Tensor("w", (cout, 1, k, c), "int8",
                             Quantization(scale, np.zeros(cout, np.int64), 0),
                             rng.integers(-127, 128, (cout, 1, k, c)).astype(np.int8)))
    bi = g.add_tensor(Tensor("b", (cout,), "int32",
                             Quantization((np.float32(q.s) * scale).astype(np.float32),
                                          np.zeros(cout, np.int64), 0),
                             rng.integers(-3000, 3001, cout).astype(np.int32)))
    typical = math.sqrt(k * c) * 40.0 * 60.0 * q.s * float(np.mean(scale))
    qc = Quantization.per_tensor(typical / 60.0, int(rng.integers(-60, 61)))
    y = act_tensor(g, "conv", (1, 1, ow, cout), qc)
    g.add_op("CONV_2D", [xt, wi, bi], [y], padding="VALID", stride_h=1, stride_w=stride,
             dilation_h=1, dilation_w=1, fused_activation="NONE")
    kind = ["LOGISTIC", "TANH", "RELU6", "QUANTIZE"][seed % 4]
    qa = {"LOGISTIC": Quantization.per_tensor(1.0 / 256, -128),
          "TANH": Quantization.per_tensor(1.0 / 128, 0), "RELU6": qc,
          "QUANTIZE": act_quant(rng)}[kind]
    a = act_tensor(g, "act", (1, 1, ow, cout), qa)
    g.add_op(kind, [y], [a])
    back = g.add_tensor(Tensor("perm_back", (4,), "int32",
                               data=np.array([0, 3, 1, 2], np.int32)))
    out = act_tensor(g, "y", (1, cout, 1, ow), qa)
    g.add_op("TRANSPOSE", [a, back], [out])
    g.inputs, g.outputs = [x], [out]
    return g


def build_graph(case: dict):
    from kiloml.nn.conformance import random_case, random_chain

    if case["graph"] == "chain":
        return random_chain(case["seed"])[0]
    if case["graph"] == "case":
        if case.get("large"):
            return large_case(case["kind"], case["seed"])[0]
        return random_case(case["kind"], case["seed"])[0]
    if case["graph"] == "layout_chain":
        return layout_chain(case["seed"])
    from kiloml.project import NeuralModelConfig
    from kiloml.targets.estimate import untrained_network

    cfg = NeuralModelConfig(**{**case["model"], "epochs": 1})
    return untrained_network(cfg, 4, tuple(case["shape"]), seed=2).graph


# --- measuring ---------------------------------------------------------------------------


def measure_case(case: dict, target: str, cache: Path) -> dict:
    from kiloml.targets.measure import measure_graph, measure_pipeline
    from kiloml.targets.profiles import load_profile

    out_file = cache / target / f"{case['name']}.json"
    if out_file.exists():
        return json.loads(out_file.read_text())
    profile = load_profile(target)
    work = cache / target / "work" / case["name"]
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    try:
        if "graph" in case:
            result = measure_graph(build_graph(case), profile, work)
        else:
            pipeline, windows, nodes = build_pipeline(case)
            result = measure_pipeline(pipeline, profile, windows, work)
            result["nodes_visited"] = nodes
    except Exception as exc:  # a case that fails is reported and left out of the fit
        result = {"error": "".join(traceback.format_exception_only(exc)).strip()[:500]}
    result["case"] = case
    result["target"] = target
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(result))
    shutil.rmtree(work, ignore_errors=True)
    return result


def measure_all(targets: list[str], cache: Path, jobs: int, names: set[str] | None = None
                ) -> list[dict]:
    from kiloml.progress import track

    cases = [c for c in sweep() if names is None or c["name"] in names]
    todo = [(c, t) for t in targets for c in cases]
    results: list[dict] = []
    if jobs <= 1:
        for c, t in track(todo, "calibration sweep", total=len(todo)):
            results.append(measure_case(c, t, cache))
        return results
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(measure_case, c, t, cache) for c, t in todo]
        for fut in track(as_completed(futures), "calibration sweep", total=len(futures)):
            results.append(fut.result())
    return results


# --- fitting -----------------------------------------------------------------------------


def _nnls(rows: list[dict[str, float]], y: list[float]) -> dict[str, float]:
    from scipy.optimize import nnls

    keys = sorted({k for r in rows for k, v in r.items() if v})
    if not keys:
        return {}
    a = np.array([[r.get(k, 0.0) for k in keys] for r in rows], dtype=np.float64)
    b = np.array(y, dtype=np.float64)
    # scale columns so small-count terms are not ignored by the solver's tolerance
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)
    coef, _ = nnls(a / scale, b, maxiter=50 * len(keys) + 500)
    return {k: float(c / s) for k, c, s in zip(keys, coef, scale, strict=True)}


def _robust_nnls(rows: list[dict[str, float]], y: list[float]) -> dict[str, float]:
    """nnls, refitted without the rows the first fit misses by more than 3x the median
    error (the exact float64 vote of a forest, taken on a few windows only)."""
    coefs = _nnls(rows, y)
    pred = np.array([sum(coefs.get(k, 0.0) * v for k, v in r.items()) for r in rows])
    err = np.abs(pred - np.array(y))
    cut = 3 * float(np.median(err)) + 1.0
    keep = [i for i in range(len(rows)) if err[i] <= cut]
    if len(keep) < len(rows) and len(keep) >= 3:
        coefs = _nnls([rows[i] for i in keep], [y[i] for i in keep])
    return coefs


def _load_pipeline_case(r: dict):
    pipeline, _, _ = build_pipeline(r["case"])
    return pipeline


def fit(results: list[dict], target: str) -> dict:
    """Coefficients for one target's measurements."""
    from kiloml.targets.profiles import load_profile

    profile = load_profile(target)
    ok = [r for r in results if r["target"] == target and "error" not in r]
    # flash: function sizes (median over the probes) and the call graph
    sizes: dict[str, list[int]] = {}
    calls: dict[str, set[str]] = {}
    # the forest kernels call the exact float64 vote only when leaves are mixed
    # (kml_config.h): their callees are kept apart for integer-vote forests
    vote_calls: dict[str, set[str]] = {}
    # and per build variant (integer / exact vote x float32 / int16 thresholds)
    variant_calls: dict[str, dict[str, set[str]]] = {}
    for r in ok:
        for f, s in r["functions"].items():
            sizes.setdefault(f, []).append(s)
        for f, cs in r["calls"].items():
            calls.setdefault(f, set()).update(cs)
        forest = "graph" not in r["case"] and \
            r["case"]["model"]["kind"] not in ("mlp", "cnn1d", "dscnn")
        if forest and "kml_forest_exact_vote" not in r["functions"]:
            for f, cs in r["calls"].items():
                if f.startswith("kml_forest"):
                    vote_calls.setdefault(f, set()).update(cs)
        if forest:
            key = forest_variant("kml_forest_exact_vote" not in r["functions"],
                                 r["case"]["model"].get("thresholds") == "int16")
            for f, cs in r["calls"].items():
                if f.startswith("kml_forest"):
                    variant_calls.setdefault(key, {}).setdefault(f, set()).update(cs)
    generated_names = {"main", "Reset_Handler", "kml_classify", "kml_classify_latest",
                       "kml_push_sample", "kml_reset", "kml_compute_features",
                       "kml_preprocess_sample", "kml_decide", "kml_decide_latest",
                       "kml_run_features", "kml_run_model", "kml_nn_invoke", "kml_nn_input",
                       "kml_nn_output", "kml_nn_input_at", "kml_nn_output_at",
                       "kml_nn_input_bytes", "kml_nn_output_bytes"}
    own = re.compile(r"kml_(m|g|s\d+|p\d+|d)_")  # the generated file's own functions
    functions = {f: int(statistics.median(v)) for f, v in sizes.items()
                 if f not in generated_names and not own.match(f)}
    # helpers the generated code calls implicitly (soft-float arithmetic, memcpy)
    implicit: dict[str, set[str]] = {"nn": set(), "trees": set()}
    for r in ok:
        if "graph" in r["case"]:
            continue
        kind = "nn" if r["case"]["model"]["kind"] in ("mlp", "cnn1d", "dscnn") else "trees"
        for g in generated_names - {"main", "Reset_Handler"}:
            implicit[kind].update(c for c in r["calls"].get(g, []) if c.startswith("__")
                                  or c in ("memcpy", "memset", "roundf", "sqrtf"))
    cal = {"instructions": {}, "flash": {"functions": functions,
                                         "calls": {f: sorted(c) for f, c in calls.items()},
                                         "calls_integer_votes": {
                                             f: sorted(c) for f, c in vote_calls.items()},
                                         "calls_forest": {
                                             v: {f: sorted(c) for f, c in fc.items()}
                                             for v, fc in variant_calls.items()},
                                         "implicit_nn": sorted(implicit["nn"]),
                                         "implicit_trees": sorted(implicit["trees"]),
                                         "generated_code": {}, "graph_code": {}},
           "ram": {}, "stack": {}}

    inst_rows: dict[str, tuple[list, list]] = {}

    def row(group: str, terms: dict, y: float) -> None:
        inst_rows.setdefault(group, ([], []))
        inst_rows[group][0].append(terms)
        inst_rows[group][1].append(y)

    details = []
    framework = []
    nn_model_cases = []
    for r in ok:
        case = r["case"]
        if "graph" in case:
            graph = build_graph(case)
            layers = r.get("layer_instructions") or []
            ops = list(zip(graph.ops, nn_calls(graph), strict=True))
            for (op, call), count in zip(ops, layers, strict=False):
                terms = nn_op_terms(graph, op, call)
                if terms.get("call"):
                    row(nn_op_group(graph, op, call), terms, count)
                    row("nn.generic", terms, count)
            row("nn.graph", {"call": 1}, r["instructions_mean"] - sum(layers))
            details.append((r, "graph", graph))
            continue
        pipeline = _load_pipeline_case(r)
        per = r.get("stage_instructions")
        if per is None:
            continue
        for i, stage in enumerate(pipeline.features):
            group, terms = feature_stage_terms(stage, pipeline.window_samples,
                                               pipeline.n_channels)
            row(group, terms, per[i])
        framework.append(r["instructions_mean"] - sum(per))
        if hasattr(pipeline.model, "estimators"):
            tables = pipeline.model.tables
            group = tree_group(tables, pipeline.model.config.c_style)
            for w, nodes in zip(r["stage_instructions_per_window"], r["nodes_visited"],
                                strict=False):
                row(group, tree_terms(tables, nodes), w[-1])
        else:
            nn_model_cases.append((pipeline, per[-1]))
        details.append((r, "pipeline", pipeline))
    coefs: dict[str, dict[str, float]] = {}
    for group, (rows, ys) in inst_rows.items():
        coefs[group] = _robust_nnls(rows, ys) if group.startswith("tree.") else _nnls(rows, ys)
    coefs["framework"] = {"call": max(0.0, float(np.median(framework))) if framework else 0.0}
    coefs["nn.graph"] = {"call": max(0.0, float(np.median(inst_rows.get(
        "nn.graph", ([], [0.0]))[1])))}
    cal["instructions"] = coefs
    # the network glue in a pipeline (standardize + quantize the input, arg-max, scores)
    glue_rows, glue_y = [], []
    for pipeline, model_count in nn_model_cases:
        from kiloml.targets.estimate import network_terms

        invoke, _, _, _ = network_terms(pipeline.model.graph, coefs, [])
        n_in = len(pipeline.feature_names())
        glue_rows.append({"input": n_in, "class": pipeline.n_classes, "call": 1})
        glue_y.append(model_count - invoke)
    coefs["nn.model"] = _nnls(glue_rows, glue_y) if glue_rows else {}

    # generated code, RAM and stack from the estimate's exact parts
    gen_rows, gen_y, graph_rows, graph_y = [], [], [], []
    ram_base, graph_ram = [], []
    stack_cases: list[tuple[list[str], int]] = []
    for r, kind, obj in details:
        if kind == "graph":
            d = estimate_graph_detail(obj, profile, cal=cal)
            graph_rows.append(d["code_terms"])
            graph_y.append(r["flash_bytes"] - d["parts"]["constant_flash_bytes"]
                           - d["parts"]["runtime_code_bytes"])
            graph_ram.append(r["ram_bytes"] - d["parts"]["static_ram_bytes"])
        else:
            nodes = r.get("nodes_visited")
            d = estimate_pipeline_detail(obj, profile, cal=cal,
                                         tree_nodes=max(nodes) if nodes else None)
            gen_rows.append(d["code_terms"])
            gen_y.append(r["flash_bytes"] - d["parts"]["constant_flash_bytes"]
                         - d["parts"]["runtime_code_bytes"])
            ram_base.append(r["ram_bytes"] - d["parts"]["static_ram_bytes"])
        stack_cases.append((d["components"], r["stack_bytes"]))
    cal["flash"]["generated_code"] = _nnls(gen_rows, gen_y)
    cal["flash"]["graph_code"] = _nnls(graph_rows, graph_y)
    cal["ram"] = {"base": float(np.median(ram_base)) if ram_base else 0.0,
                  "graph_base": float(np.median(graph_ram)) if graph_ram else 0.0}
    stack: dict[str, int] = {}
    for comps, s in stack_cases:
        for c in set(comps):
            stack[c] = min(stack.get(c, 1 << 30), s)
    stack["default"] = int(np.median([s for _, s in stack_cases])) if stack_cases else 256
    # forests: a frame that grows with the kernel's stack arrays (uint16 leaf per tree,
    # int16 quantized features), from the cases where the forest path is the deepest
    # (statistics only before the forest: their stack is the floor)
    forest_stacks = [(r["stack_bytes"], forest_stack_arrays(obj.model.tables,
                                                            obj.model.config.c_style))
                     for r, kind, obj in details
                     if kind == "pipeline" and hasattr(obj.model, "estimators")
                     and not obj.preprocess
                     and all(st.kind == "statistics" for st in obj.features)]
    if forest_stacks:
        floor = min(s for s, _ in forest_stacks)
        deep = [s - a for s, a in forest_stacks if s > floor and a > 0]
        if deep:
            stack["forest_arrays_offset"] = int(np.median(deep))
    cal["stack"] = stack
    cal["residuals"] = _residuals(details, profile, cal)
    return cal


def _residuals(details, profile, cal) -> dict:
    """In-sample error of the fit per quantity (the honest error is bench/estimator.py's)."""
    errs: dict[str, list[float]] = {"flash_bytes": [], "ram_bytes": [], "stack_bytes": [],
                                    "instructions_per_inference": []}
    for r, kind, obj in details:
        if kind == "graph":
            d = estimate_graph_detail(obj, profile, cal=cal)
            measured_inst = r["instructions_per_inference"]
        else:
            nodes = r.get("nodes_visited")
            d = estimate_pipeline_detail(obj, profile, cal=cal,
                                         tree_nodes=max(nodes) if nodes else None)
            measured_inst = r["instructions_per_inference"]
        for q, est, meas in (("flash_bytes", d["flash"], r["flash_bytes"]),
                             ("ram_bytes", d["ram"], r["ram_bytes"]),
                             ("stack_bytes", d["stack"], r["stack_bytes"]),
                             ("instructions_per_inference", d["instructions"], measured_inst)):
            if meas:
                errs[q].append(abs(est - meas) / meas)
    return {q: {"median": round(float(np.median(v)), 4), "max": round(float(np.max(v)), 4),
                "n": len(v)} for q, v in errs.items() if v}


def compiler_version() -> str:
    import subprocess

    from kiloml.verify.mcu.toolchain import find_toolchain

    tc = find_toolchain()
    out = subprocess.run([tc.gcc, "-dumpversion"], capture_output=True, text=True).stdout
    return f"arm-none-eabi-gcc {out.strip()} -O2"


def main(argv: list[str] | None = None) -> int:
    from kiloml.progress import console
    from kiloml.targets.profiles import load_profile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(CALIBRATED_TARGETS))
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--fresh", action="store_true", help="measure again")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--out", type=Path, default=CALIBRATION_DIR)
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.fresh:
        import shutil

        for t in targets:
            shutil.rmtree(args.cache / t, ignore_errors=True)
    names = set(args.cases.split(",")) if args.cases else None
    results = measure_all(targets, args.cache, args.jobs, names)
    failed = [r for r in results if "error" in r]
    for r in failed:
        console.print(f"[yellow]{r['target']} {r['case']['name']}: {r['error']}[/yellow]")
    args.out.mkdir(parents=True, exist_ok=True)
    for target in targets:
        profile = load_profile(target)
        cal = fit(results, target)
        n = sum(1 for r in results if r["target"] == target and "error" not in r)
        cal["fitted"] = {
            "date": datetime.date.today().isoformat(), "target_profile": target,
            "core_class": core_class(profile), "cflags": profile.cflags,
            "machine": f"qemu-{profile.qemu_machine}", "compiler": compiler_version(),
            "cases": n, "failed_cases": len([r for r in failed if r["target"] == target]),
            "case_names": sorted(r["case"]["name"] for r in results
                                 if r["target"] == target and "error" not in r),
            "method": "scipy nnls per cost group on QEMU instruction counts (stage marks, "
                      "layer marks); flash = exact constants + linked function sizes over "
                      "the call graph + fitted generated code; RAM = exact statics + "
                      "fitted base; stack = deepest measured per component",
            "windows_per_case": N_WINDOWS}
        path = args.out / f"{core_class(profile)}.json"
        path.write_text(json.dumps(cal, indent=1, sort_keys=True) + "\n")
        console.print(f"{target}: {path} ({n} cases); in-sample error "
                      f"{json.dumps(cal['residuals'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
