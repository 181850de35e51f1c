"""Quantization-aware training on the float graph that post-training quantization reads.

QAT here fine-tunes the exported float32 graph itself (BatchNorm and dropout are
already folded away), run by a small PyTorch interpreter of the IR that
fake-quantizes exactly where ``kiloml.nn.quantize.quantize_graph`` quantizes:

- weights: symmetric int8 in [-127, 127] with scale max|w| / 127, per output
  channel for CONV_2D (axis 0 of OHWI), per channel for DEPTHWISE_CONV_2D (axis 3),
  per tensor for FULLY_CONNECTED;
- activations: the graph input and the output of every op that owns its
  quantization (convolutions, dense layers, MEAN, ADD ...; after the fused ReLU),
  asymmetric int8 with the range the quantizer's calibration method (minmax,
  percentile or mse) gives on the calibration windows. The ranges are recomputed from
  the float graph at the start of every epoch, as the quantizer will at the end;
- data-moving ops (RESHAPE, PAD, pooling) keep their input's quantization, as in
  the quantizer; the final SOFTMAX is left out (training reads its logits).

Rounding is straight-through (gradients pass the rounding, and are zero where an
activation is clipped). After fine-tuning the trained weights are written back into
a copy of the float graph and ``quantize_graph`` makes the int8 graph as it always
does, so the TFLite-spec graph, model.tflite, TFLM and C parity are unchanged.
"""

from __future__ import annotations

import copy

import numpy as np

from kiloml.nn.graph import Graph
from kiloml.nn.op_params import padding_before
from kiloml.nn.quantize import SHARED_QUANT, choose_quantization, prepare_float_graph, value_range
from kiloml.optional import needs

with needs("torch", "quantization-aware training"):
    import torch
    import torch.nn.functional as F
    from torch import nn

