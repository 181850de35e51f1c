"""kiloml's Python API: a fitted model in, a verified C library out; a project run.

    import kiloml
    lib = kiloml.convert(forest, target="cortex-m4f")   # a fitted model -> Library
    lib.predict(x)                                       # the reference the C equals
    lib.verify(x)                                        # host + QEMU parity, resources
    lib.save("build/forest")                             # C library + what loads it back
    run = kiloml.Project.load("kiloml.toml").run()       # what `kiloml run` does

``convert`` takes fitted scikit-learn classifiers (trees: exact; linear models: exact;
MLPClassifier: int8), a torch.nn.Module, a Keras model, or a path to an .onnx or
.tflite file; float networks are quantized to TFLite-spec int8 from ``calibration``.
Every bad input is one KilomlError line. docs/api.md documents it with examples the
tests run.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kiloml.errors import KilomlError
from kiloml.version import __version__

__all__ = ["SUPPORTED", "Library", "Project", "RunResult", "convert"]

SUPPORTED = ("fitted scikit-learn DecisionTreeClassifier, RandomForestClassifier, "
             "ExtraTreesClassifier, LogisticRegression, LinearSVC, RidgeClassifier(CV), "
             "SGDClassifier, Perceptron, OneVsRestClassifier of those, MLPClassifier; a "
             "torch.nn.Module; a Keras model; a path to an .onnx or .tflite file")
LIBRARY_FILE = "library.json"
LIBRARY_FORMAT = "kiloml-library"
LIBRARY_VERSION = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_NAME = 100
F32 = np.float32


# --- convert ---------------------------------------------------------------------------


def convert(model: Any, *, target: str = "cortex-m4f", calibration: Any = None,
            feature_names: list[str] | None = None, class_names: list[str] | None = None,
            name: str | None = None, prefix: str = "kml") -> Library:
    """A fitted model as a C library for ``target`` (a profile name or a .toml file).

    ``calibration``: typical inputs [N, ...] in the model's own layout, needed to quantize
    a float network to int8 (ignored by trees and linear models, whose C is exact).
    ``feature_names``: names of the input's features (a model on vectors) or channels (a
    network on windows [T, C]); ``class_names``: one per output, in order. Defaults come
    from the model (``feature_names_in_``, ``classes_``) or are numbered. ``prefix``: the
    C library's names (``gesture_classify`` ...), as a project's ``[library] prefix``."""
    from kiloml.codegen.prefix import check_prefix
    from kiloml.targets.profiles import load_profile

    check_prefix(prefix, where="prefix")

    if not isinstance(target, str) or not target:
        raise KilomlError(f"expected a target name, got {type(target).__name__}",
                          where="target")
    try:
        profile = load_profile(target)
    except KilomlError as exc:
        raise KilomlError(exc.message, file=exc.file, line=exc.line,
                          where=exc.where or "target") from None
    converted = _converted(model, calibration)
    converted.default_name = _default_name(model)
    pipeline = _pipeline(converted, feature_names, class_names, name)
    pipeline.library_prefix = prefix
    return Library(pipeline, profile.name, converted.source, converted.family,
                   converted.input_shape, converted.layout, list(converted.notes))


def _converted(model: Any, calibration: Any):
    from kiloml.conversion import networks, sklearn_models
    from kiloml.conversion.result import unsupported
    from kiloml.models.linear import LINEAR_ESTIMATORS, ONE_VS_REST

    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix.lower() not in (".onnx", ".tflite"):
            raise KilomlError(f"a path to a {path.suffix or 'file without suffix'}; kiloml "
                              f"converts .onnx and .tflite files (or, in Python: "
                              f"{SUPPORTED})", file=path)
        return networks.from_file(path, calibration)
    what = f"{type(model).__module__}.{type(model).__qualname__}"
    if sklearn_models.is_sklearn(model):
        kind = type(model).__name__
        known = (*sklearn_models.TREES, *LINEAR_ESTIMATORS, ONE_VS_REST, "MLPClassifier")
        if kind not in known:
            raise unsupported(f"scikit-learn's {kind}", SUPPORTED)
        sklearn_models.check_fitted(model)
        if kind in sklearn_models.TREES:
            return sklearn_models.trees(model)
        if kind == "MLPClassifier":
            return networks.from_mlp(model, calibration)
        return sklearn_models.linear(model)
    if networks.is_keras_model(model):  # before torch: Keras's torch backend is a Module
        return networks.from_keras(model, calibration)
    if networks.is_torch_module(model):
        return networks.from_torch(model, calibration)
    raise unsupported(what, SUPPORTED)


def _default_name(model: Any) -> str:
    """random_forest_classifier, cnn1d, model_int8 ...: the class or the file's name."""
    base = Path(model).stem if isinstance(model, (str, os.PathLike)) else \
        re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_",
               type(model).__name__)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", base).lower().strip("_.-")[:MAX_NAME]
    return name if NAME_PATTERN.fullmatch(name or "-") else "model"


