"""A Pipeline as ``pipeline.json`` + ``pipeline.npz`` and back, without pickle.

What is saved is what cannot be recomputed: the window geometry, each stage's settings
(the project's pydantic sections, validated again on load), fitted numbers (scaling,
the network's graphs and input standardization, the decision layer's thresholds) and
the fitted scikit-learn trees. Stages whose tables follow from their settings (filters,
spectral, MFCC) are rebuilt by their constructors, which check them as for a project;
the forest's C tables are recompiled from the trees (deterministic), interpreter caches
start empty. The allow-list is the code: each stage or model kind has one save and one
load function here, and a kind, tag or field not listed is refused on load.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import get_args

import numpy as np
from sklearn.base import clone

from kiloml.decision.layer import SMOOTHING, DecisionParams
from kiloml.dsp.filters import Butterworth, Decimate, PreEmphasis
from kiloml.dsp.mfcc import Mfcc
from kiloml.dsp.raw import RawWindow
from kiloml.dsp.scaling import Scale
from kiloml.dsp.spectral import Spectral
from kiloml.dsp.statistics import Statistics
from kiloml.errors import KilomlError
from kiloml.persist.archive import ArrayBook, describe, read_document, write_document
from kiloml.persist.codec import decode, encode
from kiloml.persist.fields import Fields, encode_float
from kiloml.persist.graph_state import load_graph, save_graph
from kiloml.persist.monitor_state import load_monitor, save_monitor
from kiloml.persist.sklearn_state import (
    ENSEMBLES,
    SINGLE_TREES,
    check_fitted_like,
    load_estimator,
    save_estimator,
    sklearn_version,
)
from kiloml.pipeline import Pipeline
from kiloml.project import (
    DecimateStageConfig,
    FilterStageConfig,
    MfccStageConfig,
    NeuralModelConfig,
    OptimizeConfig,
    PreEmphasisStageConfig,
    RecordingRule,
    ScaleStageConfig,
    SpectralStageConfig,
    StatisticsStageConfig,
    TreeModelConfig,
)
from kiloml.stage import FeatureStage, SampleStage
from kiloml.version import __version__

FORMAT = "kiloml-pipeline"
VERSION = 1
PIPELINE_FILE = "pipeline.json"
OLD_PIPELINE_FILE = "pipeline.pkl"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # as [project] name: it goes
# into a C comment of the generated library
MAX_SAMPLES = 1 << 24
MAX_CHANNELS = 1 << 12
MAX_CLASSES = 1 << 16
TREE_ESTIMATORS = {"random_forest": "RandomForestClassifier",
                   "extra_trees": "ExtraTreesClassifier",
                   "decision_tree": "DecisionTreeClassifier"}


# --- saving --------------------------------------------------------------------------


def save_pipeline(pipeline: Pipeline, path: Path) -> None:
    """``path`` (pipeline.json) and the archive beside it (same stem, .npz)."""
    book = ArrayBook()
    document = {"format": FORMAT, "version": VERSION, "kiloml_version": __version__,
                "pipeline": _save(pipeline, book)}
    write_document(Path(path), document, book)


def _save(p: Pipeline, book: ArrayBook) -> dict:
    return {
        "name": p.name, "channels": list(p.channels),
        "sample_rate_hz": float(p.sample_rate_hz), "window_samples": int(p.window_samples),
        "stride_samples": int(p.stride_samples), "class_names": list(p.class_names),
        "input_sample_rate_hz": (None if p.input_sample_rate_hz is None
                                 else float(p.input_sample_rate_hz)),
        "preprocess": [_save_sample_stage(s) for s in p.preprocess],
        "features": [_save_feature_stage(s, book, f"features.{i}")
                     for i, s in enumerate(p.features)],
        "model": _save_model(p.model, book),
        "decision": None if p.decision is None else _save_decision(p.decision, book),
        # only in mode = "recording" (a windowed pipeline's file is unchanged)
        **({} if p.recording is None else {"recording": p.recording.model_dump(mode="json")}),
        # only with a [library] prefix (a default pipeline's file is unchanged)
        **({} if p.library_prefix == "kml" else {"library_prefix": p.library_prefix}),
        # only with [library] updatable = true (kiloml.blob)
        **({} if not p.library_updatable else {"library_update": {
            "public_key": None if p.library_update_key is None
            else p.library_update_key.hex()}}),
        # only with a [monitor] (a pipeline without one is unchanged)
        **({} if p.monitor is None else
           {"monitor": save_monitor(p.monitor, p.monitor_snapshot_every, book)}),
    }


def _save_sample_stage(s: SampleStage) -> dict:
    if type(s) is Butterworth:
        cfg = FilterStageConfig(stage="filter", type=s.type, cutoff_hz=s.cutoff_hz,
                                order=s.order)
    elif type(s) is PreEmphasis:
        cfg = PreEmphasisStageConfig(stage="pre_emphasis", coefficient=float(s.coefficient))
    elif type(s) is Decimate:
        cfg = DecimateStageConfig(stage="decimate", factor=s.decimation)
    else:
        raise TypeError(f"a {type(s).__name__} preprocess stage cannot be saved")
    return cfg.model_dump(mode="json")


def _save_feature_stage(s: FeatureStage, book: ArrayBook, key: str) -> dict:
    if type(s) is Statistics:
        return StatisticsStageConfig(stage="statistics",
                                     statistics=list(s.statistics)).model_dump(mode="json")
    if type(s) in (Spectral, Mfcc):
        return s.cfg.model_dump(mode="json")  # type: ignore[attr-defined]
    if type(s) is Scale:
        if s.offset is None or s.gain is None:
            raise ValueError(f"{key}: a scale stage is saved after it is fitted")
        return {"stage": "scale", "method": s.method,
                "offset": book.put(f"{key}.offset", s.offset),
                "gain": book.put(f"{key}.gain", s.gain)}
    if type(s) is RawWindow:
        return {"stage": "raw", "window_rows": int(s.window_rows),
                "channels": int(s.channels)}
    raise TypeError(f"a {type(s).__name__} feature stage cannot be saved")


def _save_model(model, book: ArrayBook) -> dict:
    from kiloml.models.neural import NeuralModel
    from kiloml.models.trees import TreeModel

    if type(model) is TreeModel:
        return {"kind": "trees", "config": model.config.model_dump(mode="json"),
                "n_classes": int(model.n_classes), "scikit_learn": sklearn_version(),
                "estimator": save_estimator(model.estimator, book, "model.estimator"),
                "compiled": model.tables is not None}
    if type(model) is NeuralModel:
        h = model.history
        return {
            "kind": "neural", "config": model.config.model_dump(mode="json"),
            "optimize": None if model.optimize is None else
            model.optimize.model_dump(mode="json"),
            "n_classes": int(model.n_classes),
            "sample_shape": [int(d) for d in model.sample_shape],
            "model_path": None if model.model_path is None else str(model.model_path),
            "params": encode(model.params, book, "model.params"),
            "graph": save_graph(model.graph, book, "model.graph"),
            "float_graph": None if model.float_graph is None else
            save_graph(model.float_graph, book, "model.float_graph"),
            "input_mean": None if model.input_mean is None else
            book.put("model.input_mean", model.input_mean),
            "input_std": None if model.input_std is None else
            book.put("model.input_std", model.input_std),
            "history": None if h is None else {
                "train_loss": [encode_float(v) for v in h.train_loss],
                "val_loss": [encode_float(v) for v in h.val_loss],
                "val_accuracy": [encode_float(v) for v in h.val_accuracy],
                "best_epoch": int(h.best_epoch), "epochs_run": int(h.epochs_run),
                "stopped_early": bool(h.stopped_early), "seconds": encode_float(h.seconds)},
        }
    from kiloml.models.onnx_trees import ImportedForest

    if type(model) is ImportedForest:
        from kiloml.persist.onnx_trees_state import save_imported_trees

        return save_imported_trees(model, book)
    from kiloml.models.linear import LinearModel
    from kiloml.persist.linear_state import save_linear

    if type(model) is LinearModel:
        return save_linear(model, book)
    raise TypeError(f"a {type(model).__name__} model cannot be saved")


def _save_decision(d: DecisionParams, book: ArrayBook) -> dict:
    return {"n_classes": int(d.n_classes),
            "thresholds": book.put("decision.thresholds", d.thresholds),
            "min_score": encode_float(d.min_score), "min_margin": encode_float(d.min_margin),
            "smoothing": d.smoothing, "smoothing_windows": int(d.smoothing_windows),
            "on_windows": int(d.on_windows), "off_windows": int(d.off_windows),
            "calibration": encode(d.calibration, book, "decision.calibration")}


# --- loading -------------------------------------------------------------------------


def refuse_old_run(out: Path, project_path: Path | str | None = None) -> None:
    """A run folder from before this format (pipeline.pkl, no pipeline.json): never
    unpickled, the user is asked to run again."""
    if (out / OLD_PIPELINE_FILE).exists() and not (out / PIPELINE_FILE).exists():
        again = f"`kiloml run {project_path}`" if project_path is not None else "`kiloml run`"
        raise KilomlError(f"this run folder was written by an older kiloml ({OLD_PIPELINE_FILE}, "
                          f"which kiloml no longer reads: unpickling can run code); run "
                          f"{again} again", file=out / OLD_PIPELINE_FILE)


def load_pipeline(path: Path) -> Pipeline:
    path = Path(path)
    if path.suffix == ".pkl":
        refuse_old_run(path.parent)
        raise KilomlError("kiloml no longer reads pickled pipelines (unpickling can run "
                          "code); run `kiloml run` again", file=path)
    if not path.exists():
        refuse_old_run(path.parent)
    data, doc = read_document(path, FORMAT, VERSION)
    top = Fields(data, "", doc)
    top.str("format")
    top.int("version")
    top.str("kiloml_version", max_length=100)
    pipeline = _load(top.object("pipeline"))
    top.done()
    return pipeline


def _load(f: Fields) -> Pipeline:
    name = f.str("name", max_length=200)
    if not NAME_PATTERN.fullmatch(name):
        raise f.error("name", f"{name[:40]!r} is not a project name (letters, digits, _ . -)")
    channels = _names(f, "channels", MAX_CHANNELS)
    class_names = _names(f, "class_names", MAX_CLASSES)
    rate = f.float("sample_rate_hz", above=0.0)
    window = f.int("window_samples", 1, MAX_SAMPLES)
    stride = f.int("stride_samples", 1, MAX_SAMPLES)
    input_rate = f.optional("input_sample_rate_hz", lambda k: f.float(k, above=0.0))
    p = Pipeline(name=name, channels=channels, sample_rate_hz=rate, window_samples=window,
                 stride_samples=stride, class_names=class_names, features=[],
                 model=None,  # type: ignore[arg-type]  # set below
                 preprocess=[], input_sample_rate_hz=input_rate)
    p.preprocess = _load_preprocess(f, p)
    p.features = _load_features(f, p)
    n_features = len(p.feature_names())
    p.model = _load_model(f.object("model"), p, n_features)
    p.decision = f.optional("decision", lambda k: _load_decision(f.object(k), p))
    p.recording = f.config("recording", RecordingRule) if f.has("recording") else None
    if f.has("library_prefix"):
        p.library_prefix = _library_prefix(f)
    if f.has("library_update"):
        p.library_updatable, p.library_update_key = True, _update_key(f.object("library_update"))
    if f.has("monitor"):
        p.monitor, p.monitor_snapshot_every = load_monitor(
            f.object("monitor"), p.n_classes, p.n_channels, n_features)
    f.done()
    return p


def _update_key(f: Fields) -> bytes | None:
    key = f.optional("public_key", lambda k: f.str(k, max_length=64))
    f.done()
    if key is None:
        return None
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise f.error("public_key", "is not 64 lower-case hex digits (an Ed25519 key)")
    return bytes.fromhex(key)


def _library_prefix(f: Fields) -> str:
    from kiloml.codegen.prefix import check_prefix

    value = f.str("library_prefix", max_length=100)
    try:
        return check_prefix(value)
    except KilomlError as exc:
        raise f.error("library_prefix", exc.message) from None


def _names(f: Fields, key: str, most: int) -> list[str]:
    names = f.strings(key, most)
    if not names:
        raise f.error(key, "empty")
    if len(set(names)) != len(names):
        raise f.error(key, "a name appears twice")
    return names


def _load_preprocess(f: Fields, p: Pipeline) -> list[SampleStage]:
    stages: list[SampleStage] = []
    rate = p.input_rate_hz
    for i, s in enumerate(f.objects("preprocess", 64)):
        where = f"[preprocess.{i}]"
        kind = s.str("stage", choices=("filter", "pre_emphasis", "decimate"))
        cls = {"filter": FilterStageConfig, "pre_emphasis": PreEmphasisStageConfig,
               "decimate": DecimateStageConfig}[kind]
        cfg = _whole_config(s, cls)
        try:
            if kind == "filter":
                stages.append(Butterworth(cfg.type, cfg.cutoff_hz, cfg.order, rate,
                                          f"{where} cutoff_hz"))
            elif kind == "pre_emphasis":
                stages.append(PreEmphasis(cfg.coefficient))
            else:
                stages.append(Decimate(cfg.factor, rate, f"{where} factor"))
        except KilomlError as exc:
            raise s.doc.error(_stage_where(s, exc), exc.message) from None
        except (ValueError, OverflowError, ZeroDivisionError) as exc:  # absurd numbers
            raise s.doc.error(s.where, _unbuildable(exc)) from None
        rate /= stages[-1].decimation
    if not math.isclose(rate, p.sample_rate_hz, rel_tol=1e-9):
        raise f.error("sample_rate_hz", f"{p.sample_rate_hz:g} Hz, but the input rate and "
                                        f"the preprocessing give {rate:g} Hz")
    return stages


def _unbuildable(exc: Exception) -> str:
    return f"the stage cannot be built from these settings ({type(exc).__name__}: {exc})"[:300]


def _stage_where(s: Fields, exc: KilomlError) -> str:
    """A stage constructor's error ("[features.1] fft_length") at the stage's path in the
    document (pipeline.features[1].fft_length)."""
    key = exc.where.split()[-1] if exc.where and " " in exc.where else None
    return f"{s.where}.{key}" if key else s.where


def _whole_config(s: Fields, cls):
    """The whole object as one pydantic section (every key is the section's)."""
    from pydantic import ValidationError

    s.seen.update(s.data)
    try:
        return cls.model_validate(s.data)
    except ValidationError as exc:  # the first problem, located
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first.get("loc", ()))
        raise s.doc.error(s.where + (f".{loc}" if loc else ""),
                          first.get("msg", "invalid")) from None


