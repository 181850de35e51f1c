"""A Keras model's layers written as the float graph IR, read from the layers' configs and
weights (``get_config``, ``get_weights``): no TensorFlow, no ONNX round trip, and no Keras
import here (the model object brings its own). Keras is channels last like the IR, so
layers map one to one: Dense -> FULLY_CONNECTED, Conv1D/2D -> CONV_2D (a 1-D input
``[T, C]`` is the IR's ``[1, T, C]`` image), DepthwiseConv1D/2D -> DEPTHWISE_CONV_2D,
pooling, global pooling -> MEAN / REDUCE_MAX, Flatten / Reshape -> RESHAPE, activations
(fused into the layer before them where TFLite fuses), BatchNormalization folded into the
layer before it (or a MUL and an ADD), Dropout and noise layers dropped.

The model must be one chain of layers (a Sequential model, or a functional one without
branches) with one input and one output."""

from __future__ import annotations

import math

import numpy as np

from kiloml.errors import KilomlError
from kiloml.nn.graph import Graph, Tensor

F32 = np.float32
INFERENCE_IDENTITY = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise",
                      "GaussianDropout", "AlphaDropout", "ActivityRegularization")
SUPPORTED_LAYERS = ("InputLayer", "Dense", "Conv1D", "Conv2D", "DepthwiseConv1D",
                    "DepthwiseConv2D", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
                    "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten", "Reshape",
                    "BatchNormalization", "Activation", "ReLU", "Softmax",
                    *INFERENCE_IDENTITY)
ACTIVATIONS = {"linear": None, "relu": "RELU", "relu6": "RELU6", "softmax": "SOFTMAX",
               "sigmoid": "LOGISTIC", "tanh": "TANH"}
FUSABLE = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def _error(layer, message: str) -> KilomlError:
    return KilomlError(message, where=f"Keras layer {layer.name!r} ({type(layer).__name__})")


class _Writer:
    def __init__(self, name: str) -> None:
        self.g = Graph(tensors=[], ops=[], inputs=[], outputs=[], name=name,
                       description="Keras model")
        self.x = -1
        self.rank = 0  # of the Keras tensor: 2 vector, 3 sequence, 4 image
        self.last_weighted: int | None = None  # the op BatchNorm may fold into

    @property
    def shape(self) -> tuple[int, ...]:
        return self.g.tensors[self.x].shape

    def const(self, name: str, data: np.ndarray) -> int:
        data = np.ascontiguousarray(data, dtype=F32)
        return self.g.add_tensor(Tensor(name, data.shape, "float32", data=data))

    def op(self, kind: str, inputs: list[int], shape: tuple[int, ...], name: str,
           **options: object) -> int:
        out = self.g.add_tensor(Tensor(name, shape, "float32"))
        self.g.add_op(kind, inputs, [out], name=name, **options)
        self.x = out
        self.last_weighted = len(self.g.ops) - 1 if kind in FUSABLE else None
        return out

    def reshape(self, shape: tuple[int, ...], name: str) -> None:
        if self.shape == shape:
            return
        target = self.g.add_tensor(Tensor(f"{name}/shape", (len(shape),), "int32",
                                          data=np.array(shape, np.int32)))
        keep = self.last_weighted  # a reshape moves no values: BatchNorm still folds
        self.op("RESHAPE", [self.x, target], shape, name)
        self.last_weighted = keep

    def as_image(self, name: str) -> None:
        """A sequence [1, T, C] seen as the image [1, 1, T, C] (a reshape aliases)."""
        if len(self.shape) == 3:
            self.reshape((1, 1, *self.shape[1:]), f"{name}/as_image")

    def activation(self, layer, name: str, what: str) -> None:
        if what not in ACTIVATIONS:
            raise _error(layer, f"activation {what!r}; kiloml converts "
                                f"{', '.join(ACTIVATIONS)}")
        kind = ACTIVATIONS[what]
        if kind is None:
            return
        ops = self.g.ops
        if kind in ("RELU", "RELU6") and self.last_weighted == len(ops) - 1 and \
                ops[-1].options.get("fused_activation") == "NONE":
            ops[-1].options["fused_activation"] = kind  # TFLite fuses it into the layer
            self.last_weighted = None  # BatchNorm after a ReLU does not fold
            return
        self.op(kind, [self.x], self.shape, f"{name}/{what}")


