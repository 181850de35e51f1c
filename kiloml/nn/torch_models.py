"""Trainable model templates whose layers map one-to-one onto the graph IR.

Three templates, each a ``torch.nn.Module`` built by a factory with its sizes as
parameters:

- ``mlp``: feature vectors ``[N, F]`` -> Linear + ReLU (+ dropout) ... -> Linear;
- ``cnn1d``: raw windows ``[N, T, C]`` (time-major, channels last, as kiloml's
  windows are) -> blocks of Conv1d + BatchNorm + ReLU (+ MaxPool) -> global
  average pooling -> Linear;
- ``dscnn``: spectrograms / MFCC ``[N, frames, coefficients]`` as a one-channel
  image -> Conv2d + BN + ReLU -> depthwise-separable blocks -> global average
  pooling -> Linear.

The modules output logits (train with ``CrossEntropyLoss``); the exported IR
graph appends the SOFTMAX. Every module starts with a per-channel input
standardization (buffers, fitted on the training set) so it takes raw inputs.
``standardize`` says where it goes at export:

- ``"folded"`` (default): into the first layer's weights, so the graph takes raw
  inputs. To keep the fold exact the first convolution pads in *raw* units
  (zeros before standardizing), which is what a TFLite convolution on the raw
  input does.
- ``"external"``: the graph takes standardized inputs ``(x - norm.mean) /
  norm.std`` and the caller standardizes in float first. Needed for int8 when
  channels have very different ranges (say accelerometer in g and gyroscope in
  deg/s): an int8 input has one scale for all channels, so with raw inputs the
  small-range channels lose most of their resolution. Here padding is zeros
  after standardizing, the usual convention.

Convolution padding is TFLite's: ``"same"`` pads ``total = max((out-1)*s + k - in, 0)``
with ``total // 2`` before and the odd pixel after (PyTorch's symmetric
``padding=k//2`` differs for even kernels and for stride 2), so SAME in the IR
is exactly equivalent. ``"symmetric"`` (PyTorch's convention) is available too
and exports as an explicit PAD op.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from kiloml.optional import needs

with needs("torch", "a neural-network model"):
    import torch
    import torch.nn.functional as F
    from torch import nn

Padding = Literal["same", "valid", "symmetric"]
PADDINGS: tuple[str, ...] = ("same", "valid", "symmetric")
Standardization = Literal["folded", "external"]
STANDARDIZATIONS: tuple[str, ...] = ("folded", "external")


def out_size(size: int, kernel: int, stride: int, padding: Padding) -> int:
    """Output length of a convolution along one axis (TFLite formulas)."""
    if padding == "same":
        return (size + stride - 1) // stride
    before, after = pad_amounts(size, kernel, stride, padding)
    return (size + before + after - kernel) // stride + 1


def pad_amounts(size: int, kernel: int, stride: int, padding: Padding) -> tuple[int, int]:
    """(before, after) zero padding along one axis."""
    if padding == "valid":
        return 0, 0
    if padding == "symmetric":
        return kernel // 2, kernel // 2
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2  # TFLite: the odd pixel goes after


class Standardize(nn.Module):
    """``(x - mean) / std`` along dim 1 (features, or NC.. channels)."""

    def __init__(self, channels: int, mode: Standardization = "folded") -> None:
        super().__init__()
        if mode not in STANDARDIZATIONS:
            raise ValueError(f"standardize must be one of {STANDARDIZATIONS}, got {mode!r}")
        self.mode = mode
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        std = np.asarray(std, np.float64)
        # A constant channel carries no information: leave it unscaled rather than
        # blowing its folded weights up by 1/0.
        std = np.where(std > 1e-8, std, 1.0)
        self.mean.copy_(torch.as_tensor(np.asarray(mean, np.float64).reshape(-1)))
        self.std.copy_(torch.as_tensor(std.reshape(-1)))


class ConvBN(nn.Module):
    """Pad + Conv (no bias) + BatchNorm + optional ReLU; 1-D or 2-D, optionally depthwise.

    The padding is applied by ``pad`` separately so a model can standardize the
    input in between (see the module docstring).
    """

    def __init__(self, dims: int, in_channels: int, out_channels: int,
                 kernel: tuple[int, ...], stride: tuple[int, ...], padding: Padding,
                 *, groups: int = 1, relu: bool = True) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.conv = conv(in_channels, out_channels, kernel, stride, padding=0, groups=groups,
                         bias=False)
        self.bn = nn.BatchNorm1d(out_channels) if dims == 1 else nn.BatchNorm2d(out_channels)
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.padding: Padding = padding

    @property
    def depthwise(self) -> bool:
        return self.conv.groups > 1

    def pads(self, sizes: Sequence[int]) -> list[tuple[int, int]]:
        """(before, after) per spatial axis for an input of these spatial sizes."""
        return [pad_amounts(n, k, s, self.padding)
                for n, k, s in zip(sizes, self.kernel, self.stride, strict=True)]

    def out_sizes(self, sizes: Sequence[int]) -> list[int]:
        return [out_size(n, k, s, self.padding)
                for n, k, s in zip(sizes, self.kernel, self.stride, strict=True)]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        pads = self.pads(x.shape[2:])
        flat = [p for before_after in reversed(pads) for p in before_after]  # F.pad: last dim first
        return F.pad(x, flat) if any(flat) else x

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.pad(x))


class MLP(nn.Module):
    """Feature vectors [N, F] -> logits [N, classes]."""

    template = "mlp"

    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int] = (32, 16),
                 dropout: float = 0.2, standardize: Standardization = "folded") -> None:
        super().__init__()
        self.input_shape: tuple[int, ...] = (n_features,)
        self.norm = Standardize(n_features, standardize)
        sizes = [n_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        for layer in self.hidden:
            x = self.dropout(F.relu(layer(x)))
        return self.head(x)


class CNN1D(nn.Module):
    """Windows [N, T, C] -> logits; a 1-D conv is CONV_2D on [N, 1, T, C] in the IR."""

    template = "cnn1d"

    def __init__(self, window: int, n_channels: int, n_classes: int,
                 filters: Sequence[int] = (16, 32, 32), kernel_size: int = 5, stride: int = 2,
                 pool: bool | Sequence[bool] = False, padding: Padding = "same",
                 dropout: float = 0.0, standardize: Standardization = "folded") -> None:
        super().__init__()
        if not filters:
            raise ValueError("cnn1d needs at least one convolution")
        pools = [pool] * len(filters) if isinstance(pool, bool) else list(pool)
        if len(pools) != len(filters):
            raise ValueError("pool must be a bool or one bool per convolution")
        self.input_shape = (window, n_channels)
        self.norm = Standardize(n_channels, standardize)
        self.blocks = nn.ModuleList()
        self.pools = list(pools)
        channels = n_channels
        for i, f in enumerate(filters):
            self.blocks.append(ConvBN(1, channels, f, (kernel_size,), (stride if i == 0 else 1,),
                                      padding))
            channels = f
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, n_classes)
        self._check_sizes()

    def time_sizes(self) -> list[int]:
        """Time length entering each block, then the length entering global pooling."""
        sizes = [self.input_shape[0]]
        for block, pool in zip(self.blocks, self.pools, strict=True):
            n = block.out_sizes([sizes[-1]])[0]
            sizes.append(n // 2 if pool else n)
        return sizes

    def _check_sizes(self) -> None:
        if min(self.time_sizes()) < 1:
            raise ValueError(f"a {self.input_shape[0]}-sample window is too short for "
                             f"{len(self.blocks)} convolutions with these strides and pools")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # [N, T, C] -> [N, C, T]
        for i, (block, pool) in enumerate(zip(self.blocks, self.pools, strict=True)):
            x = _pad_and_standardize(x, block, self.norm) if i == 0 else block.pad(x)
            x = block.body(x)
            if pool:
                x = F.max_pool1d(x, 2)
        return self.head(self.dropout(x.mean(dim=2)))


class DSCNN(nn.Module):
    """Spectrograms [N, frames, coefs] -> logits (one-channel image, NHWC [N, frames, coefs, 1])."""

    template = "dscnn"

    def __init__(self, frames: int, coefficients: int, n_classes: int,
                 filters: Sequence[int] = (16, 32, 32), kernel_size: int | Sequence[int] = 3,
                 stride: int | Sequence[int] = 2, dw_kernel_size: int = 3,
                 padding: Padding = "same", dropout: float = 0.0,
                 standardize: Standardization = "folded") -> None:
        super().__init__()
        if not filters:
            raise ValueError("dscnn needs at least the first convolution")
        kernel = _pair(kernel_size)
        self.input_shape = (frames, coefficients)
        self.norm = Standardize(1, standardize)
        self.first = ConvBN(2, 1, filters[0], kernel, _pair(stride), padding)
        self.blocks = nn.ModuleList()
        channels = filters[0]
        for f in filters[1:]:
            self.blocks.append(nn.ModuleDict({
                "dw": ConvBN(2, channels, channels, _pair(dw_kernel_size), (1, 1), padding,
                             groups=channels),
                "pw": ConvBN(2, channels, f, (1, 1), (1, 1), "valid"),
            }))
            channels = f
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, n_classes)
        sizes = self.first.out_sizes(self.input_shape)
        for block in self.blocks:
            sizes = block["dw"].out_sizes(sizes)
        if min(sizes) < 1:
            raise ValueError(f"input {self.input_shape} is too small for these kernels")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first.body(_pad_and_standardize(x.unsqueeze(1), self.first, self.norm))
        for block in self.blocks:
            x = block["pw"](block["dw"](x))
        return self.head(self.dropout(x.mean(dim=(2, 3))))


def _pad_and_standardize(x: torch.Tensor, block: ConvBN, norm: Standardize) -> torch.Tensor:
    """Folded: pad raw zeros, then standardize (exactly what the folded conv computes)."""
    if norm.mode == "folded":
        return norm(block.pad(x))
    return block.pad(norm(x))


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


# ---- factories ---------------------------------------------------------------

def mlp(input_shape: Sequence[int], n_classes: int, *, hidden: Sequence[int] = (32, 16),
        dropout: float = 0.2, standardize: Standardization = "folded") -> MLP:
    """input_shape = (F,)."""
    (n_features,) = input_shape
    return MLP(n_features, n_classes, hidden, dropout, standardize)


def cnn1d(input_shape: Sequence[int], n_classes: int, *, filters: Sequence[int] = (16, 32, 32),
          kernel_size: int = 5, stride: int = 2, pool: bool | Sequence[bool] = False,
          padding: Padding = "same", dropout: float = 0.0,
          standardize: Standardization = "folded") -> CNN1D:
    """input_shape = (T, C); ``stride`` applies to the first convolution only."""
    window, channels = input_shape
    return CNN1D(window, channels, n_classes, filters, kernel_size, stride, pool, padding, dropout,
                 standardize)


def dscnn(input_shape: Sequence[int], n_classes: int, *, filters: Sequence[int] = (16, 32, 32),
          kernel_size: int | Sequence[int] = 3, stride: int | Sequence[int] = 2,
          dw_kernel_size: int = 3, padding: Padding = "same", dropout: float = 0.0,
          standardize: Standardization = "folded") -> DSCNN:
    """input_shape = (frames, coefficients); filters[0] is the first conv, the rest DS blocks."""
    frames, coefs = input_shape
    return DSCNN(frames, coefs, n_classes, filters, kernel_size, stride, dw_kernel_size, padding,
                 dropout, standardize)


TEMPLATES: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn1d": cnn1d, "dscnn": dscnn}

TemplateModel = MLP | CNN1D | DSCNN


def build_model(template: str, input_shape: Sequence[int], n_classes: int,
                **params: object) -> TemplateModel:
    """A template by name; ``input_shape`` is one sample's shape (no batch axis)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose from {sorted(TEMPLATES)}")
    return TEMPLATES[template](tuple(int(d) for d in input_shape), n_classes, **params)


def fit_standardization(model: TemplateModel, x: np.ndarray) -> None:
    """Per-channel mean/std of raw training inputs into ``model.norm`` (float64 statistics)."""
    x = np.asarray(x, np.float64)
    if isinstance(model, MLP):
        axes: tuple[int, ...] = (0,)
    elif isinstance(model, CNN1D):
        axes = (0, 1)  # [N, T, C]: one statistic per channel
    else:
        axes = tuple(range(x.ndim))  # a one-channel image: one statistic
    model.norm.set_stats(x.mean(axis=axes), x.std(axis=axes))


def graph_inputs(model: TemplateModel, x: np.ndarray) -> np.ndarray:
    """What the exported graph takes for raw inputs ``x``: ``x`` itself when the
    standardization is folded, ``(x - mean) / std`` (float32) when it is external."""
    x = np.asarray(x, np.float32)
    if model.norm.mode == "folded":
        return x
    with torch.no_grad():
        if isinstance(model, DSCNN):
            return model.norm(torch.from_numpy(x)[:, None]).numpy()[:, 0]
        if isinstance(model, CNN1D):
            return model.norm(torch.from_numpy(x).transpose(1, 2)).transpose(1, 2).numpy()
        return model.norm(torch.from_numpy(x)).numpy()