def _check_names(names: Any, n: int, what: str) -> list[str]:
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__"):
        raise KilomlError(f"expected a list of {n} names, got {type(names).__name__}",
                          where=what)
    names = list(names)
    if len(names) != n:
        raise KilomlError(f"{len(names)} names; the model has {n}", where=what)
    for i, v in enumerate(names):
        if not isinstance(v, str) or not 0 < len(v) <= MAX_NAME or "*/" in v or \
                any(ord(ch) < 32 or ord(ch) == 127 for ch in v):
            raise KilomlError(f"name {i} ({str(v)[:40]!r}) is not a name of 1 to {MAX_NAME} "
                              "printable characters", where=what)
    if len(set(names)) != n:
        raise KilomlError("a name appears twice", where=what)
    return names


def _pipeline(c, feature_names: Any, class_names: Any, name: str | None):
    from kiloml.dsp.raw import RawWindow
    from kiloml.pipeline import Pipeline

    shape = c.model_shape
    rows, channels = (1, shape[0]) if len(shape) == 1 else (math.prod(shape[:-1]), shape[-1])
    if feature_names is None:
        feature_names = c.feature_names if c.feature_names is not None and \
            len(c.feature_names) == channels else \
            [f"x{i}" if rows == 1 else f"c{i}" for i in range(channels)]
    features = _check_names(feature_names, channels,
                            "feature_names" if rows == 1 else "feature_names (channels)")
    if class_names is None:
        class_names = c.classes if c.classes is not None else \
            [f"class{i}" for i in range(c.n_classes)]
    classes = _check_names(class_names, c.n_classes, "class_names")
    name = c.default_name if name is None else name
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise KilomlError(f"{str(name)[:40]!r} is not a library name (letters, digits, _ . -; "
                          f"at most 100)", where="name")
    return Pipeline(name=name, channels=features, sample_rate_hz=1.0, window_samples=rows,
                    stride_samples=rows, class_names=classes,
                    features=[RawWindow(rows, channels)], model=c.model)


# --- the library -------------------------------------------------------------------------