def _ints(value, n: int) -> tuple[int, ...]:
    v = tuple(value) if isinstance(value, (list, tuple)) else (value,) * n
    return tuple(int(a) for a in v)


def _padding(layer, cfg: dict) -> str:
    pad = str(cfg.get("padding", "valid")).lower()
    if pad not in ("valid", "same"):
        raise _error(layer, f"padding {pad!r}; kiloml converts 'valid' and 'same'")
    return pad.upper()


def _channels_last(layer, cfg: dict) -> None:
    fmt = cfg.get("data_format")
    if fmt not in (None, "channels_last"):
        raise _error(layer, f"data_format {fmt!r}; kiloml converts channels_last layers")


def _conv_out(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    if padding == "SAME":
        return -(-size // stride)
    return (size - (kernel - 1) * dilation - 1) // stride + 1


def _conv(w: _Writer, layer, cfg: dict, weights: list[np.ndarray], one_d: bool,
          depthwise: bool) -> None:
    _channels_last(layer, cfg)
    if (cfg.get("groups") or 1) != 1:
        raise _error(layer, "grouped convolutions (groups > 1) are not converted")
    need = 3 if one_d else 4
    if w.rank != need:
        raise _error(layer, f"reads a tensor of rank {w.rank}; expected {need}")
    n = 1 if one_d else 2
    k = _ints(cfg["kernel_size"], n)
    s = _ints(cfg["strides"], n)
    d = _ints(cfg.get("dilation_rate", 1), n)
    if one_d:
        k, s, d = (1, *k), (1, *s), (1, *d)
    padding = _padding(layer, cfg)
    w.as_image(layer.name)
    _, h, width, c = w.shape
    kernel = weights[0]
    bias = weights[1] if cfg.get("use_bias", True) else None
    if depthwise:
        mult = int(cfg.get("depth_multiplier", 1))
        kernel = kernel.reshape(k[0], k[1], c * mult)[None]  # [1, kh, kw, C * M]
        out_c = c * mult
        kind, extra = "DEPTHWISE_CONV_2D", {"depth_multiplier": mult}
    else:
        kernel = kernel.reshape(k[0], k[1], c, -1).transpose(3, 0, 1, 2)  # OHWI
        out_c = kernel.shape[0]
        kind, extra = "CONV_2D", {}
    if bias is None:
        bias = np.zeros(out_c, F32)
    out_h = _conv_out(h, k[0], s[0], d[0], padding)
    out_w = _conv_out(width, k[1], s[1], d[1], padding)
    if out_h < 1 or out_w < 1:
        raise _error(layer, f"the kernel does not fit the input {list(w.shape[1:])}")
    wi, bi = w.const(f"{layer.name}/kernel", kernel), w.const(f"{layer.name}/bias", bias)
    w.op(kind, [w.x, wi, bi], (1, out_h, out_w, out_c), layer.name, padding=padding,
         stride_h=s[0], stride_w=s[1], dilation_h=d[0], dilation_w=d[1], **extra)
    w.activation(layer, layer.name, str(cfg.get("activation", "linear")))
    if one_d:
        w.reshape((1, out_w, out_c), f"{layer.name}/as_sequence")


def _dense(w: _Writer, layer, cfg: dict, weights: list[np.ndarray]) -> None:
    if w.rank != 2:
        raise _error(layer, f"Dense on a tensor of rank {w.rank} (per time step); flatten or "
                            "pool the sequence first")
    kernel = weights[0].T  # [out, in]
    bias = weights[1] if cfg.get("use_bias", True) else np.zeros(kernel.shape[0], F32)
    wi, bi = w.const(f"{layer.name}/kernel", kernel), w.const(f"{layer.name}/bias", bias)
    w.op("FULLY_CONNECTED", [w.x, wi, bi], (1, kernel.shape[0]), layer.name)
    w.activation(layer, layer.name, str(cfg.get("activation", "linear")))


def _pool(w: _Writer, layer, cfg: dict, one_d: bool, kind: str) -> None:
    _channels_last(layer, cfg)
    need = 3 if one_d else 4
    if w.rank != need:
        raise _error(layer, f"reads a tensor of rank {w.rank}; expected {need}")
    n = 1 if one_d else 2
    p = _ints(cfg["pool_size"], n)
    s = _ints(cfg.get("strides") or cfg["pool_size"], n)
    if one_d:
        p, s = (1, *p), (1, *s)
    padding = _padding(layer, cfg)
    w.as_image(layer.name)
    _, h, width, c = w.shape
    out = (1, _conv_out(h, p[0], s[0], 1, padding), _conv_out(width, p[1], s[1], 1, padding), c)
    if out[1] < 1 or out[2] < 1:
        raise _error(layer, f"the pool does not fit the input {list(w.shape[1:])}")
    w.op(kind, [w.x], out, layer.name, padding=padding, stride_h=s[0], stride_w=s[1],
         filter_h=p[0], filter_w=p[1])
    if one_d:
        w.reshape((1, out[2], c), f"{layer.name}/as_sequence")


def _global(w: _Writer, layer, cfg: dict, one_d: bool, kind: str) -> None:
    need = 3 if one_d else 4
    if w.rank != need:
        raise _error(layer, f"reads a tensor of rank {w.rank}; expected {need}")
    if cfg.get("keepdims"):
        raise _error(layer, "keepdims = True is not converted")
    _channels_last(layer, cfg)
    w.as_image(layer.name)
    c = w.shape[-1]
    axes = w.g.add_tensor(Tensor(f"{layer.name}/axes", (2,), "int32",
                                 data=np.array([1, 2], np.int32)))
    w.op(kind, [w.x, axes], (1, c), layer.name, keep_dims=False)


def _batch_norm(w: _Writer, layer, cfg: dict, weights: list[np.ndarray]) -> None:
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if axis not in (-1, w.rank - 1):
        raise _error(layer, f"axis {axis}; kiloml converts BatchNormalization over the last "
                            "(channel) axis")
    it = iter(weights)
    c = w.shape[-1]
    gamma = next(it) if cfg.get("scale", True) else np.ones(c)
    beta = next(it) if cfg.get("center", True) else np.zeros(c)
    mean, var = next(it), next(it)
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64)
                                                    + float(cfg.get("epsilon", 1e-3)))
    shift = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    # fold into the layer right before (no activation after it): its output channels
    prev = w.g.ops[w.last_weighted] if w.last_weighted is not None else None
    if prev is not None and prev.options.get("fused_activation") == "NONE" and \
            (prev.outputs[0] == w.x or _aliases(w, prev.outputs[0])):
        kernel, bias = w.g.tensors[prev.inputs[1]], w.g.tensors[prev.inputs[2]]
        data = kernel.data.astype(np.float64)
        if prev.kind == "DEPTHWISE_CONV_2D":
            data = data * scale  # channels last: [1, kh, kw, C]
        else:
            data = data * scale.reshape(-1, *([1] * (data.ndim - 1)))
        kernel.data = data.astype(F32)
        bias.data = (bias.data.astype(np.float64) * scale + shift).astype(F32)
        return
    mul = w.const(f"{layer.name}/scale", scale.astype(F32))
    add = w.const(f"{layer.name}/shift", shift.astype(F32))
    w.op("MUL", [w.x, mul], w.shape, f"{layer.name}/mul")
    w.op("ADD", [w.x, add], w.shape, f"{layer.name}/add")


