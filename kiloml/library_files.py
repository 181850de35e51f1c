"""A saved Library (``Library.save``) read back, and a run folder as a Library.

The folder may come from someone else: library.json is read bounded and field by field
(kiloml.persist.fields), the pipeline through kiloml.persist (never unpickled), and the
two are checked against each other (the input's shape and layout hold the pipeline's
input values)."""

from __future__ import annotations

import math
from pathlib import Path

from kiloml.codegen.library import reads_input_as_is
from kiloml.errors import KilomlError
from kiloml.outputs import require_kiloml_folder
from kiloml.persist.archive import ArrayBook, Document, describe, read_json
from kiloml.persist.fields import Fields
from kiloml.persist.pipeline_state import PIPELINE_FILE, load_pipeline

LIBRARY_FILE = "library.json"
FAMILIES = ("trees", "linear", "network")
MAX_DIM = 1 << 24


def _layout(f: Fields, key: str, input_shape: tuple[int, ...], n_values: int):
    from kiloml.nn.onnx_import import OnnxLayout

    g = f.object(key)
    name = g.str("name", max_length=200)
    onnx_shape = tuple(g.ints("onnx_shape", 1, MAX_DIM, max_items=5))
    ir_shape = tuple(g.ints("ir_shape", 1, MAX_DIM, max_items=5))
    axes = g.ints("axes", -1, 4, max_items=5)
    order = g.raw("feature_order")
    g.done()
    if order is not None:
        raise g.error("feature_order", "an input layout has no feature order")
    if onnx_shape != (1, *input_shape):
        raise g.error("onnx_shape", f"{list(onnx_shape)} is not [1, *input_shape]")
    kept = [a for a in axes if a >= 0]
    if len(axes) != len(ir_shape) or sorted(kept) != list(range(len(onnx_shape))) or \
            math.prod(ir_shape) != n_values or \
            any(ir_shape[i] != (1 if a < 0 else onnx_shape[a]) for i, a in enumerate(axes)):
        raise g.error("axes", f"{axes} does not move {list(onnx_shape)} to {list(ir_shape)}")
    return OnnxLayout(name, onnx_shape, ir_shape, tuple(None if a < 0 else a for a in axes))


def read_library(folder: Path, cls):
    from kiloml.targets.profiles import load_profile

    require_kiloml_folder(folder, "library", what="the library folder")
    path = folder / LIBRARY_FILE
    data = read_json(path)
    doc = Document(path, ArrayBook({}, path))
    f = Fields(data, "", doc)
    if f.str("format", max_length=100) != "kiloml-library":
        raise f.error("format", "not a kiloml library file")
    if f.int("version") != 1:
        raise f.error("version", "this kiloml reads version 1: save the library again")
    f.str("kiloml_version", max_length=100)
    target = f.str("target", max_length=200)
    try:
        profile = load_profile(target)
    except KilomlError as exc:
        raise f.error("target", exc.message) from None
    source = f.str("source", max_length=200)
    family = f.str("family", choices=FAMILIES)
    input_shape = tuple(f.ints("input_shape", 1, MAX_DIM, max_items=4))
    notes = f.strings("notes", 20)
    pipeline = load_pipeline(folder / PIPELINE_FILE)
    if not reads_input_as_is(pipeline):
        raise KilomlError("the pipeline has stages before its model; a converted model's "
                          "library has none", file=folder / PIPELINE_FILE)
    n_values = pipeline.window_samples * pipeline.n_channels
    if not input_shape or math.prod(input_shape) != n_values:
        raise f.error("input_shape", f"{list(input_shape)} does not hold the model's "
                                     f"{n_values} inputs")
    layout = f.optional("layout", lambda k: _layout(f, k, input_shape, n_values))
    f.done()
    kind = {"trees": "TreeModel", "linear": "LinearModel", "network": "NeuralModel"}[family]
    if type(pipeline.model).__name__ != kind:
        raise f.error("family", f"{family!r}, but the pipeline's model is a "
                                f"{describe(pipeline.model)}")
    return cls(pipeline, profile.name, source, family, input_shape, layout, list(notes))


def run_library(out: Path, cls, target: str, metrics: dict | None = None):
    """The library of a `kiloml run` folder: it reads windows [T, C] of preprocessed
    samples (kml_classify); its measured figures are the run's."""
    pipeline = load_pipeline(out / PIPELINE_FILE)
    lib = cls(pipeline, target, f"project {pipeline.name}", "project",
              (pipeline.window_samples, pipeline.n_channels))
    if metrics is not None and target in metrics.get("resources", {}):
        lib.verified[target] = {"target": target, "parity": metrics.get("parity", {}),
                                "resources": metrics["resources"],
                                "estimates": metrics.get("estimates", {})}
    return lib