@dataclass
class Library:
    """A model as a C library for one target, and its Python reference.

    ``input_shape``: one input as ``predict`` takes it (a feature vector ``(F,)``, a
    PyTorch 1-D CNN's ``(C, T)`` ...). The C takes the same values channels last
    (``kml_predict``; see the generated README.md)."""

    pipeline: Any  # kiloml.pipeline.Pipeline
    target: str
    source: str
    family: str  # "trees", "linear", "network" (or "project")
    input_shape: tuple[int, ...]
    layout: Any = None  # OnnxLayout: input layout -> the C's (None: the same order)
    notes: list[str] = field(default_factory=list)
    verified: dict = field(default_factory=dict)  # target -> figures of the last verify

    # --- names -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def class_names(self) -> list[str]:
        return list(self.pipeline.class_names)

    @property
    def feature_names(self) -> list[str]:
        return list(self.pipeline.channels)

    # --- the reference ---------------------------------------------------------------

    def _windows(self, x: Any, what: str = "x") -> np.ndarray:
        """Inputs [N, *input_shape] -> the pipeline's windows [N, T, C] float32."""
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise KilomlError(f"not an array: {exc}"[:200], where=what) from None
        shape = tuple(self.input_shape)
        want = "[N" + "".join(f", {d}" for d in shape) + "]"
        if a.dtype.kind not in "fiu":
            raise KilomlError(f"dtype {a.dtype}; expected numbers {want}", where=what)
        if a.ndim == len(shape) and tuple(a.shape) == shape:
            raise KilomlError(f"shape {list(a.shape)} is one input; pass a batch {want} "
                              "(x[None] for one)", where=what)
        if a.ndim != len(shape) + 1 or tuple(a.shape[1:]) != shape:
            raise KilomlError(f"shape {list(a.shape)}; the model reads {want}", where=what)
        with np.errstate(over="ignore", invalid="ignore"):
            a = a.astype(F32)
        if self.layout is not None:
            a = self.layout.to_ir(a.reshape(len(a), *self.layout.onnx_shape[1:]))
        p = self.pipeline
        return np.ascontiguousarray(a.reshape(len(a), p.window_samples, p.n_channels), F32)

    def _model_input(self, x: Any) -> np.ndarray:
        return self.pipeline.model_input(self._windows(x))

    def predict(self, x: Any) -> np.ndarray:
        """Class indices (int64, into ``class_names``) for inputs [N, *input_shape]: what
        the C returns, exactly. Trees and linear models: scikit-learn's predict (linear:
        -1 for an input with NaN or inf, which scikit-learn refuses); networks: the int8
        network (bit-exact with TFLM)."""
        return np.asarray(self.pipeline.model.predict(self._model_input(x)), np.int64)

    def scores(self, x: Any) -> np.ndarray:
        """float32 [N, classes]: the scores the C writes (out->scores), bit for bit."""
        return np.asarray(self.pipeline.device_scores(self._model_input(x)), F32)

    def float_predict(self, x: Any) -> np.ndarray | None:
        """A network's float (unquantized) predictions, to measure what int8 costs; None
        for trees and linear models (their C is exact) and int8 files."""
        model = self.pipeline.model
        if not hasattr(model, "predict_proba_float"):
            return None
        proba = model.predict_proba_float(self._model_input(x))
        return None if proba is None else np.argmax(proba, axis=1).astype(np.int64)

    # --- C ---------------------------------------------------------------------------

    def write_c(self, folder: str | Path) -> Path:
        """The C library alone into ``folder`` (created; files of the same names are
        replaced): kiloml_model.c/.h, kml_config.h, the runtime, CMakeLists.txt, README."""
        from kiloml.codegen.library import write_library

        folder = Path(folder)
        write_library(self.pipeline, folder)
        return folder

    @property
    def resources(self) -> dict:
        """Flash, RAM, stack, instructions, latency and energy on the target: measured by
        the last ``verify`` on it (QEMU and the linked firmware), else the calibrated
        estimate (``"estimated": true``)."""
        if self.target in self.verified:
            return self.verified[self.target]["resources"][self.target]
        from kiloml.targets.estimate import estimate_resources
        from kiloml.targets.profiles import load_profile

        est = estimate_resources(self.pipeline, load_profile(self.target),
                                 len(self.pipeline.feature_names()))
        return {**est, "estimated": True}

    def verify(self, x: Any, target: str | None = None, *, emulate: bool = True,
               work: str | Path | None = None) -> dict:
        """Build the library, run every input through it on the host and (emulate) in
        QEMU on ``target`` (default: the library's), and compare with ``predict`` and
        ``scores``: the figures ``kiloml verify`` gives (parity per place, resources per
        target, the estimate), plus ``kml_predict`` called directly on the host. ``work``
        keeps the build (default: a temporary folder)."""
        from kiloml.library_verify import verify_library

        figures = verify_library(self, self._windows(x), target or self.target,
                                 emulate=emulate, work=None if work is None else Path(work))
        self.verified[figures["target"]] = figures
        return figures

    # --- saving ----------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """``folder``: firmware/ (the C library), pipeline.json + .npz (kiloml.persist, no
        pickle) and library.json; written into a staging folder and moved into place. An
        existing folder must be empty or a library kiloml saved."""
        from kiloml.atomic import write_text_atomically
        from kiloml.codegen.library import write_library
        from kiloml.outputs import check_output_folder, make_staging, replace_folder
        from kiloml.persist.pipeline_state import save_pipeline

        folder = Path(folder)
        check_output_folder(folder, "library", [], name="Library.save folder")
        try:
            staging = make_staging(folder, "library")
        except OSError as exc:
            raise KilomlError(f"cannot be written: {exc.strerror or exc}", file=folder) \
                from None
        try:
            write_library(self.pipeline, staging / "firmware")
            save_pipeline(self.pipeline, staging / "pipeline.json")
            write_text_atomically(staging / LIBRARY_FILE,
                                  json.dumps(self._document(), indent=1) + "\n")
            replace_folder(staging, folder, "library")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return folder

    def _document(self) -> dict:
        return {"format": LIBRARY_FORMAT, "version": LIBRARY_VERSION,
                "kiloml_version": __version__, "target": self.target, "source": self.source,
                "family": self.family, "input_shape": [int(d) for d in self.input_shape],
                "layout": None if self.layout is None else self.layout.to_json(),
                "notes": list(self.notes)}

    @classmethod
    def load(cls, folder: str | Path) -> Library:
        """A library ``save`` wrote: every file checked, nothing unpickled."""
        from kiloml.library_files import read_library

        return read_library(Path(folder), cls)

    def __repr__(self) -> str:
        return (f"Library({self.name!r}, {self.source}, target={self.target!r}, "
                f"input_shape={tuple(self.input_shape)}, classes={len(self.class_names)})")


# --- projects ------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What ``Project.run`` (and ``kiloml run``) made: metrics.json's content, the
    library (loaded back from the run folder), the report, and whether parity held and
    the budgets were met."""

    output_dir: Path
    metrics: dict
    ok: bool
    library: Library
    report: Path


class Project:
    """A kiloml.toml project: ``Project.load(path).run()`` is ``kiloml run path``."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded  # kiloml.project.LoadedProject

    @classmethod
    def load(cls, path: str | Path) -> Project:
        from kiloml.project import load_project

        return cls(load_project(path))

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def name(self) -> str:
        return self.loaded.config.name

    @property
    def config(self) -> Any:
        return self.loaded.config

    @property
    def output_dir(self) -> Path:
        return self.loaded.output_dir

    def run(self, *, emulate: bool = True) -> RunResult:
        """Train, evaluate, generate and verify (host, and QEMU when ``emulate``): the one
        run path the CLI takes (kiloml.run.run_project)."""
        from kiloml.library_files import run_library
        from kiloml.results import REPORT_FILE
        from kiloml.run import run_project

        result = run_project(self.loaded.path, emulate=emulate)
        library = run_library(result.output_dir, Library, self.loaded.target_profile().name,
                              result.metrics)
        return RunResult(result.output_dir, result.metrics, result.ok, library,
                         result.output_dir / REPORT_FILE)

    def __repr__(self) -> str:
        return f"Project({self.name!r}, {str(self.path)!r})"