def _aliases(w: _Writer, tensor: int) -> bool:
    """The current tensor is ``tensor`` reshaped (a 1-D convolution's sequence view)."""
    op = w.g.ops[-1] if w.g.ops else None
    return op is not None and op.kind == "RESHAPE" and op.inputs[0] == tensor and \
        op.outputs[0] == w.x


def _reshape(w: _Writer, layer, cfg: dict) -> None:
    target = tuple(int(d) for d in cfg["target_shape"])
    size = math.prod(w.shape)
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        target = tuple(size // known if d == -1 else d for d in target)
    if math.prod(target) != size or len(target) not in (1, 2, 3):
        raise _error(layer, f"target shape {list(cfg['target_shape'])} of an input of "
                            f"{size} values")
    if w.rank == 4 or len(w.shape) == 4:  # flatten an image first: NHWC order as Keras
        w.reshape((1, size), f"{layer.name}/flat")
    w.reshape((1, *target), layer.name)
    w.rank = len(target) + 1


def _chain(model) -> list:
    """The layers in order, checked to be one chain (every layer reads the one before)."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None) or []
    if len(inputs) != 1 or len(outputs) != 1:
        raise KilomlError(f"the Keras model has {len(inputs)} inputs and {len(outputs)} "
                          "outputs; kiloml converts one of each", where="model")
    previous = inputs[0]
    for layer in layers:
        try:
            source = layer.input
        except (AttributeError, ValueError):  # a layer used more than once
            source = None
        if source is not previous:
            raise KilomlError(f"the Keras model is not one chain of layers (layer "
                              f"{layer.name!r} does not read the layer before it); kiloml "
                              f"converts Sequential models and functional ones without "
                              f"branches", where="model")
        previous = layer.output
    if layers and previous is not outputs[0]:
        raise KilomlError("the Keras model's output is not its last layer's", where="model")
    return layers


def keras_graph(model) -> tuple[Graph, tuple[int, ...]]:
    """(float graph, the per-sample input shape) of a built Keras model."""
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple) or len(shape) < 2 or shape[0] is not None or \
            any(not isinstance(d, int) or d < 1 for d in shape[1:]):
        raise KilomlError(f"the Keras model's input shape is {shape}; kiloml needs a built "
                          "model with a fixed shape per sample ([None, ...]: give "
                          "keras.Input(shape=...) )", where="model")
    per_sample = tuple(shape[1:])
    if len(per_sample) > 3:
        raise KilomlError(f"an input of rank {len(per_sample)} per sample; kiloml converts "
                          "vectors, sequences [T, C] and images [H, W, C]", where="model")
    layers = _chain(model)
    w = _Writer(str(getattr(model, "name", "keras_model")))
    w.x = w.g.add_tensor(Tensor("input", (1, *per_sample), "float32"))
    w.g.inputs = [w.x]
    w.rank = len(per_sample) + 1
    for layer in layers:
        kind = type(layer).__name__
        cfg = layer.get_config()
        weights = [np.asarray(a) for a in layer.get_weights()]
        if kind == "Dense":
            _dense(w, layer, cfg, weights)
        elif kind in ("Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D"):
            _conv(w, layer, cfg, weights, kind.endswith("1D"), kind.startswith("Depthwise"))
        elif kind in ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D"):
            _pool(w, layer, cfg, kind.endswith("1D"),
                  "MAX_POOL_2D" if kind.startswith("Max") else "AVERAGE_POOL_2D")
        elif kind in ("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
                      "GlobalMaxPooling2D"):
            _global(w, layer, cfg, kind.endswith("1D"),
                    "MEAN" if "Average" in kind else "REDUCE_MAX")
            w.rank = 2
        elif kind == "Flatten":
            w.reshape((1, math.prod(w.shape)), layer.name)
            w.rank = 2
        elif kind == "Reshape":
            _reshape(w, layer, cfg)
        elif kind == "BatchNormalization":
            _batch_norm(w, layer, cfg, weights)
        elif kind == "Activation":
            w.activation(layer, layer.name, str(cfg.get("activation", "linear")))
        elif kind == "ReLU":
            if cfg.get("negative_slope", 0.0) or cfg.get("threshold", 0.0):
                raise _error(layer, "a leaky or thresholded ReLU is not converted")
            w.activation(layer, layer.name,
                         "relu6" if cfg.get("max_value") == 6.0 else
                         "relu" if cfg.get("max_value") is None else "?max_value")
        elif kind == "Softmax":
            if cfg.get("axis", -1) not in (-1, w.rank - 1):
                raise _error(layer, "softmax over another axis than the last")
            w.activation(layer, layer.name, "softmax")
        elif kind in INFERENCE_IDENTITY:
            continue
        else:
            raise _error(layer, f"is not a layer kiloml converts; supported: "
                                f"{', '.join(SUPPORTED_LAYERS)}")
    if w.rank != 2:
        w.reshape((1, math.prod(w.shape)), "output/flat")
    w.g.outputs = [w.x]
    return w.g, per_sample