def _load_features(f: Fields, p: Pipeline) -> list[FeatureStage]:
    stages: list[FeatureStage] = []
    n_inputs = 0  # features made so far (what a vector stage reads)
    for i, s in enumerate(f.objects("features", 256)):
        where = f"[features.{i}]"
        kind = s.str("stage", choices=("statistics", "spectral", "mfcc", "mfe", "scale", "raw"))
        try:
            if kind == "statistics":
                stage: FeatureStage = Statistics(
                    list(_whole_config(s, StatisticsStageConfig).statistics))
            elif kind == "spectral":
                stage = Spectral(_whole_config(s, SpectralStageConfig), p.sample_rate_hz,
                                 p.window_samples, list(p.channels), where)
            elif kind in ("mfcc", "mfe"):
                stage = Mfcc(_whole_config(s, MfccStageConfig), p.sample_rate_hz,
                             p.window_samples, list(p.channels), where)
            elif kind == "scale":
                methods = get_args(ScaleStageConfig.model_fields["method"].annotation)
                stage = Scale(s.str("method", choices=methods))
                stage.offset = s.array("offset", "float32", (n_inputs,), finite=True).copy()
                stage.gain = s.array("gain", "float32", (n_inputs,), finite=True).copy()
                if np.any(stage.gain <= 0):  # 1 / spread, or 1 for a constant feature
                    raise s.error("gain", "a gain is not positive")
                s.done()
            else:
                rows = s.int("window_rows", p.window_samples, p.window_samples)
                stage = RawWindow(rows, s.int("channels", p.n_channels, p.n_channels))
                s.done()
        except KilomlError as exc:
            if exc.file is not None:
                raise
            raise s.doc.error(_stage_where(s, exc), exc.message) from None
        except (ValueError, OverflowError, ZeroDivisionError) as exc:  # absurd numbers
            raise s.doc.error(s.where, _unbuildable(exc)) from None
        if i == 0 and stage.reads != "window":
            raise s.error("stage", "the first feature stage must read the window")
        if stage.reads == "window":
            n_inputs += len(stage.feature_names(list(p.channels)))
        stages.append(stage)
    return stages


