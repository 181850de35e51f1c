"""Pruning a trained template network (``kiloml.nn.torch_models``).

Structured pruning removes whole convolution channels (cnn1d, dscnn) or dense
neurons (mlp) and rebuilds the template with the smaller sizes, so the exported
graph, its int8 weights and its MACs really shrink. Channels are ranked by the L1
norm of their BatchNorm-folded weights (``|w| * |gamma| / sqrt(var + eps)``, what
the exported convolution multiplies by); neurons by the L1 norm of their incoming
weights. One keep ratio applies to every prunable layer, chosen so that the
network's weights (int8 weights plus int32 biases, counted in elements) shrink by
the asked fraction; the first layer's inputs and the classes are never pruned.

Magnitude pruning zeroes the smallest ``sparsity`` fraction of each convolution
and dense layer's weights (per layer) and keeps them zero while fine-tuning,
one-shot or on a gradual (cubic, Zhu & Gupta 2017) schedule. kiloml's int8
kernels are dense: a zero weight is stored and multiplied like any other, so flash,
RAM and instructions do not change; what it buys is a more compressible weight
blob (reported as the zero share of the int8 weights).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from kiloml.nn.torch_models import CNN1D, DSCNN, MLP, ConvBN, TemplateModel, build_model
from kiloml.optional import needs

with needs("torch", "pruning a network"):
    import torch
    from torch import nn

# ---- structured -------------------------------------------------------------------------


def _sizes(template: str, params: dict) -> list[int]:
    return list(params["hidden"] if template == "mlp" else params["filters"])


def _weight_count(template: str, sizes: Sequence[int], params: dict,
                  input_shape: Sequence[int], n_classes: int) -> int:
    """Elements of the exported graph's weights and biases for these layer sizes."""
    if template == "mlp":
        dims = [int(input_shape[0]), *sizes]
        hidden = sum(a * b + b for a, b in itertools.pairwise(dims))
        return hidden + dims[-1] * n_classes + n_classes
    if template == "cnn1d":
        k = int(params.get("kernel_size", 5))
        dims = [int(input_shape[1]), *sizes]
        convs = sum(a * b * k + b for a, b in itertools.pairwise(dims))
        return convs + dims[-1] * n_classes + n_classes
    # dscnn: first conv on one channel, then depthwise (3x3) + pointwise blocks
    k = int(params.get("kernel_size", 3))
    dw = int(params.get("dw_kernel_size", 3))
    total = sizes[0] * k * k + sizes[0]
    for a, b in itertools.pairwise(sizes):
        total += a * dw * dw + a + a * b + b
    return total + sizes[-1] * n_classes + n_classes