SUPPORTED = ("RESHAPE", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN",
             "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "SOFTMAX", "RELU", "RELU6")
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _act(x: torch.Tensor, kind: object) -> torch.Tensor:
    if kind == "RELU":
        return F.relu(x)
    if kind == "RELU6":
        return torch.clamp(x, 0.0, 6.0)
    if kind in (None, "NONE"):
        return x
    raise ValueError(f"fused activation {kind} is not supported by QAT")


def _same_pads(n: int, k: int, s: int, d: int, out: int, padding: str) -> tuple[int, int]:
    if padding != "SAME":
        return 0, 0
    before = padding_before(s, d, n, k, out)
    after = max(0, (out - 1) * s + (k - 1) * d + 1 - n - before)
    return before, after


def fake_quant_weights(w: torch.Tensor, axis: int | None) -> torch.Tensor:
    """quantize_weights' rounding with a straight-through gradient."""
    with torch.no_grad():
        if axis is None:
            amax = w.abs().max().reshape([1] * w.dim())
        else:
            dims = [d for d in range(w.dim()) if d != axis]
            amax = w.abs().amax(dim=dims, keepdim=True)
        scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.clamp(torch.round(w / scale), -127, 127) * scale
    return w + (q - w).detach()


def fake_quant_activation(x: torch.Tensor, scale: float, zp: int) -> torch.Tensor:
    lo, hi = (-128 - zp) * scale, (127 - zp) * scale
    xc = torch.clamp(x, lo, hi)  # zero gradient where clipped
    q = (torch.clamp(torch.round(xc / scale) + zp, -128, 127) - zp) * scale
    return xc + (q - xc).detach()


class GraphModule(nn.Module):
    """A float IR graph as a trainable module: input [N, *input shape] -> logits."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = prepare_float_graph(graph)
        g = self.graph
        bad = sorted({op.kind for op in g.ops if op.kind not in SUPPORTED})
        if bad:
            raise ValueError(f"QAT does not support {', '.join(bad)}")
        if not g.ops or g.ops[-1].kind != "SOFTMAX" or g.ops[-1].outputs != g.outputs:
            raise ValueError("QAT needs a graph ending in SOFTMAX")
        self.params = nn.ParameterDict()
        for op in g.ops:
            if op.kind in _WEIGHTED:
                for i in op.inputs[1:]:
                    if i >= 0:
                        self.params[str(i)] = nn.Parameter(
                            torch.as_tensor(g.tensors[i].data.astype(np.float32)))
        # tensors that own their quantization: the input and outputs of non-shared ops
        self.quantized = [g.inputs[0]] + [op.outputs[0] for op in g.ops[:-1]
                                          if op.kind not in SHARED_QUANT]
        self.ranges: dict[int, tuple[float, int]] = {}
        self.fake_quant = True
        self.masks: dict[str, torch.Tensor] = {}

    def keep_zeros(self) -> None:
        """Weights that are exactly zero (magnitude pruning) stay zero while training."""
        self.masks = {k: (p.detach() != 0) for k, p in self.params.items()
                      if int((p == 0).sum()) > 0}

    def apply_masks(self) -> None:
        with torch.no_grad():
            for k, m in self.masks.items():
                self.params[k].mul_(m)

    def forward(self, x: torch.Tensor, trace: dict[int, torch.Tensor] | None = None
                ) -> torch.Tensor:
        g = self.graph
        values: dict[int, torch.Tensor] = {g.inputs[0]: x.reshape(len(x),
                                                                *g.tensors[g.inputs[0]].shape[1:])}
        values[g.inputs[0]] = self._q(g.inputs[0], values[g.inputs[0]], trace)
        for op in g.ops[:-1]:
            out = self._op(op, values)
            values[op.outputs[0]] = (self._q(op.outputs[0], out, trace)
                                     if op.outputs[0] in self.quantized else out)
        return values[g.ops[-1].inputs[0]].reshape(len(x), -1)  # the SOFTMAX's logits

    def _q(self, index: int, x: torch.Tensor, trace: dict | None) -> torch.Tensor:
        if trace is not None:
            trace[index] = x.detach()
        if self.fake_quant and index in self.ranges:
            scale, zp = self.ranges[index]
            return fake_quant_activation(x, scale, zp)
        return x

    def _weight(self, index: int, axis: int | None) -> torch.Tensor:
        w = self.params[str(index)]
        return fake_quant_weights(w, axis) if self.fake_quant else w

    def _op(self, op, values: dict[int, torch.Tensor]) -> torch.Tensor:
        g, o = self.graph, op.options
        x = values[op.inputs[0]]
        out_shape = g.tensors[op.outputs[0]].shape
        if op.kind == "RESHAPE":
            return x.reshape(len(x), *out_shape[1:])
        if op.kind in ("RELU", "RELU6"):
            return _act(x, op.kind)
        if op.kind == "FULLY_CONNECTED":
            w = self._weight(op.inputs[1], None)
            b = self.params[str(op.inputs[2])] if len(op.inputs) > 2 and op.inputs[2] >= 0 \
                else None
            y = F.linear(x.reshape(-1, w.shape[1]), w, b)
            return _act(y, o.get("fused_activation")).reshape(len(x), *out_shape[1:])
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            dw = op.kind == "DEPTHWISE_CONV_2D"
            w = self._weight(op.inputs[1], 3 if dw else 0)
            b = self.params[str(op.inputs[2])] if len(op.inputs) > 2 and op.inputs[2] >= 0 \
                else None
            sh, sw = int(o["stride_h"]), int(o["stride_w"])
            dh, dwl = int(o.get("dilation_h", 1)), int(o.get("dilation_w", 1))
            _, h, wd, c = x.shape
            kh, kw = (w.shape[1], w.shape[2])
            oh, ow = out_shape[1], out_shape[2]
            ph = _same_pads(h, kh, sh, dh, oh, str(o["padding"]))
            pw = _same_pads(wd, kw, sw, dwl, ow, str(o["padding"]))
            xn = F.pad(x.permute(0, 3, 1, 2), (pw[0], pw[1], ph[0], ph[1]))
            if dw:  # [1, kh, kw, C*M] -> [C*M, 1, kh, kw]
                wt, groups = w.permute(3, 0, 1, 2), c
            else:  # OHWI -> OIHW
                wt, groups = w.permute(0, 3, 1, 2), 1
            y = F.conv2d(xn, wt, b, stride=(sh, sw), dilation=(dh, dwl), groups=groups)
            y = y[:, :, :oh, :ow].permute(0, 2, 3, 1)
            return _act(y, o.get("fused_activation"))
        if op.kind == "MEAN":
            axes = [int(a) for a in g.tensors[op.inputs[1]].data.reshape(-1)]
            y = x.mean(dim=axes, keepdim=bool(o.get("keep_dims")))
            return y.reshape(len(x), *out_shape[1:])
        if op.kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            kh, kw = int(o["filter_h"]), int(o["filter_w"])
            sh, sw = int(o["stride_h"]), int(o["stride_w"])
            if str(o["padding"]) != "VALID":
                raise ValueError("QAT supports VALID pooling only")
            xn = x.permute(0, 3, 1, 2)
            pool = F.max_pool2d if op.kind == "MAX_POOL_2D" else F.avg_pool2d
            y = pool(xn, (kh, kw), (sh, sw)).permute(0, 2, 3, 1)
            return _act(y, o.get("fused_activation"))
        if op.kind == "PAD":
            pads = g.tensors[op.inputs[1]].data.reshape(-1, 2)
            flat = [int(v) for pair in pads[::-1][:-1] for v in pair]  # last dim first, no batch
            return F.pad(x, flat)
        raise ValueError(f"QAT does not support {op.kind}")

    # ---- ranges and export -------------------------------------------------------------

    def calibrate(self, x_calib: torch.Tensor, method: str, percentile: float) -> None:
        """Activation ranges as quantize_graph picks them, from the float graph now."""
        trace: dict[int, torch.Tensor] = {}
        old = self.fake_quant
        self.fake_quant = False
        with torch.no_grad():
            self(x_calib, trace)
        self.fake_quant = old
        for index in self.quantized:
            lo, hi = value_range(trace[index].numpy(), method, percentile)  # type: ignore[arg-type]
            q = choose_quantization(lo, hi)
            self.ranges[index] = (float(q.s), int(q.zp))

    def to_graph(self) -> Graph:
        """A copy of the float graph with the trained weights."""
        g = copy.deepcopy(self.graph)
        for key, p in self.params.items():
            t = g.tensors[int(key)]
            t.data = p.detach().numpy().astype(np.float32)
        return g