def _load_model(f: Fields, p: Pipeline, n_features: int):
    kind = f.str("kind", choices=("trees", "neural", "linear", "imported_trees"))
    if kind == "imported_trees":
        from kiloml.persist.onnx_trees_state import load_imported_trees

        model = load_imported_trees(f, list(p.class_names), n_features)
    elif kind == "linear":
        from kiloml.persist.linear_state import load_linear

        model = load_linear(f, p.n_classes, n_features)
    else:
        model = _load_trees(f, p, n_features) if kind == "trees" else \
            _load_neural(f, p, n_features)
    f.done()
    return model


def _load_trees(f: Fields, p: Pipeline, n_features: int):
    from kiloml.models.trees import TreeModel

    made_with = f.str("scikit_learn", max_length=100)
    if made_with != sklearn_version():
        raise f.error("scikit_learn", f"the trees were fitted with scikit-learn {made_with}, "
                                      f"this kiloml has {sklearn_version()}: run `kiloml run` "
                                      "again")
    config: TreeModelConfig = f.config("config", TreeModelConfig)
    n_classes = f.int("n_classes", p.n_classes, p.n_classes)
    cls_name = TREE_ESTIMATORS[config.kind]
    allowed = {cls_name: {**SINGLE_TREES, **{k: v[0] for k, v in ENSEMBLES.items()}}[cls_name]}
    estimator = load_estimator(f.object("estimator"), allowed)
    where = f.path("estimator.state")
    if estimator.n_features_in_ != n_features:
        raise f.doc.error(f"{where}.n_features_in_", f"the trees read "
                                                     f"{estimator.n_features_in_} features, "
                                                     f"the stages make {n_features}")
    classes = estimator.classes_
    if np.any(classes != np.round(classes)) or np.any(classes < 0) or \
            np.any(classes >= n_classes) or np.any(np.diff(classes) <= 0):
        raise f.doc.error(f"{where}.classes_", f"expected increasing class indices below "
                                               f"{n_classes}")
    model = TreeModel(config, n_classes)
    check_fitted_like(estimator, _fitted_reference(model, n_features, f),
                      model.estimator.get_params(deep=False), f.doc, where)
    model.estimator = estimator
    if f.bool("compiled"):
        if list(classes) != list(range(n_classes)):
            raise f.error("compiled", "C tables need trees trained on every class")
        try:
            model.compile(n_features)
        except ValueError as exc:
            raise f.doc.error(where, f"the trees cannot be compiled: {exc}"[:300]) from None
    return model


