"""Settings that cannot work on this data, refused before anything is trained.

The schema checks each value on its own; these checks need the data: how long the
recordings are, how many samples a window holds after preprocessing, how many
features the stages make, how many training groups the split leaves. Each is one
line naming the key (``where``) and, through the project, its line.
"""

from __future__ import annotations

import numpy as np

from kiloml.data.recording import Recording
from kiloml.data.splits import Split
from kiloml.data.windows import WindowSet
from kiloml.errors import KilomlError
from kiloml.project import LoadedProject, NeuralModelConfig, TreeModelConfig, locate


def _refuse(project: LoadedProject, section: tuple[str, ...], key: str, message: str) -> None:
    name = ".".join(section)
    raise KilomlError(message, file=project.path, line=locate(project, section, key),
                      where=f"[{name}] {key}")


def check_data_settings(project: LoadedProject, recordings: list[Recording],
                        windows: WindowSet, split: Split, pipeline) -> None:
    """The window stride, the feature stages and a tree model against the data."""
    originals = [r.n_samples for r in recordings if not r.augmented]
    longest = max(originals) if originals else 0
    if windows.fit is None and windows.stride_samples > longest:  # (mode = "recording": fitted)
        _refuse(project, ("window",), "stride_ms",
                f"a stride of {windows.stride_samples} samples is longer than the longest "
                f"recording ({longest} samples): each recording gives one window, and the "
                f"held-out stream would skip whole recordings; use a stride of at most "
                f"{longest} samples")
    for i, stage in enumerate(pipeline.features):
        if stage.kind == "spectral":
            _check_spectral(project, i, stage)
    model = project.config.model
    if isinstance(model, TreeModelConfig):
        n_features = len(pipeline.feature_names())
        n_train = int(np.sum(~windows.augmented[split.train])) if windows.augmented is not None \
            else len(split.train)
        if 2 * model.min_samples_leaf > n_train:
            _refuse(project, ("model",), "min_samples_leaf",
                    f"min_samples_leaf = {model.min_samples_leaf}: no split can keep that many "
                    f"training windows on each side, the training set has {n_train}; the trees "
                    f"would be one leaf")
        if isinstance(model.max_features, int) and model.max_features > n_features:
            _refuse(project, ("model",), "max_features",
                    f"max_features = {model.max_features} is more features than the pipeline "
                    f"makes ({n_features})")
    if isinstance(model, NeuralModelConfig) and model.kind != "imported" and \
            "validation_groups" in model.model_fields_set and model.validation_groups:
        groups = len(set(windows.group[split.train].tolist()))
        if model.validation_groups >= groups:
            _refuse(project, ("model",), "validation_groups",
                    f"validation_groups = {model.validation_groups} holds out every training "
                    f"group for early stopping (the training set has {groups}); use at most "
                    f"{groups - 1}, or 0 to stop on the training loss")


def _check_spectral(project: LoadedProject, index: int, stage) -> None:
    """Every band holds an FFT bin, and the peaks asked for can exist."""
    section = (f"features.{index}",)
    edges = stage.band_edges.astype(int)
    cfg = stage.cfg
    bins = cfg.fft_length // 2 + 1
    in_range = int(edges[-1] - edges[0])
    if "band_energies" in stage.what and cfg.n_bands > in_range:
        # (fewer bands than bins can still leave a narrow log band empty: a constant
        # feature, which the model ignores, not a setting that cannot work)
        _refuse(project, section, "n_bands",
                f"n_bands = {cfg.n_bands} bands share {in_range} FFT bins (one every "
                f"{float(stage.hz_per_bin):g} Hz between f_min_hz and f_max_hz), so some "
                f"bands cover no bin: use fewer bands, a longer FFT or a wider range")
    most = (bins - 1) // 2  # local maxima among the inner bins, at most every other one
    if "peaks" in stage.what and cfg.n_peaks > most:
        _refuse(project, section, "n_peaks",
                f"n_peaks = {cfg.n_peaks}: an FFT of {cfg.fft_length} has {bins} bins, so at "
                f"most {most} peaks; the rest would always be empty")


def check_network(project: LoadedProject, cfg: NeuralModelConfig,
                  shape: tuple[int, ...]) -> None:
    """A template network's input and kernels against its input shape: what it reads, and
    no kernel (or stride) longer than the length entering its convolution."""
    if cfg.kind == "imported":
        return
    if cfg.kind == "cnn1d" and len(shape) != 2:
        _refuse(project, ("model",), "input",
                "cnn1d convolves over time: it reads the window [samples, channels] "
                "(input = 'window'), not a feature vector")
    if cfg.kind == "mlp" and len(shape) != 1:
        _refuse(project, ("model",), "input",
                "an mlp reads the feature vector (input = 'features'); a network on the raw "
                "window is kind = 'cnn1d'")
    if cfg.kind == "cnn1d":
        _check_cnn1d(project, ("model",), shape[0], cfg.kernel_size, cfg.stride,
                     len(cfg.filters), cfg.pool)
        teacher = project.config.optimize.distill_from
        if teacher is not None and teacher.kind == "cnn1d":
            _check_cnn1d(project, ("optimize",), shape[0], teacher.kernel_size or cfg.kernel_size,
                         teacher.stride or cfg.stride,
                         len(teacher.filters or cfg.filters), cfg.pool, "distill_from")
    if cfg.kind == "dscnn":
        kernel = min(cfg.kernel_size, 3)  # the template's first convolution (models.neural)
        frames, coefs = shape
        if kernel > min(frames, coefs):
            _refuse(project, ("model",), "kernel_size",
                    f"the dscnn's first {kernel}x{kernel} kernel is larger than its input "
                    f"[{frames} frames, {coefs} coefficients]: use more frames or "
                    f"coefficients")
        sizes = [-(-frames // cfg.stride), -(-coefs // cfg.stride)]
        if len(cfg.filters) > 1 and min(sizes) < 3:
            _refuse(project, ("model",), "stride",
                    f"stride = {cfg.stride} leaves [{sizes[0]}, {sizes[1]}] for the 3x3 "
                    f"depthwise kernels after the first convolution: use a smaller stride or "
                    f"more frames or coefficients")


def _check_cnn1d(project: LoadedProject, section: tuple[str, ...], window: int, kernel: int,
                 stride: int, n_convolutions: int, pool: bool, key: str | None = None) -> None:
    """Lengths entering each convolution of the cnn1d template (TFLite SAME padding: the
    first, strided, gives ceil(n / stride); a max-pool halves, rounding down)."""
    length = window
    for i in range(n_convolutions):
        if kernel > length:
            what = "the window" if i == 0 else f"the {length} samples entering convolution {i + 1}"
            _refuse(project, section, key or "kernel_size",
                    f"kernel_size = {kernel} is longer than {what} (window {window} samples, "
                    f"stride {stride}"
                    f"{', max-pool after each' if pool else ''}): use a smaller kernel, "
                    f"fewer convolutions or a longer window")
        if i == 0 and stride > length:
            _refuse(project, section, key or "stride",
                    f"stride = {stride} is longer than the {length}-sample window")
        length = -(-length // stride) if i == 0 else length
        if pool:
            length //= 2
        if length < 1:
            _refuse(project, section, key or "filters",
                    f"{i + 1} convolutions with these strides and pools leave no sample of "
                    f"the {window}-sample window")
