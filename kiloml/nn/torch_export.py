"""Trained torch templates -> float32 graph IR.

``to_graph(module, input_shape)`` writes the eval-mode maths of a template
(``kiloml.nn.torch_models``) as IR operators:

- BatchNorm (running statistics) and the input standardization (when the
  template's ``standardize`` is ``"folded"``, the default) are folded into the
  neighbouring convolution / fully-connected weights and biases, in float64,
  then cast to float32 once; with ``"external"`` the graph takes standardized
  inputs (``torch_models.graph_inputs``);
- weights are transposed to TFLite layouts (Conv1d ``[O, I, k]`` -> OHWI
  ``[O, 1, k, I]``; Conv2d ``[O, I, kh, kw]`` -> ``[O, kh, kw, I]``; depthwise
  ``[C*M, 1, kh, kw]`` -> ``[1, kh, kw, C*M]``);
- ReLU is fused into the producing op; padding is SAME/VALID when it is exactly
  TFLite's, else an explicit PAD op before a VALID convolution;
- global average pooling is MEAN over axes [1, 2]; the graph ends with SOFTMAX.

The 1-D model's input is ``[1, T, C]`` and the dscnn's ``[1, frames, coefs]``,
each reshaped to NHWC inside the graph, so kiloml windows feed in directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kiloml.nn.graph import Graph, Tensor
from kiloml.nn.op_params import out_size, padding_before
from kiloml.nn.torch_models import CNN1D, DSCNN, MLP, ConvBN, Standardize, TemplateModel
from kiloml.optional import needs

with needs("torch", "a neural-network model"):
    import torch
    from torch import nn


class _Builder:
    def __init__(self, name: str, description: str) -> None:
        self.g = Graph(tensors=[], ops=[], inputs=[], outputs=[], name=name,
                       description=description)

    def activation(self, name: str, shape: Sequence[int]) -> int:
        return self.g.add_tensor(Tensor(name, tuple(shape), "float32"))

    def const(self, name: str, data: np.ndarray, dtype: str = "float32") -> int:
        data = np.asarray(data, dtype)
        return self.g.add_tensor(Tensor(name, data.shape, dtype, data=data))

    def op(self, kind: str, inputs: list[int], out_shape: Sequence[int], name: str,
           **options: object) -> int:
        out = self.activation(name, out_shape)
        self.g.add_op(kind, inputs, [out], name=name, **options)
        return out

    def shape(self, index: int) -> tuple[int, ...]:
        return self.g.tensors[index].shape


WeightsBias = tuple[np.ndarray, np.ndarray]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def _fold_input_norm(w: np.ndarray, b: np.ndarray, norm: Standardize) -> WeightsBias:
    """Fold ``(x - mean) / std`` (per input channel, axis 1 of torch weights) into w, b."""
    mean, std = _np(norm.mean), _np(norm.std)
    shape = (1, -1) + (1,) * (w.ndim - 2)
    w_folded = w / std.reshape(shape)
    b_folded = b - (w_folded * mean.reshape(shape)).reshape(w.shape[0], -1).sum(axis=1)
    return w_folded, b_folded


def _fold_bn(w: np.ndarray, b: np.ndarray, bn: nn.modules.batchnorm._BatchNorm) -> WeightsBias:
    """gamma * (y - mean) / sqrt(var + eps) + beta, per output channel (axis 0 of w)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    scale = 1.0 / np.sqrt(_np(bn.running_var) + float(bn.eps))
    if bn.weight is not None:
        scale = scale * _np(bn.weight)
    shift = -_np(bn.running_mean) * scale
    if bn.bias is not None:
        shift = shift + _np(bn.bias)
    return w * scale.reshape((-1,) + (1,) * (w.ndim - 1)), b * scale + shift