def _fitted_reference(model, n_features: int, f: Fields):
    """The model's estimator (one tree for an ensemble) fitted on one constant row per
    class: which attributes and hyperparameters a fitted one of these settings has."""
    reference = clone(model.estimator)
    if hasattr(reference, "n_estimators"):
        reference.set_params(n_estimators=1)
    k = model.n_classes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference.fit(np.zeros((max(k, 2), n_features), np.float32),
                          np.arange(max(k, 2)) % k)
    except (ValueError, TypeError, OverflowError) as exc:
        raise f.error("config", f"these settings cannot be fitted: {exc}"[:300]) from None
    return reference


def _load_neural(f: Fields, p: Pipeline, n_features: int):
    from kiloml.models.neural import NeuralModel
    from kiloml.nn.train import TrainHistory

    config: NeuralModelConfig = f.config("config", NeuralModelConfig)
    optimize = f.optional("optimize", lambda k: f.config(k, OptimizeConfig))
    n_classes = f.int("n_classes", p.n_classes, p.n_classes)
    shape = tuple(f.ints("sample_shape", 1, MAX_SAMPLES * MAX_CHANNELS, max_items=4))
    if not shape or math.prod(shape) != (p.window_samples * p.n_channels if not p.features
                                         else n_features):
        raise f.error("sample_shape", f"{list(shape)} does not hold the model's "
                                      f"{n_features} inputs")
    model_path = f.optional("model_path", lambda k: Path(f.str(k, max_length=4096)))
    model = NeuralModel(config, n_classes, shape, model_path, optimize)
    params = decode(f.raw("params"), f.doc, f.path("params"))
    if params is not None and not isinstance(params, dict):
        raise f.error("params", f"expected an object or null, got {describe(params)}")
    model.params = params
    model.graph = load_graph(f.object("graph"))
    _check_io(f, "graph", model.graph, shape, n_classes)
    model.float_graph = f.optional("float_graph", lambda k: load_graph(f.object(k)))
    if model.float_graph is not None:
        _check_io(f, "float_graph", model.float_graph, shape, n_classes)
    mean = f.optional("input_mean", lambda k: f.array(k, "float32", None, finite=True))
    std = f.optional("input_std", lambda k: f.array(k, "float32", None, finite=True))
    if (mean is None) != (std is None):
        raise f.error("input_std", "input_mean and input_std come together")
    if mean is not None and std is not None:
        if mean.ndim != 1 or mean.shape != std.shape or mean.size == 0 or \
                shape[-1] % mean.size or (mean.size != shape[-1] and mean.size != 1):
            raise f.error("input_mean", f"shape {list(mean.shape)} does not standardize "
                                        f"inputs of shape {list(shape)}")
        if np.any(std <= 0):
            raise f.error("input_std", "a standard deviation is not positive")
        model.input_mean, model.input_std = mean.copy(), std.copy()
    model.history = f.optional("history", lambda k: _load_history(f.object(k), TrainHistory))
    return model


