"""A converted model: the pipeline's model stage and the layout of one input."""

from __future__ import annotations

from dataclasses import dataclass, field

from kiloml.errors import KilomlError


@dataclass
class Converted:
    """``model`` reads one input of ``model_shape`` (channels last, as the C reads it);
    the user gives inputs of ``input_shape`` (``layout`` moves them, None: the same
    order). ``classes`` / ``feature_names``: what the model itself knows of them."""

    model: object
    family: str  # "trees", "linear", "network"
    source: str  # what it was made from ("RandomForestClassifier", "torch (ONNX) ...")
    input_shape: tuple[int, ...]
    model_shape: tuple[int, ...]
    n_classes: int
    layout: object | None = None  # an OnnxLayout: user layout -> model layout
    classes: list[str] | None = None
    feature_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    default_name: str = "model"


def unsupported(what: str, supported: str) -> KilomlError:
    return KilomlError(f"{what} is not a model kiloml converts; supported: {supported}",
                       where="model")
