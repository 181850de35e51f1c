"""The model families the sanitizer harness runs: small real pipelines and networks.

Each pipeline family is a kiloml project (a kiloml.toml over a synthetic NPY data set:
three classes by four subjects, sine tones of class-dependent frequency plus noise)
built through the same functions `kiloml run` uses (project loading, preprocessing,
windows, feature stages, model fit, decision calibration on out-of-fold scores), minus
the evaluation and report. Network families are the converter-made int8 fixtures
compiled as `kiloml model compile` compiles them.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.nn.graph import Graph
from kiloml.pipeline import Pipeline
from kiloml.project import STATISTICS

SUBJECTS = ("s1", "s2", "s3", "s4")
FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "nn" / "fixtures"


@dataclass(frozen=True)
class Family:
    name: str
    group: str  # "trees", "dsp", "networks", "decision"
    toml: str | None = None  # a project's sections after [data] (pipeline families)
    rate_hz: float = 50.0  # of the synthetic recordings
    seconds: float = 8.0
    n_classes: int = 3
    n_channels: int = 3
    # a standalone network: an int8 .tflite of tests/nn/fixtures, or "float_io" (a
    # graph with float32 input and output around int8 kernels)
    network: str | None = None

    @property
    def standalone_network(self) -> bool:
        return self.network is not None


def _window(window_ms: int = 1000, stride_ms: int = 500) -> str:
    return f"[window]\nwindow_ms = {window_ms}\nstride_ms = {stride_ms}\n"


STATS = '[[features]]\nstage = "statistics"\n'
EVAL = '[evaluation]\ntest_groups = ["s4"]\ncv_folds = 3\n'


def _forest(kind: str = "random_forest", *, style: str = "table", thresholds: str = "float32",
            leaves: str = "exact", n: int = 6, depth: int | None = 8, leaf: int = 3,
            weight: str | None = None) -> str:
    lines = ["[model]", f'kind = "{kind}"', f"n_estimators = {n}",
             f'c_style = "{style}"', f'thresholds = "{thresholds}"', f'leaves = "{leaves}"',
             f"min_samples_leaf = {leaf}", 'max_features = "sqrt"']
    if depth is not None:
        lines.append(f"max_depth = {depth}")
    if weight is not None:
        lines.append(f'class_weight = "{weight}"')
    return "\n".join(lines) + "\n"


def _spectral(window: str, log: bool, features: str = "", spacing: str = "linear",
              fft: int = 32) -> str:
    feats = features or ('["band_energies", "peaks", "centroid", "entropy", "flatness"]')
    # log-spaced: 3 bands from 2 Hz, so the first holds an FFT bin at 50 Hz
    bands = "n_bands = 3\nf_min_hz = 2.0\n" if spacing == "log" else "n_bands = 6\n"
    return (f'[[features]]\nstage = "spectral"\nfft_length = {fft}\nwindow_function = '
            f'"{window}"\nfeatures = {feats}\n{bands}band_spacing = "{spacing}"\n'
            f"n_peaks = 2\nlog = {'true' if log else 'false'}\n")


SMALL_FOREST = _forest(n=4, depth=6)
# every statistic and a spectrum on six channels: 6 x (10 + 9) = 114 features
WIDE = ('[[features]]\nstage = "statistics"\nstatistics = ['
        + ", ".join(f'"{s}"' for s in STATISTICS) + ']\n'
        + _spectral("hann", True, '["band_energies", "centroid", "entropy", "flatness"]'))


def _tree_families() -> list[Family]:
    out = []
    for style in ("table", "inline"):
        for thresholds in ("float32", "int16"):
            for leaves in ("exact", "uint8", "uint16"):
                out.append(Family(f"random_forest-{style}-{thresholds}-{leaves}", "trees",
                                  _window() + STATS + _forest(style=style,
                                                              thresholds=thresholds,
                                                              leaves=leaves)))
    out += [
        # every leaf pure: integer votes (score mode 0)
        Family("random_forest-table-pure-leaves", "trees",
               _window() + STATS + _forest(depth=None, leaf=1)),
        # non-whole sample weights: float64 fractions (score mode 2)
        Family("random_forest-inline-balanced-weights", "trees",
               _window() + STATS + _forest(style="inline", weight="balanced")),
        Family("decision_tree-table", "trees",
               _window() + STATS + _forest("decision_tree", depth=None, leaf=2)),
        Family("decision_tree-inline-int16-uint16", "trees",
               _window() + STATS + _forest("decision_tree", style="inline",
                                           thresholds="int16", leaves="uint16")),
        Family("extra_trees-table", "trees", _window() + STATS + _forest("extra_trees")),
        # many trees: uint16 node references, the exact float64 vote over 300 fractions
        Family("random_forest-table-exact-300-trees", "trees",
               _window() + STATS + _forest(n=300, depth=10, leaf=2)),
        Family("random_forest-inline-int16-uint8-300-trees", "trees",
               _window() + STATS + _forest(style="inline", n=300, depth=10, leaf=2,
                                           thresholds="int16", leaves="uint8")),
        # wide tables: 10 classes, > 64 features (16-bit node heads), 30 deep trees
        Family("random_forest-table-int16-uint16-10-classes-wide", "trees",
               _window() + WIDE + _forest(n=30, depth=14, leaf=1, thresholds="int16",
                                          leaves="uint16"), n_classes=10, n_channels=6),
        Family("random_forest-inline-exact-10-classes-wide", "trees",
               _window() + WIDE + _forest(style="inline", n=20, depth=12, leaf=4),
               n_classes=10, n_channels=6),
        Family("extra_trees-inline-int16-uint8", "trees",
               _window() + STATS + _forest("extra_trees", style="inline", thresholds="int16",
                                           leaves="uint8")),
    ]
    return out


def _dsp_families() -> list[Family]:
    stats = '[[features]]\nstage = "statistics"\nstatistics = [' + ", ".join(
        f'"{s}"' for s in STATISTICS) + "]\n"
    mfcc = ('[[features]]\nstage = "mfcc"\nframe_ms = 32\nframe_stride_ms = 16\n'
            'fft_length = 64\nn_filters = 12\nn_coefficients = 8\nwindow_function = '
            '"hamming"\n')
    mfe = ('[[features]]\nstage = "mfe"\nframe_ms = 64\nframe_stride_ms = 32\n'
           'fft_length = 128\nn_filters = 10\nwindow_function = "hann"\n')
    filters = ('[[preprocess]]\nstage = "filter"\ntype = "lowpass"\ncutoff_hz = 20\norder = 4\n'
               '\n[[preprocess]]\nstage = "filter"\ntype = "highpass"\ncutoff_hz = 0.5\n'
               'order = 2\n\n[[preprocess]]\nstage = "filter"\ntype = "bandpass"\n'
               'cutoff_hz = [1.0, 15.0]\norder = 3\n')
    return [
        Family("statistics-all-scale-standard", "dsp",
               _window() + stats + '[[features]]\nstage = "scale"\nmethod = "standard"\n'
               + SMALL_FOREST),
        Family("spectral-hann-log-scale-minmax", "dsp",
               _window() + _spectral("hann", True) +
               '[[features]]\nstage = "scale"\nmethod = "minmax"\n' + SMALL_FOREST),
        Family("spectral-hamming-rectangular-linear-log-spacing", "dsp",
               _window() + _spectral("hamming", False, spacing="log")
               + _spectral("rectangular", True, '["band_energies", "flatness", "entropy"]')
               + _spectral("rectangular", False, '["peaks", "centroid"]', fft=16)
               + SMALL_FOREST),
        Family("mfcc-mfe-pre_emphasis-decimate", "dsp",
               '[[preprocess]]\nstage = "pre_emphasis"\ncoefficient = 0.95\n\n'
               '[[preprocess]]\nstage = "decimate"\nfactor = 2\n\n'
               + _window(500, 250) + mfcc + mfe + SMALL_FOREST, rate_hz=2000.0, seconds=4.0,
               n_channels=1),
        Family("filters-lowpass-highpass-bandpass", "dsp",
               filters + _window() + STATS + SMALL_FOREST),
        Family("bandpass-decimate-spectral", "dsp",
               '[[preprocess]]\nstage = "filter"\ntype = "bandpass"\ncutoff_hz = [2.0, 40.0]'
               '\norder = 2\n\n[[preprocess]]\nstage = "decimate"\nfactor = 3\n\n'
               + _window(1000, 250) + _spectral("hann", True, fft=32)
               + STATS + SMALL_FOREST, rate_hz=150.0),
    ]


def _network_families() -> list[Family]:
    fixtures = [Family(f"{stem}-standalone", "networks", network=f"{stem}.tflite")
                for stem in ("mlp_int8", "cnn1d_int8", "dscnn_int8", "ops_mix_int8",
                             "cnn1d_litert_torch_int8")]
    fixtures.append(Family("float_io-quantize-dequantize-standalone", "networks",
                           network="float_io"))
    fixtures.append(Family("every-operator-conformance-cases-standalone", "networks",
                           network="every_operator"))
    mlp = ('[model]\nkind = "mlp"\nhidden = [16, 8]\nepochs = 4\nvalidation_groups = 1\n'
           'seed = 0\n')
    cnn = ('[model]\nkind = "cnn1d"\nfilters = [4, 8]\nkernel_size = 5\nstride = 2\n'
           'epochs = 3\nvalidation_groups = 1\n')
    return [*fixtures,
            Family("mlp-project-on-features", "networks", _window() + STATS + mlp),
            Family("cnn1d-project-on-window", "networks", _window() + cnn)]


def _decision_families() -> list[Family]:
    calibrated = ('[decision]\nthresholds = "calibrated"\ntarget = "precision"\n'
                  'target_value = 0.6\nmin_score = 0.4\nmin_margin = 0.1\n'
                  'smoothing = "average"\nsmoothing_windows = 4\non_windows = 2\n'
                  'off_windows = 3\n')
    majority = ('[decision]\nmin_margin = 0.2\nsmoothing = "majority"\nsmoothing_windows = 5\n'
                'on_windows = 3\noff_windows = 2\n')
    return [
        Family("calibrated-thresholds-average-hysteresis", "decision",
               _window() + STATS + _forest() + calibrated),
        Family("majority-min_margin-hysteresis", "decision",
               _window() + STATS + _forest(style="inline", leaves="uint8") + majority),
        # the on-device monitor after the layer: kml_decide_latest updates it on hostile
        # streams; the harness reads its flags and telemetry records
        Family("monitor-after-the-layer", "decision",
               _window() + STATS + _forest() + calibrated
               + "[monitor]\nfeatures = 4\nsnapshot_every = 8\n"),
        Family("min_score-network", "decision",
               _window() + STATS + '[model]\nkind = "mlp"\nhidden = [8]\nepochs = 3\n'
               'validation_groups = 1\n' + '[decision]\nmin_score = 0.5\n'
               'smoothing = "average"\nsmoothing_windows = 3\non_windows = 2\n'),
    ]


def families() -> list[Family]:
    return _tree_families() + _dsp_families() + _network_families() + _decision_families()


# ---- building ---------------------------------------------------------------------------

def channel_names(n: int) -> list[str]:
    return [f"ch{j}" for j in range(n)]


def write_dataset(root: Path, family: Family) -> Path:
    """n_classes x four subjects of NPY recordings (class k: a tone at k/25 of the rate
    on every channel, at channel-dependent amplitudes and offsets, plus noise); returns
    the data folder (shared by families with the same shape)."""
    k, c = family.n_classes, family.n_channels
    data = root / f"data_{family.rate_hz:g}hz_{family.seconds:g}s_{k}x{c}"
    if data.exists():
        return data
    staging = data.with_name(f"{data.name}.{os.getpid()}.part")  # parallel runs share it
    shutil.rmtree(staging, ignore_errors=True)
    seed = 0
    t = np.arange(int(family.seconds * family.rate_hz)) / family.rate_hz
    for label in range(k):
        base = np.sin(2 * np.pi * label * family.rate_hz / (8 * k) * t) if label else 0 * t
        for subject in SUBJECTS:
            rng = np.random.default_rng(seed)
            seed += 1
            x = np.column_stack([(1 - 0.1 * j) * base + 0.2 * rng.standard_normal(len(t))
                                 + 0.3 * j - 0.1 * label for j in range(c)])
            (staging / f"class{label:02d}").mkdir(parents=True, exist_ok=True)
            np.save(staging / f"class{label:02d}" / f"{subject}_rec.npy", x.astype(np.float32))
    try:
        staging.rename(data)
    except OSError:  # another process wrote it first
        if not data.exists():
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return data


def project_toml(family: Family, data: Path) -> str:
    channels = json.dumps(channel_names(family.n_channels))
    return (f'name = "{family.name}"\n\n[data]\nsource = "npy"\npath = "{data.as_posix()}"\n'
            f"sample_rate_hz = {family.rate_hz:g}\nchannels = {channels}\n"
            f"label_from_folder = true\ngroup_pattern = '(?P<group>s\\d+)_'\n\n"
            f"{family.toml}\n{EVAL}\n[output]\ndir = \"out\"\n")


def build_pipeline(family: Family, work: Path) -> Pipeline:
    """The family's pipeline, fitted as `kiloml run` fits it (no evaluation)."""
    from kiloml.decision.project import decision_params
    from kiloml.families import family_for
    from kiloml.prepare import prepare_data
    from kiloml.project import load_project

    data = write_dataset(work, family)
    folder = work / family.name
    folder.mkdir(parents=True, exist_ok=True)
    toml = folder / "kiloml.toml"
    toml.write_text(project_toml(family, data))
    project = load_project(toml)
    cfg = project.config
    _, _, pipeline, windows, split = prepare_data(project, announce=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn / torch chatter on tiny data
        # the model family's contract as `kiloml run` walks it; cross-validation only
        # where calibrated thresholds read its out-of-fold scores
        model_family = family_for(project)
        inputs = model_family.model_inputs(pipeline, windows, split)
        cv = model_family.cross_validate(pipeline, inputs, windows, split) \
            if cfg.decision.thresholds == "calibrated" else {}
        x = model_family.assemble(pipeline, inputs, split.train, windows.y)
        pipeline.model = model_family.new_model(pipeline, inputs.sample_shape)
        model_family.fit(pipeline.model, x[split.train], windows.y[split.train],
                         windows.group[split.train], progress=False)
        oof = model_family.out_of_fold_scores(cv, pipeline.model, x, split)
    pipeline.decision = decision_params(cfg.decision, windows, split, oof, project.path)
    if cfg.monitor is not None:
        from kiloml.monitor.project import fit_for_run

        pipeline.monitor = fit_for_run(cfg.monitor, pipeline.model, x.reshape(len(x), -1),
                                       windows.x, split.train, oof, pipeline.n_classes,
                                       len(pipeline.feature_names()), project.path)
        pipeline.monitor_snapshot_every = cfg.monitor.snapshot_every
    return pipeline


def float_io_graph() -> Graph:
    """float32 [1, 8, 6] -> QUANTIZE -> TANH -> QUANTIZE (requantize) -> SOFTMAX ->
    DEQUANTIZE -> float32: the float-to-int8 conversion of a network's float input
    (kml_quantize_f32_s8) meets NaN, inf and FLT_MAX here."""
    from kiloml.nn.graph import Quantization, Tensor

    g = Graph(tensors=[], ops=[], inputs=[], outputs=[], name="float_io",
              description="kiloml sanitizer")
    shape = (1, 8, 6)
    x = g.add_tensor(Tensor("x", shape, "float32"))
    quants = [Quantization.per_tensor(0.05, 3), Quantization.per_tensor(1 / 128, 0),
              Quantization.per_tensor(0.02, -5), Quantization.per_tensor(1 / 256, -128)]
    q = [g.add_tensor(Tensor(f"q{i}", shape, "int8", quant)) for i, quant in enumerate(quants)]
    y = g.add_tensor(Tensor("y", shape, "float32"))
    g.add_op("QUANTIZE", [x], [q[0]])
    g.add_op("TANH", [q[0]], [q[1]])
    g.add_op("QUANTIZE", [q[1]], [q[2]])
    g.add_op("SOFTMAX", [q[2]], [q[3]], beta=1.0)
    g.add_op("DEQUANTIZE", [q[3]], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def every_operator_graph(seeds: range = range(3)) -> Graph:
    """The conformance cases of every supported operator (kiloml/nn/conformance.py: random
    shapes, options and quantization), side by side in one graph with an input and an
    output per case, so one build runs every kernel."""
    import dataclasses

    from kiloml.nn.conformance import GENERATORS, random_case

    merged = Graph(tensors=[], ops=[], inputs=[], outputs=[], name="every_operator",
                   description="kiloml sanitizer")
    for kind in sorted(GENERATORS):
        for seed in seeds:
            g, _ = random_case(kind, seed)
            base = len(merged.tensors)
            merged.tensors += [dataclasses.replace(t, name=f"{kind}{seed}/{t.name}")
                               for t in g.tensors]
            for op in g.ops:
                merged.add_op(op.kind, [i + base if i >= 0 else -1 for i in op.inputs],
                              [o + base for o in op.outputs], f"{kind}{seed}/{op.name}",
                              **op.options)
            merged.inputs += [i + base for i in g.inputs]
            merged.outputs += [o + base for o in g.outputs]
    return merged


def load_network(family: Family) -> Graph:
    from kiloml.nn.analysis import validate
    from kiloml.nn.load import load_model

    assert family.network is not None
    builtin = {"float_io": float_io_graph, "every_operator": every_operator_graph}
    if family.network in builtin:
        graph = builtin[family.network]()
        validate(graph)
        return graph
    return load_model(FIXTURES / family.network)