def _check_io(f: Fields, key: str, graph, shape: tuple[int, ...], n_classes: int) -> None:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise f.error(key, f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
                           "one of each is needed")
    t_in, t_out = graph.input_tensors[0], graph.output_tensors[0]
    if not t_in.shape or t_in.shape[0] != 1 or t_in.size != math.prod(shape):
        raise f.error(key, f"input shape {list(t_in.shape)} does not take one "
                           f"{list(shape)} sample")
    if t_out.size != n_classes or t_out.shape[-1] != n_classes:
        raise f.error(key, f"output shape {list(t_out.shape)} is not {n_classes} scores")
    if t_in.dtype not in ("int8", "float32") or t_out.dtype not in ("int8", "float32") or \
            (t_in.dtype == "int8" and t_in.quant is None) or \
            (t_out.dtype == "int8" and t_out.quant is None):
        raise f.error(key, "input and output must be int8 (quantized) or float32")


def _load_history(f: Fields, cls):
    def floats(key: str) -> list[float]:
        values = f.raw(key)
        if not isinstance(values, list) or len(values) > 1_000_000:
            raise f.error(key, f"expected a list of numbers, got {describe(values)}")
        out = []
        for i, v in enumerate(values):
            item = Fields({"v": v}, f.path(f"{key}[{i}]"), f.doc)
            item.where = f.path(key) + f"[{i}]"
            out.append(item.float("v", finite=False))
        return out
    h = cls(train_loss=floats("train_loss"), val_loss=floats("val_loss"),
            val_accuracy=floats("val_accuracy"), best_epoch=f.int("best_epoch", 0),
            epochs_run=f.int("epochs_run", 0), stopped_early=f.bool("stopped_early"),
            seconds=f.float("seconds", finite=False))
    f.done()
    return h


def _load_decision(f: Fields, p: Pipeline) -> DecisionParams:
    k = f.int("n_classes", p.n_classes, p.n_classes)
    thresholds = f.array("thresholds", "float32", (k,), finite=True)
    calibration = decode(f.raw("calibration"), f.doc, f.path("calibration"))
    if not isinstance(calibration, dict):
        raise f.error("calibration", f"expected an object, got {describe(calibration)}")
    d = DecisionParams(k, thresholds.copy(), min_score=f.float("min_score", 0.0, 1.0),
                       min_margin=f.float("min_margin", 0.0, 1.0),
                       smoothing=f.str("smoothing", choices=list(SMOOTHING)),
                       smoothing_windows=f.int("smoothing_windows", 1, 64),
                       on_windows=f.int("on_windows", 1, 1000),
                       off_windows=f.int("off_windows", 1, 1000), calibration=calibration)
    f.done()
    return d