def _conv(b: _Builder, x: int, block: ConvBN, name: str, norm: Standardize | None = None) -> int:
    """One ConvBN block on NHWC tensor ``x`` (1-D convs have H = 1)."""
    conv = block.conv
    w = _np(conv.weight)
    bias = _np(conv.bias) if conv.bias is not None else np.zeros(w.shape[0])
    if norm is not None:
        w, bias = _fold_input_norm(w, bias, norm)
    w, bias = _fold_bn(w, bias, block.bn)
    one_d = w.ndim == 3
    if one_d:  # [O, I, k] -> [O, I, 1, k]: H = 1
        w = w[:, :, None, :]
    kernel = (1, *block.kernel) if one_d else tuple(block.kernel)
    stride = (1, *block.stride) if one_d else tuple(block.stride)
    _, h, wd, c = b.shape(x)
    sizes = [wd] if one_d else [h, wd]
    pads = block.pads(sizes)
    if one_d:
        pads = [(0, 0), *pads]
    out_hw = [(n + p0 + p1 - k) // s + 1
              for n, (p0, p1), k, s in zip((h, wd), pads, kernel, stride, strict=True)]
    # SAME is exact when it gives the same output size and the same padding before (then
    # any padding after is the same or unread), judged by the reference's own formulas.
    geometry = list(zip((h, wd), kernel, stride, pads, out_hw, strict=True))
    same = all(out_size("SAME", n, k, s) == o and padding_before(s, 1, n, k, o) == p[0]
               for n, k, s, p, o in geometry)
    if all(p == (0, 0) for p in pads):
        padding = "VALID"
    elif same:
        padding = "SAME"
    else:  # not expressible as SAME: zero-pad explicitly, then a VALID conv
        paddings = np.array([(0, 0), *pads, (0, 0)], np.int32)
        x = b.op("PAD", [x, b.const(f"{name}/paddings", paddings, "int32")],
                 (1, h + sum(pads[0]), wd + sum(pads[1]), c), f"{name}/pad")
        padding = "VALID"
    activation = "RELU" if block.relu else "NONE"
    options = dict(padding=padding, stride_h=stride[0], stride_w=stride[1],
                   fused_activation=activation)
    out_c = w.shape[0]
    if block.depthwise:
        if conv.groups != conv.in_channels:
            raise ValueError(f"{name}: grouped convolutions other than depthwise are not "
                             "supported")
        weights = w.transpose(1, 2, 3, 0)  # [C*M, 1, kh, kw] -> [1, kh, kw, C*M]
        kind = "DEPTHWISE_CONV_2D"
        options["depth_multiplier"] = out_c // conv.in_channels
    else:
        weights = w.transpose(0, 2, 3, 1)  # [O, I, kh, kw] -> OHWI
        kind = "CONV_2D"
    inputs = [x, b.const(f"{name}/weights", weights), b.const(f"{name}/bias", bias)]
    return b.op(kind, inputs, (1, *out_hw, out_c), name, **options)


def _dense(b: _Builder, x: int, layer: nn.Linear, name: str, relu: bool,
           norm: Standardize | None = None) -> int:
    w = _np(layer.weight)  # [out, in]: already TFLite's layout
    bias = _np(layer.bias) if layer.bias is not None else np.zeros(w.shape[0])
    if norm is not None:
        w, bias = _fold_input_norm(w, bias, norm)
    inputs = [x, b.const(f"{name}/weights", w), b.const(f"{name}/bias", bias)]
    return b.op("FULLY_CONNECTED", inputs, (1, w.shape[0]), name,
                fused_activation="RELU" if relu else "NONE")


def _head(b: _Builder, x: int, head: nn.Linear) -> None:
    """Global average pooling over H, W -> FC -> SOFTMAX."""
    axes = b.const("gap/axes", np.array([1, 2], np.int32), "int32")
    x = b.op("MEAN", [x, axes], (1, b.shape(x)[3]), "gap", keep_dims=False)
    logits = _dense(b, x, head, "logits", relu=False)
    _finish(b, logits)


