"""Per-channel input standardization folded into an imported float network's first layer.

An int8 input tensor has one scale. A network trained elsewhere on raw features
(statistics of accelerometer and gyroscope axes, energies beside zero-crossing rates) or
with its scaler inside (skl2onnx's Scaler, a PyTorch ``(x - mean) / std`` module, both
folded into the first layer's weights at import) reads inputs whose ranges differ by
two orders of magnitude: under one int8 scale the narrow ones keep a few levels, and the
first layer's weights (per tensor for FULLY_CONNECTED) lose the columns that multiply
them. kiloml's own templates avoid both by standardizing in float32 before int8; this
module gives an imported float graph the same treatment:

    x' = (x - mean) / std            (float32, in C, before quantizing; per channel)
    first layer:  W' = W * std,  b' = b + W @ mean

so the folded graph computes on x' what the model computes on x. The input is traced
through the ops that only move values (RESHAPE, SQUEEZE, EXPAND_DIMS, TRANSPOSE, and a
PAD of zeros) to the layers that read it (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D);
each input channel must meet one scale in each of them. A convolution that pads its
input (or a PAD before it) reads zeros, which would stand for ``-mean / std`` after
standardization: the mean cannot be folded there, so such a model is scaled only
(``mean = 0``). Anything else the input feeds (an ADD, a concatenation, pooling) leaves
the graph unchanged (``None``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from kiloml.nn.graph import Graph, Op, Tensor

F32 = np.float32
MOVES = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE")
LAYERS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
MIN_STD = 1e-8  # a constant input channel is left at scale 1 (as the templates do)


@dataclass
class Standardization:
    """The folded graph and the float32 ``(x - mean) / std`` (per channel) it expects."""

    graph: Graph
    mean: np.ndarray
    std: np.ndarray
    centered: bool  # False: a padded convolution reads the input, only the scale is folded


def channel_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 mean and std of samples [N, ..., C] per last-axis channel (float64 sums)."""
    x = np.asarray(x, np.float64)
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    std = x.std(axis=axes)
    std = np.where(std > MIN_STD, std, 1.0)
    return mean.astype(F32), std.astype(F32)


def fold_standardization(graph: Graph, mean: np.ndarray, std: np.ndarray
                         ) -> Standardization | None:
    """``graph`` (float32, one input [1, ..., C]) rewritten to read ``(x - mean) / std``;
    None when the input reaches something other than the supported layers."""
    mean = np.asarray(mean, F32).reshape(-1)
    std = np.asarray(std, F32).reshape(-1)
    traced = _trace(graph)
    if traced is None:
        return None
    readers, padded = traced
    centered = not padded and all(_can_center(graph, op) for op, _ in readers)
    if not centered:
        mean = np.zeros_like(mean)
    g = copy.deepcopy(graph)
    for (op_index, channel_of) in ((graph.ops.index(op), ch) for op, ch in readers):
        if not _fold(g, g.ops[op_index], channel_of, mean.astype(np.float64),
                     std.astype(np.float64)):
            return None
    return Standardization(g, mean, std, centered)