def structured_plan(template: str, params: dict, input_shape: Sequence[int], n_classes: int,
                    sparsity: float) -> list[int]:
    """The layer sizes structured pruning keeps (``filters`` or ``hidden``), before
    training: one keep ratio for every layer, the one whose weight count is closest to
    ``(1 - sparsity)`` of the unpruned network's (usable by an estimator or a search)."""
    sizes = _sizes(template, params)
    full = _weight_count(template, sizes, params, input_shape, n_classes)
    target = (1.0 - sparsity) * full
    best: tuple[float, list[int]] | None = None
    for ratio in np.linspace(1.0, 0.001, 1000):
        kept = [max(1, round(ratio * n)) for n in sizes]
        err = abs(_weight_count(template, kept, params, input_shape, n_classes) - target)
        if best is None or err < best[0]:
            best = (err, kept)
    assert best is not None
    return best[1]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def _channel_scores(block: ConvBN) -> np.ndarray:
    """L1 norm of each output channel's BatchNorm-folded weights."""
    w = _np(block.conv.weight)
    bn = block.bn
    scale = np.abs(_np(bn.weight)) / np.sqrt(_np(bn.running_var) + float(bn.eps))
    return np.abs(w).reshape(w.shape[0], -1).sum(axis=1) * scale


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, in their original order (ties: the lower index)."""
    order = np.argsort(-scores, kind="stable")[:k]
    return np.sort(order)


def _copy_bn(dst: nn.Module, src: nn.Module, keep: np.ndarray) -> None:
    idx = torch.as_tensor(keep)
    with torch.no_grad():
        for name in ("weight", "bias"):
            getattr(dst, name).copy_(getattr(src, name)[idx])
        dst.running_mean.copy_(src.running_mean[idx])
        dst.running_var.copy_(src.running_var[idx])
        dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _copy_conv(dst: ConvBN, src: ConvBN, keep_out: np.ndarray, keep_in: np.ndarray | None
               ) -> None:
    w = src.conv.weight[torch.as_tensor(keep_out)]
    if keep_in is not None:
        w = w[:, torch.as_tensor(keep_in)]
    with torch.no_grad():
        dst.conv.weight.copy_(w)
    _copy_bn(dst.bn, src.bn, keep_out)


def _copy_linear(dst: nn.Linear, src: nn.Linear, keep_out: np.ndarray | None,
                 keep_in: np.ndarray | None) -> None:
    w, b = src.weight, src.bias
    if keep_out is not None:
        w, b = w[torch.as_tensor(keep_out)], b[torch.as_tensor(keep_out)]
    if keep_in is not None:
        w = w[:, torch.as_tensor(keep_in)]
    with torch.no_grad():
        dst.weight.copy_(w)
        dst.bias.copy_(b)


def prune_structured(module: TemplateModel, params: dict, n_classes: int, sparsity: float
                     ) -> tuple[TemplateModel, dict, dict]:
    """A smaller template with the highest-L1 channels / neurons of ``module`` copied in.

    ``params`` are the template's build parameters; returns (the pruned module, its
    build parameters, a description: sizes before and after, kept indices per layer).
    The pruned module is in eval mode with the same input standardization."""
    template = module.template
    sizes = _sizes(template, params)
    kept_sizes = structured_plan(template, params, module.input_shape, n_classes, sparsity)
    key = "hidden" if template == "mlp" else "filters"
    new_params = {**params, key: kept_sizes}
    new = build_model(template, module.input_shape, n_classes, **new_params)
    with torch.no_grad():
        new.norm.mean.copy_(module.norm.mean)
        new.norm.std.copy_(module.norm.std)
    kept: list[list[int]] = []
    if isinstance(module, MLP):
        assert isinstance(new, MLP)
        prev = None
        for src, dst, k in zip(module.hidden, new.hidden, kept_sizes, strict=True):
            keep = _top(np.abs(_np(src.weight)).sum(axis=1), k)
            _copy_linear(dst, src, keep, prev)
            kept.append(keep.tolist())
            prev = keep
        _copy_linear(new.head, module.head, None, prev)
    elif isinstance(module, CNN1D):
        assert isinstance(new, CNN1D)
        prev = None
        for src, dst, k in zip(module.blocks, new.blocks, kept_sizes, strict=True):
            keep = _top(_channel_scores(src), k)
            _copy_conv(dst, src, keep, prev)
            kept.append(keep.tolist())
            prev = keep
        _copy_linear(new.head, module.head, None, prev)
    elif isinstance(module, DSCNN):
        assert isinstance(new, DSCNN)
        prev = _top(_channel_scores(module.first), kept_sizes[0])
        _copy_conv(new.first, module.first, prev, None)
        kept.append(prev.tolist())
        for src, dst, k in zip(module.blocks, new.blocks, kept_sizes[1:], strict=True):
            _copy_conv(dst["dw"], src["dw"], prev, None)  # depthwise follows its input
            keep = _top(_channel_scores(src["pw"]), k)
            _copy_conv(dst["pw"], src["pw"], keep, prev)
            kept.append(keep.tolist())
            prev = keep
        _copy_linear(new.head, module.head, None, prev)
    else:
        raise TypeError(f"not a kiloml template: {type(module).__name__}")
    new.eval()
    return new, new_params, {key + "_before": sizes, key + "_after": kept_sizes,
                             "criterion": "L1 norm (BatchNorm-folded for convolutions)"}


# ---- magnitude --------------------------------------------------------------------------


def prunable_weights(module: nn.Module) -> list[nn.Parameter]:
    """The weights of every convolution and dense layer (not BatchNorm, not biases)."""
    return [m.weight for m in module.modules() if isinstance(m, nn.Conv1d | nn.Conv2d |
                                                                  nn.Linear)]


class MagnitudePruner:
    """Zeroes the smallest weights of each layer and keeps them zero.

    ``schedule(epoch)`` sets the sparsity for that epoch (call before it);
    ``apply()`` re-zeroes the pruned weights (call after each optimizer step).
    """

    def __init__(self, weights: Sequence[torch.Tensor], sparsity: float, schedule: str,
                 epochs: int) -> None:
        self.weights = list(weights)
        self.sparsity = float(sparsity)
        self.one_shot = schedule == "one_shot"
        # the gradual schedule reaches the target half-way through fine-tuning
        self.ramp_epochs = 1 if self.one_shot else max(1, math.ceil(epochs / 2))
        self.masks = [torch.ones_like(w, dtype=torch.bool) for w in self.weights]
        self.current = 0.0

    def sparsity_at(self, epoch: int) -> float:
        """Cubic ramp from 0 at epoch 0 to the target at ``ramp_epochs``."""
        t = min(epoch / self.ramp_epochs, 1.0)
        return self.sparsity * (1.0 - (1.0 - t) ** 3)

    def schedule(self, epoch: int) -> None:
        target = self.sparsity_at(epoch)
        if target > self.current:
            self.set_sparsity(target)

    def set_sparsity(self, sparsity: float) -> None:
        with torch.no_grad():
            for i, w in enumerate(self.weights):
                n = w.numel()
                k = round(sparsity * n)
                flat = (w.abs() * self.masks[i]).reshape(-1)  # pruned ones stay pruned
                order = torch.argsort(flat, stable=True)
                mask = torch.ones(n, dtype=torch.bool)
                mask[order[:k]] = False
                self.masks[i] = mask.reshape(w.shape) & self.masks[i]
        self.current = sparsity
        self.apply()

    def apply(self) -> None:
        with torch.no_grad():
            for w, m in zip(self.weights, self.masks, strict=True):
                w.mul_(m)

    def achieved(self) -> float:
        """The zero fraction of all pruned weights now."""
        zeros = sum(int((w == 0).sum()) for w in self.weights)
        return zeros / max(1, sum(w.numel() for w in self.weights))


def weight_sparsity(module: nn.Module) -> float:
    ws = prunable_weights(module)
    return sum(int((w == 0).sum()) for w in ws) / max(1, sum(w.numel() for w in ws))