def _finish(b: _Builder, logits: int) -> None:
    probs = b.op("SOFTMAX", [logits], b.shape(logits), "probabilities", beta=1.0)
    b.g.outputs = [probs]


def to_graph(module: TemplateModel, input_shape: Sequence[int] | None = None) -> Graph:
    """A float32 IR graph computing ``softmax(module.eval()(x))`` for one sample.

    The graph takes ``torch_models.graph_inputs(module, x)``: raw ``x`` by default.

    ``input_shape`` is one sample's shape without the batch axis ((F,), (T, C) or
    (frames, coefs)); a leading batch of 1 is accepted. Defaults to the shape the
    template was built for. BatchNorm uses its running statistics whatever the
    module's mode; dropout is dropped.
    """
    shape = tuple(int(d) for d in (input_shape if input_shape is not None
                                    else module.input_shape))
    expected = len(module.input_shape)
    if len(shape) == expected + 1 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != expected:
        raise ValueError(f"{module.template} expects a per-sample input shape of rank "
                         f"{expected}, got {shape}")
    inputs = "raw inputs" if module.norm.mode == "folded" else "standardized inputs"
    b = _Builder(module.template, f"kiloml {module.template} (float32, from torch, {inputs})")
    x = b.activation("input", (1, *shape))
    b.g.inputs = [x]
    with torch.no_grad():
        if isinstance(module, MLP):
            _mlp(b, x, module)
        elif isinstance(module, CNN1D):
            _cnn1d(b, x, module)
        elif isinstance(module, DSCNN):
            _dscnn(b, x, module)
        else:
            raise TypeError(f"not a kiloml template: {type(module).__name__}")
    return b.g


def _folded(norm: Standardize) -> Standardize | None:
    return norm if norm.mode == "folded" else None


def _mlp(b: _Builder, x: int, m: MLP) -> None:
    if b.shape(x)[1] != m.norm.mean.numel():
        raise ValueError(f"mlp built for {m.norm.mean.numel()} features, got {b.shape(x)[1]}")
    norm = _folded(m.norm)
    for i, layer in enumerate(m.hidden):
        x = _dense(b, x, layer, f"dense{i}", relu=True, norm=norm if i == 0 else None)
    logits = _dense(b, x, m.head, "logits", relu=False, norm=None if m.hidden else norm)
    _finish(b, logits)


def _cnn1d(b: _Builder, x: int, m: CNN1D) -> None:
    t, c = b.shape(x)[1:]
    if c != m.norm.mean.numel():
        raise ValueError(f"cnn1d built for {m.norm.mean.numel()} channels, got {c}")
    shape = b.const("reshape/shape", np.array([1, 1, t, c], np.int32), "int32")
    x = b.op("RESHAPE", [x, shape], (1, 1, t, c), "reshape")
    for i, (block, pool) in enumerate(zip(m.blocks, m.pools, strict=True)):
        x = _conv(b, x, block, f"conv{i}", _folded(m.norm) if i == 0 else None)
        if pool:  # MaxPool1d(2) floors odd lengths, as VALID does
            _, _, w, ch = b.shape(x)
            x = b.op("MAX_POOL_2D", [x], (1, 1, w // 2, ch), f"pool{i}", padding="VALID",
                     stride_h=1, stride_w=2, filter_h=1, filter_w=2)
    _head(b, x, m.head)


def _dscnn(b: _Builder, x: int, m: DSCNN) -> None:
    frames, coefs = b.shape(x)[1:]
    shape = b.const("reshape/shape", np.array([1, frames, coefs, 1], np.int32), "int32")
    x = b.op("RESHAPE", [x, shape], (1, frames, coefs, 1), "reshape")
    x = _conv(b, x, m.first, "conv0", _folded(m.norm))
    for i, block in enumerate(m.blocks):
        x = _conv(b, x, block["dw"], f"ds{i}/depthwise")
        x = _conv(b, x, block["pw"], f"ds{i}/pointwise")
    _head(b, x, m.head)