def _trace(graph: Graph) -> tuple[list[tuple[Op, np.ndarray]], bool] | None:
    """The layers that read the input, each with the input channel of every element of
    the tensor it reads (in that tensor's shape), and whether a PAD of zeros lies on the
    way (then the mean cannot be folded); None if the input goes elsewhere."""
    t_in = graph.input_tensors[0]
    k = t_in.shape[-1] if t_in.shape else 1
    consumers = graph.consumers()
    start = np.arange(t_in.size, dtype=np.int64).reshape(t_in.shape) % k
    stack = [(graph.inputs[0], start)]
    readers: list[tuple[Op, np.ndarray]] = []
    padded = False
    while stack:
        tensor, channel = stack.pop()
        if tensor in graph.outputs:
            return None
        for i in consumers.get(tensor, []):
            op = graph.ops[i]
            if op.inputs[0] != tensor or tensor in op.inputs[1:]:
                return None
            out = graph.tensors[op.outputs[0]] if op.outputs else None
            if op.kind in MOVES and out is not None:
                if op.kind == "TRANSPOSE":
                    perm = graph.tensors[op.inputs[1]].data
                    if perm is None:
                        return None
                    moved = np.transpose(channel, [int(p) for p in np.asarray(perm)])
                else:
                    moved = channel
                if moved.size != out.size:
                    return None
                stack.append((op.outputs[0], moved.reshape(out.shape)))
            elif op.kind == "PAD" and out is not None:
                # zeros around the values: exact for a scale, not for a mean; the channel
                # axis itself must not grow
                pads = graph.tensors[op.inputs[1]].data
                if pads is None or (len(op.inputs) > 2 and op.inputs[2] >= 0):
                    return None
                pads = np.asarray(pads, np.int64).reshape(-1, 2)
                if pads.shape[0] != channel.ndim or pads[-1].any() or (pads < 0).any():
                    return None
                moved = np.pad(channel, [tuple(p) for p in pads.tolist()], mode="edge")
                if moved.shape != tuple(out.shape):
                    return None
                padded = True
                stack.append((op.outputs[0], moved))
            elif op.kind in LAYERS and graph.tensors[op.inputs[1]].is_constant:
                readers.append((op, channel))
            else:
                return None
    return (readers, padded) if readers else None


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> int:
    out = -(-size // stride)
    return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def _can_center(graph: Graph, op: Op) -> bool:
    """A layer can take the mean into its bias unless it pads its input (SAME with a
    non-zero pad): padded zeros would stand for -mean / std."""
    if op.kind == "FULLY_CONNECTED" or op.options.get("padding") != "SAME":
        return True
    _, h, w, _ = graph.tensors[op.inputs[0]].shape
    w_shape = graph.tensors[op.inputs[1]].shape
    kh, kw = w_shape[1], w_shape[2]
    o = op.options
    return (_same_pads(h, kh, int(o["stride_h"]), int(o["dilation_h"])) == 0
            and _same_pads(w, kw, int(o["stride_w"]), int(o["dilation_w"])) == 0)


def _per_channel(channel: np.ndarray, axis_size: int) -> np.ndarray | None:
    """The input channel feeding each index of the layer's last input axis, if each index
    reads one channel wherever it is (else None)."""
    rows = channel.reshape(-1, axis_size)
    if not np.all(rows == rows[:1]):
        return None
    return rows[0]


def _fold(g: Graph, op: Op, channel: np.ndarray, mean: np.ndarray, std: np.ndarray) -> bool:
    w_t = g.tensors[op.inputs[1]]
    w = np.asarray(w_t.data, np.float64)
    # FULLY_CONNECTED reads its input as rows of the weights' width (TFLite flattens it)
    k_in = w.shape[1] if op.kind == "FULLY_CONNECTED" and w.ndim == 2 else \
        g.tensors[op.inputs[0]].shape[-1]
    if channel.size % k_in:
        return False
    per = _per_channel(channel, k_in)
    if per is None:
        return False
    s, m = std[per], mean[per]
    if op.kind == "FULLY_CONNECTED":  # W [out, in]
        new_w = w * s[None, :]
        shift = w @ m
    elif op.kind == "CONV_2D":  # OHWI
        new_w = w * s[None, None, None, :]
        shift = np.einsum("ohwi,i->o", w, m)
    else:  # DEPTHWISE_CONV_2D [1, kh, kw, C * multiplier]
        mult = int(op.options.get("depth_multiplier", 1)) or 1
        if w.shape[-1] != k_in * mult:
            return False
        src = np.arange(w.shape[-1]) // mult
        new_w = w * s[src][None, None, None, :]
        shift = np.einsum("ahwo,o->o", w, m[src])
    out_channels = w.shape[0] if op.kind != "DEPTHWISE_CONV_2D" else w.shape[-1]
    bias = np.zeros(out_channels)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        bias = np.asarray(g.tensors[op.inputs[2]].data, np.float64).reshape(-1)
    new_b = bias + shift
    if not (np.isfinite(new_w).all() and np.isfinite(new_b).all()
            and np.abs(new_w).max(initial=0) < 3e38 and np.abs(new_b).max(initial=0) < 3e38):
        return False
    # new tensors: a weight or bias shared with another op must keep its values there
    op.inputs[1] = g.add_tensor(Tensor(f"{w_t.name}/standardized", w_t.shape, "float32",
                                       data=new_w.astype(F32)))
    b_name = (g.tensors[op.inputs[2]].name if len(op.inputs) > 2 and op.inputs[2] >= 0
              else f"{op.name}/bias")
    b_index = g.add_tensor(Tensor(f"{b_name}/standardized", (out_channels,), "float32",
                                  data=new_b.astype(F32)))
    if len(op.inputs) > 2:
        op.inputs[2] = b_index
    else:
        op.inputs.append(b_index)
    return True


def max_output_difference(original: Graph, folded: Standardization, x: np.ndarray
                          ) -> tuple[float, float]:
    """(largest |difference| of the outputs, largest |output|) of the original graph on x
    and the folded one on the standardized x: what the fold changed, in float32."""
    from kiloml.nn.reference import Interpreter

    x = np.asarray(x, F32)
    xs = ((x - folded.mean) / folded.std).astype(F32)
    with np.errstate(all="ignore"):
        a = Interpreter(original).run([x])[0].astype(np.float64)
        b = Interpreter(folded.graph).run([xs])[0].astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.inf, float(np.abs(a[np.isfinite(a)]).max(initial=0.0))
    return float(np.abs(a - b).max(initial=0.0)), float(np.abs(a).max(initial=0.0))
