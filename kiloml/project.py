"""The project file, ``kiloml.toml``: schema, loading and one-line errors.

Every section is a pydantic model that forbids unknown keys. Unknown keys are
found before pydantic runs so the error can name the line and suggest the
closest known key ("did you mean ...").
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kiloml.data.files import decode_utf8, read_regular
from kiloml.errors import KilomlError

STATISTICS = (
    "mean",
    "std",
    "min",
    "max",
    "rms",
    "peak_to_peak",
    "zero_crossing_rate",
    "mean_crossing_rate",
    "skewness",
    "kurtosis",
)


# scikit-learn's random_state and numpy's seeds: 0 .. 2**32 - 1
SEED_MAX = 2**32 - 1


# Upper bounds where a number turns into sample counts, buffers or arithmetic: past them
# nothing can work, and unbounded values overflowed float and int arithmetic downstream.
MAX_RATE_HZ = 100e6  # 100 MHz of samples
MAX_DURATION_MS = 24 * 3600e3  # a day
MAX_POWER_UW = 1e9  # a kilowatt


class Section(BaseModel):
    # strict: no silent coercion; allow_inf_nan: TOML's inf and nan are not settings
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DataConfig(Section):
    """Where recordings come from and how to read them."""

    source: Literal["csv", "wav", "npy", "watch", "basic-motions"]
    path: str | None = None
    glob: str | None = None
    channels: list[str] | None = None
    sample_rate_hz: float | None = Field(default=None, gt=0, le=MAX_RATE_HZ)
    timestamp_column: str | None = None
    timestamp_unit: Literal["s", "ms"] = "s"
    label_column: str | None = None
    label_pattern: str | None = None
    label_from_folder: bool = False
    group_column: str | None = None
    group_pattern: str | None = None
    min_label_coverage: float = Field(default=0.8, gt=0.5, le=1.0)
    short_recordings: Literal["error", "skip"] = "error"
    resample: bool = False  # bring recordings at another rate to sample_rate_hz
    # zero-pad shorter recordings
    pad_to_ms: float | None = Field(default=None, gt=0, le=MAX_DURATION_MS)

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("name at least one channel (or leave channels out: all of them)")
        for name in value:
            if not name.strip():
                raise ValueError("a channel name is empty")
            if value.count(name) > 1:
                raise ValueError(f"channel '{name}' is listed twice")
        return value

    @field_validator("label_pattern", "group_pattern")
    @classmethod
    def _regex_compiles(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return value
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            # "\b", "\t", "\f" ... are TOML escapes in a double-quoted string, not regex ones
            raise ValueError("holds a control character (a TOML escape such as \\b or \\t "
                             "in a double-quoted string?): write regular expressions in "
                             "single quotes, e.g. '\\bsubject(?P<group>\\d+)'")
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        group = "label" if info.field_name == "label_pattern" else "group"
        if group not in compiled.groupindex:
            raise ValueError(f"needs a named group (?P<{group}>...)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        files = self.source in ("csv", "wav", "npy")
        if files and not self.path:
            raise ValueError(f"source '{self.source}' needs 'path' (a file or a folder)")
        if not files:
            for key in ("path", "glob", "label_column", "label_pattern", "group_column",
                        "group_pattern", "timestamp_column"):
                if getattr(self, key) is not None:
                    raise ValueError(f"'{key}' does not apply to the built-in data set "
                                     f"'{self.source}'")
            if self.label_from_folder:
                raise ValueError(f"'label_from_folder' does not apply to '{self.source}'")
        if files:
            sources = [self.label_column is not None, self.label_pattern is not None,
                       self.label_from_folder]
            if sum(sources) != 1:
                raise ValueError("set exactly one of label_column, label_pattern, "
                                 "label_from_folder")
            if self.group_column is not None and self.group_pattern is not None:
                raise ValueError("set at most one of group_column, group_pattern")
        if self.source != "csv":
            for key in ("timestamp_column", "group_column"):
                if getattr(self, key) is not None:
                    raise ValueError(f"'{key}' applies to CSV files only")
        if self.resample and self.sample_rate_hz is None:
            raise ValueError("resample = true needs sample_rate_hz, the rate to resample to")
        if self.source == "wav" and self.label_column is not None:
            raise ValueError("WAV files have no label column: use label_pattern or "
                             "label_from_folder")
        return self


FLOAT32_MAX = 3.4028234663852886e38
PAD_RULES = ("zero", "edge")
CROP_RULES = ("error", "start", "center", "end")


class RecordingRule(Section):
    """How ``[window] mode = "recording"`` makes one window of every recording (after
    preprocessing): a shorter one is padded after its last sample, a longer one cropped.

    pad: "zero", "edge" (the last sample repeated) or a number; crop: the part kept,
    "start" (the first length_ms), "center" (the middle; an odd extra sample is dropped at
    the end) or "end" (the last length_ms), or "error" (longer recordings are refused)."""

    pad: Literal[PAD_RULES] | float = "zero"  # type: ignore[valid-type]
    crop: Literal[CROP_RULES] = "error"  # type: ignore[valid-type]

    @field_validator("pad")
    @classmethod
    def _pad_is_float32(cls, value: Any) -> Any:
        if isinstance(value, float) and abs(value) > FLOAT32_MAX:
            raise ValueError("a pad value must be a float32 (magnitude at most 3.4e38)")
        return value


class WindowConfig(Section):
    """Windows cut from the recordings ("windows": window_ms every stride_ms), or one
    window per recording ("recording": each fitted to length_ms by pad and crop)."""

    window_ms: float | None = Field(default=None, gt=0, le=MAX_DURATION_MS)
    stride_ms: float | None = Field(default=None, gt=0, le=MAX_DURATION_MS)
    mode: Literal["windows", "recording"] = "windows"
    length_ms: float | None = Field(default=None, gt=0, le=MAX_DURATION_MS)
    pad: Literal[PAD_RULES] | float = "zero"  # type: ignore[valid-type]
    crop: Literal[CROP_RULES] = "error"  # type: ignore[valid-type]

    @field_validator("pad")
    @classmethod
    def _pad_is_float32(cls, value: Any) -> Any:
        return RecordingRule._pad_is_float32(value)

    @model_validator(mode="after")
    def _keys_of_mode(self) -> WindowConfig:
        # a key of the other mode counts when it is not its default (a section dumped
        # with model_dump, as search candidates are, lists every key)
        given = {k for k in type(self).model_fields
                 if getattr(self, k) != type(self).model_fields[k].default}
        if self.mode == "windows":
            for key in ("window_ms", "stride_ms"):
                if getattr(self, key) is None:
                    raise ValueError(f"missing required key '{key}' (or mode = \"recording\" "
                                     f"with length_ms: one window per recording)")
            extra = [k for k in ("length_ms", "pad", "crop") if k in given]
            if extra:
                raise ValueError(f"'{extra[0]}' applies to mode = \"recording\" (one window "
                                 f"per recording); mode is \"windows\"")
        else:
            if self.length_ms is None:
                raise ValueError("mode = \"recording\" needs length_ms: the length every "
                                 "recording is padded or cropped to")
            extra = [k for k in ("window_ms", "stride_ms") if k in given]
            if extra:
                raise ValueError(f"'{extra[0]}' applies to mode = \"windows\"; in mode = "
                                 f"\"recording\" the window is the recording, length_ms long")
        return self

    @property
    def recording_rule(self) -> RecordingRule | None:
        """The pad / crop rule of mode = "recording" (None for windows)."""
        if self.mode != "recording":
            return None
        return RecordingRule(pad=self.pad, crop=self.crop)


class StatisticsStageConfig(Section):
    stage: Literal["statistics"]
    statistics: list[Literal[STATISTICS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(STATISTICS))

    @field_validator("statistics")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("choose at least one statistic")
        if len(set(value)) != len(value):
            raise ValueError("a statistic is listed twice")
        return value


SPECTRAL_FEATURES = ("band_energies", "peaks", "centroid", "entropy", "flatness")
WINDOW_FUNCTIONS = ("hann", "hamming", "rectangular")


class SpectralStageConfig(Section):
    """Averaged power spectrum of each channel and features from it."""

    stage: Literal["spectral"]
    fft_length: int = 64
    window_function: Literal[WINDOW_FUNCTIONS] = "hann"  # type: ignore[valid-type]
    features: list[Literal[SPECTRAL_FEATURES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(SPECTRAL_FEATURES))
    n_bands: int = Field(default=8, ge=1, le=256)
    band_spacing: Literal["linear", "log"] = "linear"
    f_min_hz: float = Field(default=0.0, ge=0, le=MAX_RATE_HZ)
    f_max_hz: float | None = Field(default=None, gt=0, le=MAX_RATE_HZ)
    n_peaks: int = Field(default=3, ge=1, le=32)
    log: bool = True
    channels: list[str] | None = None

    @field_validator("features")
    @classmethod
    def _some(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError("list each spectral feature at most once, at least one")
        return value


class MfccStageConfig(Section):
    """Log mel filterbank energies ("mfe") or cepstral coefficients ("mfcc") per frame."""

    stage: Literal["mfcc", "mfe"]
    frame_ms: float = Field(default=25.0, gt=0, le=MAX_DURATION_MS)
    frame_stride_ms: float = Field(default=10.0, gt=0, le=MAX_DURATION_MS)
    fft_length: int = 256
    window_function: Literal[WINDOW_FUNCTIONS] = "hamming"  # type: ignore[valid-type]
    n_filters: int = Field(default=32, ge=1, le=256)
    n_coefficients: int = Field(default=13, ge=1, le=256)
    f_min_hz: float = Field(default=0.0, ge=0, le=MAX_RATE_HZ)
    f_max_hz: float | None = Field(default=None, gt=0, le=MAX_RATE_HZ)
    channels: list[str] | None = None

    @model_validator(mode="after")
    def _coefficients(self) -> MfccStageConfig:
        if self.stage == "mfcc" and self.n_coefficients > self.n_filters:
            raise ValueError(f"n_coefficients = {self.n_coefficients} is more MFCCs than "
                             f"mel filters (n_filters = {self.n_filters})")
        return self


class ScaleStageConfig(Section):
    """Per-feature scaling of everything before it, fitted on the training windows."""

    stage: Literal["scale"]
    method: Literal["standard", "minmax"] = "standard"


FeatureStageConfig = Annotated[
    StatisticsStageConfig | SpectralStageConfig | MfccStageConfig | ScaleStageConfig,
    Field(discriminator="stage")]

FEATURE_STAGES: dict[str, type[Section]] = {
    "statistics": StatisticsStageConfig, "spectral": SpectralStageConfig,
    "mfcc": MfccStageConfig, "mfe": MfccStageConfig, "scale": ScaleStageConfig}


class FilterStageConfig(Section):
    """Butterworth IIR filter (second-order sections); state carries across samples."""

    stage: Literal["filter"]
    type: Literal["lowpass", "highpass", "bandpass"]
    cutoff_hz: float | list[float]
    order: int = Field(default=4, ge=1, le=10)

    @model_validator(mode="after")
    def _cutoff(self) -> FilterStageConfig:
        edges = self.cutoff_hz if isinstance(self.cutoff_hz, list) else [self.cutoff_hz]
        if self.type == "bandpass" and len(edges) != 2:
            raise ValueError("a bandpass filter needs cutoff_hz = [low, high]")
        if self.type != "bandpass" and isinstance(self.cutoff_hz, list):
            raise ValueError(f"a {self.type} filter takes one cutoff_hz")
        if any(e <= 0 for e in edges) or (len(edges) == 2 and edges[0] >= edges[1]):
            raise ValueError("cutoff_hz must be positive (and low < high)")
        return self


class PreEmphasisStageConfig(Section):
    stage: Literal["pre_emphasis"]
    coefficient: float = Field(default=0.97, ge=0, lt=1)


class DecimateStageConfig(Section):
    """Anti-alias low-pass, then keep every factor-th sample."""

    stage: Literal["decimate"]
    factor: int = Field(ge=2, le=16)


PreprocessStageConfig = Annotated[
    FilterStageConfig | PreEmphasisStageConfig | DecimateStageConfig,
    Field(discriminator="stage")]

PREPROCESS_STAGES: dict[str, type[Section]] = {
    "filter": FilterStageConfig, "pre_emphasis": PreEmphasisStageConfig,
    "decimate": DecimateStageConfig}


class AugmentConfig(Section):
    """Copies of each training recording with noise, a time shift and a gain change."""

    copies: int = Field(default=0, ge=0, le=1000)
    noise_snr_db: list[float] = Field(default_factory=lambda: [15.0, 40.0])
    time_shift_ms: float = Field(default=0.0, ge=0, le=MAX_DURATION_MS)
    gain_db: list[float] = Field(default_factory=lambda: [-6.0, 6.0])
    seed: int = Field(default=0, ge=0, le=SEED_MAX)

    @field_validator("noise_snr_db", "gain_db")
    @classmethod
    def _range(cls, value: list[float], info: Any) -> list[float]:
        if len(value) != 2 or value[0] > value[1]:
            raise ValueError("give a range [low, high]")
        limit = 200.0 if info.field_name == "noise_snr_db" else 120.0
        if any(abs(v) > limit for v in value):
            raise ValueError(f"decibels within +-{limit:g}")
        return value


class TreeModelConfig(Section):
    kind: Literal["random_forest", "extra_trees", "decision_tree"]
    n_estimators: int = Field(default=20, ge=1, le=1000)
    max_depth: int | None = Field(default=None, ge=1, le=64)
    min_samples_leaf: int = Field(default=1, ge=1)
    # sklearn's meaning: an int is a count of features, a float a fraction of them
    max_features: Literal["sqrt", "log2", "all"] | int | float = "sqrt"
    class_weight: Literal["balanced"] | None = None
    random_state: int = Field(default=0, ge=0, le=SEED_MAX)
    # C form: "table" walks node arrays (smallest flash), "inline" emits the trees as
    # nested if/else code (fewest instructions). Both give identical decisions.
    c_style: Literal["table", "inline"] = "table"
    # Compaction (still exact: the Python reference is the compacted model): "int16"
    # compares a per-feature float32 affine quantization of the features with int16
    # thresholds; "uint8" / "uint16" leaves hold integer class weights (integer vote).
    thresholds: Literal["float32", "int16"] = "float32"
    leaves: Literal["exact", "uint8", "uint16"] = "exact"


    @field_validator("max_features")
    @classmethod
    def _max_features(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("use 'sqrt', 'log2', 'all', a count or a fraction")
        if isinstance(value, int) and value < 1:
            raise ValueError("a count of features must be at least 1")
        if isinstance(value, float) and not 0.0 < value <= 1.0:
            raise ValueError("a fraction of features must be in (0, 1]")
        return value


class NeuralModelConfig(Section):
    """A neural network: a PyTorch template trained here, or a user's .tflite/.onnx model.

    Templates: ``mlp`` on the feature vector, ``cnn1d`` on raw windows [T, C],
    ``dscnn`` on a time-frequency feature stage (mfcc or mfe) seen as [frames, coefs].
    The deployed model is the int8 graph (TFLite quantization spec).
    """

    kind: Literal["mlp", "cnn1d", "dscnn", "imported"]
    path: str | None = None  # the .tflite / .onnx file for kind = "imported"
    # What the network reads: the feature vector or the raw window [T, C].
    input: Literal["features", "window"] | None = None
    hidden: list[int] = Field(default_factory=lambda: [32, 16])       # mlp
    filters: list[int] = Field(default_factory=lambda: [16, 32, 32])  # cnn1d, dscnn
    kernel_size: int = Field(default=5, ge=1, le=64)
    stride: int = Field(default=2, ge=1, le=8)                        # first convolution
    pool: bool = False                                                # cnn1d: max-pool by 2
    dropout: float = Field(default=0.1, ge=0, lt=1)
    epochs: int = Field(default=60, ge=1, le=10_000)
    patience: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0, lt=1)
    weight_decay: float = Field(default=1e-4, ge=0, le=1)
    class_weight: Literal["balanced"] | None = None
    # Training groups held out for early stopping (grouped, like the test split).
    validation_groups: int = Field(default=2, ge=0)
    calibration: Literal["minmax", "percentile", "mse"] = "minmax"
    percentile: float = Field(default=99.99, gt=50, le=100)
    calibration_windows: int = Field(default=1000, ge=1)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    # kind = "imported": the element order of the model's input when its shape alone
    # cannot tell ([1, T * C], or T == C): the window as [T, C] (channels last) or [C, T]
    input_layout: Literal["channels_last", "channels_first"] | None = None
    # kind = "imported", float models: per-channel (x - mean) / std on the training
    # windows, in float before int8, folded into the first layer ("none": the raw input)
    input_scaling: Literal["standardize", "none"] = "standardize"

    @field_validator("hidden", "filters")
    @classmethod
    def _sizes(cls, value: list[int]) -> list[int]:
        if not value or any(v < 1 or v > 4096 for v in value):
            raise ValueError("layer sizes must be between 1 and 4096, at least one")
        return value

    @model_validator(mode="after")
    def _path_for_imported(self) -> NeuralModelConfig:
        if self.kind == "imported" and not self.path:
            raise ValueError("kind = 'imported' needs path = '<model>.tflite' or '.onnx'")
        if self.kind != "imported" and self.path:
            raise ValueError("path is only for kind = 'imported'")
        for key in ("input_layout", "input_scaling"):
            # compared with the default: a saved pipeline's settings list every key
            if self.kind != "imported" and getattr(self, key) != \
                    type(self).model_fields[key].default:
                raise ValueError(f"{key} is only for kind = 'imported' (kiloml's templates "
                                 "read the window as [samples, channels] and standardize "
                                 "it themselves)")
        return self

    @property
    def reads(self) -> str:
        if self.input is not None:
            return self.input
        return "window" if self.kind == "cnn1d" else "features"


TREE_KINDS = ("random_forest", "extra_trees", "decision_tree")
NEURAL_KINDS = ("mlp", "cnn1d", "dscnn", "imported")


# --- linear models (kiloml.models.linear: exact C, decisions equal to scikit-learn's) ---


class LogisticRegressionConfig(Section):
    """scikit-learn's LogisticRegression on the feature vector (add a scale stage:
    the solvers converge far faster on standardized features). multi_class "ovr" trains
    one binary model per class (a OneVsRestClassifier)."""

    kind: Literal["logistic_regression"]
    C: float = Field(default=1.0, gt=0, le=1e12)  # inverse regularization strength
    penalty: Literal["l2", "l1", "elasticnet", "none"] = "l2"
    l1_ratio: float = Field(default=0.5, ge=0, le=1)  # penalty = "elasticnet" only
    multi_class: Literal["multinomial", "ovr"] = "multinomial"
    solver: Literal["lbfgs", "newton-cg", "newton-cholesky", "sag", "saga",
                    "liblinear"] | None = None  # None: lbfgs for l2 and none, else saga
    class_weight: Literal["balanced"] | None = None
    max_iter: int = Field(default=1000, ge=1, le=100_000)
    tol: float = Field(default=1e-4, gt=0, le=1)
    fit_intercept: bool = True
    random_state: int = Field(default=0, ge=0, le=SEED_MAX)

    @model_validator(mode="after")
    def _solver_fits_penalty(self) -> LogisticRegressionConfig:
        allowed = {"l1": ("saga", "liblinear"), "elasticnet": ("saga",)}.get(self.penalty)
        if allowed is not None and self.solver is not None and self.solver not in allowed:
            raise ValueError(f"penalty = '{self.penalty}' needs solver = "
                             f"{' or '.join(repr(a) for a in allowed)} (or no solver)")
        if self.penalty == "none" and self.solver == "liblinear":
            raise ValueError("solver 'liblinear' needs a penalty (l2 or l1)")
        # compared with the default: a saved pipeline's settings list every key
        if self.l1_ratio != type(self).model_fields["l1_ratio"].default and \
                self.penalty != "elasticnet":
            raise ValueError("l1_ratio is only for penalty = 'elasticnet'")
        return self


class LinearSvcConfig(Section):
    """scikit-learn's LinearSVC on the feature vector (one-vs-rest or Crammer-Singer)."""

    kind: Literal["linear_svc"]
    C: float = Field(default=1.0, gt=0, le=1e12)
    penalty: Literal["l2", "l1"] = "l2"
    loss: Literal["squared_hinge", "hinge"] = "squared_hinge"
    dual: Literal["auto"] | bool = "auto"
    multi_class: Literal["ovr", "crammer_singer"] = "ovr"
    class_weight: Literal["balanced"] | None = None
    max_iter: int = Field(default=1000, ge=1, le=100_000)
    tol: float = Field(default=1e-4, gt=0, le=1)
    fit_intercept: bool = True
    random_state: int = Field(default=0, ge=0, le=SEED_MAX)

    @model_validator(mode="after")
    def _liblinear_combination(self) -> LinearSvcConfig:
        if self.penalty == "l1" and self.loss == "hinge":
            raise ValueError("penalty = 'l1' needs loss = 'squared_hinge'")
        if self.penalty == "l1" and self.dual is True:
            raise ValueError("penalty = 'l1' needs dual = false (or 'auto')")
        if self.loss == "hinge" and self.dual is False:
            raise ValueError("loss = 'hinge' needs dual = true (or 'auto')")
        return self


class RidgeConfig(Section):
    """scikit-learn's RidgeClassifier on the feature vector (least squares on +-1 targets)."""

    kind: Literal["ridge"]
    alpha: float = Field(default=1.0, ge=0, le=1e12)  # regularization strength
    solver: Literal["auto", "svd", "cholesky", "lsqr", "sparse_cg", "sag", "saga"] = "auto"
    class_weight: Literal["balanced"] | None = None
    max_iter: int | None = Field(default=None, ge=1, le=100_000)  # iterative solvers
    tol: float = Field(default=1e-4, gt=0, le=1)
    fit_intercept: bool = True
    random_state: int = Field(default=0, ge=0, le=SEED_MAX)


LinearModelConfig = LogisticRegressionConfig | LinearSvcConfig | RidgeConfig
LINEAR_CONFIGS: dict[str, type[Section]] = {"logistic_regression": LogisticRegressionConfig,
                                            "linear_svc": LinearSvcConfig,
                                            "ridge": RidgeConfig}
LINEAR_KINDS = tuple(LINEAR_CONFIGS)


def check_regex(value: str) -> re.Pattern:
    """A regular expression from the project file: compiled, without control characters."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        # "\b", "\t", "\f" ... are TOML escapes in a double-quoted string, not regex ones
        raise ValueError("holds a control character (a TOML escape such as \\b or \\t "
                         "in a double-quoted string?): write regular expressions in "
                         "single quotes, e.g. '\\bsubject(?P<group>\\d+)'")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None


class EvaluationConfig(Section):
    """The held-out test set (test_groups, a seeded draw of test_fraction of the groups, or
    the data set's own split: test_pattern on the file paths), cross-validation on the
    rest, and how windowed results are summed up per recording."""

    test_groups: list[str] | None = None
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    # a regular expression searched in each file's path below [data] path (as
    # label_pattern is): the files it matches are the test set
    test_pattern: str | None = None
    cv_folds: int = Field(default=5, ge=0, le=50)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    # "vote": each held-out recording's decision is the majority of its windows' labels
    per_recording: Literal["none", "vote"] = "none"

    @field_validator("test_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            if not value:
                raise ValueError("an empty pattern matches every file")
            check_regex(value)
        return value

    @model_validator(mode="after")
    def _one_test_set(self) -> EvaluationConfig:
        if self.test_pattern is not None:
            for key in ("test_groups", "test_fraction"):
                # (not the default: a dumped section, as search candidates are, lists all)
                if getattr(self, key) != type(self).model_fields[key].default:
                    raise ValueError(f"set test_pattern or {key}, not both: test_pattern "
                                     f"names the test files itself")
        return self

    @field_validator("test_groups", mode="before")
    @classmethod
    def _groups_as_text(cls, value: Any) -> Any:
        # group names are text; a whole number (test_groups = [9, 10]) is its digits, but
        # a bool or a float is not a group name (1e3 would become '1000.0')
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v
                    for v in value]
        return value

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        if value == 1:
            raise ValueError("cv_folds must be 0 (no cross-validation) or at least 2")
        return value


class TargetConfig(Section):
    name: str = "cortex-m4f"
    ram_budget_bytes: int | None = Field(default=None, gt=0, le=2**32)
    flash_budget_bytes: int | None = Field(default=None, gt=0, le=2**32)
    latency_budget_ms: float | None = Field(default=None, gt=0, le=MAX_DURATION_MS)
    warn_fraction: float = Field(default=0.7, gt=0, le=1)
    # power: the average-power budget of the processor's share, the battery, and how
    # often the device classifies (default: every window stride)
    power_budget_uw: float = Field(default=100.0, gt=0, le=MAX_POWER_UW)
    battery_mah: float = Field(default=225.0, gt=0, le=1e9)  # a CR2032 coin cell
    inference_rate_hz: float | None = Field(default=None, gt=0, le=MAX_RATE_HZ)


class DecisionConfig(Section):
    """The decision layer after the model: thresholds, an "uncertain" answer, smoothing
    over windows and hysteresis. The defaults pass the model's arg-max through."""

    # Per-class score thresholds: none, or calibrated on the cross-validation (out-of-fold)
    # scores of the training groups for a target.
    thresholds: Literal["none", "calibrated"] = "none"
    target: Literal["precision", "recall", "false_alarms_per_hour"] = "precision"
    target_value: float = Field(default=0.9, gt=0, le=1e9)
    # "uncertain" when the top (smoothed) score or its margin over the second is lower.
    min_score: float = Field(default=0.0, ge=0, le=1)
    min_margin: float = Field(default=0.0, ge=0, le=1)
    smoothing: Literal["none", "average", "majority"] = "none"
    smoothing_windows: int = Field(default=1, ge=1, le=64)
    # hysteresis: consecutive windows a new class needs to switch on, "uncertain" to switch off
    on_windows: int = Field(default=1, ge=1, le=1000)
    off_windows: int = Field(default=1, ge=1, le=1000)

    @model_validator(mode="after")
    def _target_range(self) -> DecisionConfig:
        if self.target in ("precision", "recall") and self.target_value > 1:
            raise ValueError(f"target_value is a {self.target} in (0, 1]; got "
                             f"{self.target_value}")
        if self.smoothing == "none" and self.smoothing_windows != 1:
            raise ValueError("smoothing_windows needs smoothing = 'average' or 'majority'")
        return self


class MonitorSection(Section):
    """[monitor]: the on-device monitor after the decision layer (kiloml.monitor). Absent:
    no monitor. The keys mirror kiloml.monitor.MonitorConfig."""

    features: int = Field(default=4, ge=1, le=256)  # k most important features watched
    alpha: float = Field(default=1.0 / 32.0, gt=0, le=1)  # EWMA weight of the newest window
    range_quantiles: list[float] = Field(default_factory=lambda: [0.005, 0.995])
    stuck_windows: int = Field(default=8, ge=1, le=65535)
    stuck_floor_fraction: float = Field(default=0.01, gt=0, le=1)
    snapshot_every: int = Field(default=64, ge=1, le=1_000_000)  # windows per record
    # the false-alarm budget in device time ("30d", "12h"): limits calibrated on the
    # held-out devices' clean streams (kiloml.monitor.calibrate); absent: training defaults
    false_alarm_every: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?[smhd]$")
    # false alarms and drift detection delays on the held-out devices (monitor.evaluation)
    evaluate: bool = True
    ram_budget_bytes: int = Field(default=256, gt=0, le=2**32)

    @field_validator("range_quantiles")
    @classmethod
    def _quantiles(cls, value: list[float]) -> list[float]:
        if len(value) != 2 or not 0.0 <= value[0] < value[1] <= 1.0:
            raise ValueError(f"range_quantiles is [lo, hi] with 0 <= lo < hi <= 1, not {value}")
        return value

    def monitor_config(self):  # -> kiloml.monitor.MonitorConfig
        from kiloml.monitor.config import MonitorConfig

        return MonitorConfig(n_monitored=self.features, alpha=self.alpha,
                             range_quantiles=(self.range_quantiles[0], self.range_quantiles[1]),
                             stuck_windows=self.stuck_windows,
                             stuck_floor_fraction=self.stuck_floor_fraction)


class GateConfig(Section):
    """[gate]: the release gate's limits (`kiloml gate`, kiloml.registry.gate), read from
    the project file a registry package stores. Drops are against the baseline version
    (--against, default the production alias)."""

    # points of (balanced) accuracy the held-out test may lose against the baseline
    max_accuracy_drop: float = Field(default=1.0, ge=0, le=100)
    # the decision layer's false alarms per hour on the held-out stream (none: unchecked)
    max_false_alarms_per_hour: float | None = Field(default=None, ge=0, le=1e9)
    # the share of decisions that change against the baseline on its held-out streams
    max_changed_fraction: float = Field(default=0.05, ge=0, le=1)


class OutputConfig(Section):
    dir: str | None = None


class LibraryConfig(Section):
    """The generated C library. ``prefix`` names its API and symbols (``gesture_classify``,
    ``GESTURE_CLASSES``, ``gesture_model.h``) so several models link into one firmware."""

    prefix: str = "kml"
    # parameter blobs (kiloml.blob, docs/blob_format.md): the forest and decision
    # parameters read through a pointer kml_blob_activate retargets
    updatable: bool = False
    # an Ed25519 public key (PEM, relative to the project file): blobs must be signed by it
    update_key: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _update_key_needs_updatable(self) -> LibraryConfig:
        if self.update_key is not None and not self.updatable:
            raise ValueError("update_key needs updatable = true")
        return self

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        from kiloml.codegen.prefix import check_prefix

        try:
            return check_prefix(value, where="")
        except KilomlError as exc:
            raise ValueError(exc.message.strip()) from None


class SearchConfig(Section):
    """`kiloml search`: the space to explore (``space``, checked by kiloml.search.space)
    and how to pick one candidate from the feasible ones."""

    space: dict[str, Any] = Field(default_factory=dict)
    # most_accurate: the best cross-validated score; cheapest_within: the lowest ``cost``
    # among those within ``accuracy_tolerance_points`` of the best.
    pick: Literal["most_accurate", "cheapest_within"] = "most_accurate"
    cost: Literal["energy", "flash", "ram", "latency"] = "energy"
    accuracy_tolerance_points: float = Field(default=1.0, ge=0, le=100)
    score: Literal["accuracy", "balanced_accuracy"] = "balanced_accuracy"
    folds: int | None = Field(default=None, ge=2, le=50)  # default: [evaluation] cv_folds
    # Headroom kept below each budget for the estimator's error (flash and RAM are
    # within a few percent, instructions within 20%; see bench/results/estimator.md).
    margin: float = Field(default=0.05, ge=0, lt=1)
    max_candidates: int = Field(default=200, ge=1, le=100_000)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    dir: str | None = None  # default: <output dir>-search next to the run's output


class TeacherConfig(Section):
    """[optimize] distill_from: the larger model whose soft targets teach the network.

    A forest or extra trees reads per-channel statistics of the window (or the feature
    vector); a template (mlp, cnn1d, dscnn) reads what the student reads. Unset sizes take
    the student's settings (epochs, kernel_size, stride ...)."""

    kind: Literal["random_forest", "extra_trees", "mlp", "cnn1d", "dscnn"]
    n_estimators: int = Field(default=100, ge=1, le=1000)
    max_depth: int | None = Field(default=None, ge=1, le=64)
    min_samples_leaf: int = Field(default=1, ge=1)
    hidden: list[int] | None = None
    filters: list[int] | None = None
    kernel_size: int | None = Field(default=None, ge=1, le=64)
    stride: int | None = Field(default=None, ge=1, le=8)
    epochs: int | None = Field(default=None, ge=1, le=10_000)

    @field_validator("hidden", "filters")
    @classmethod
    def _sizes(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(v < 1 or v > 4096 for v in value)):
            raise ValueError("layer sizes must be between 1 and 4096, at least one")
        return value


class OptimizeConfig(Section):
    """Optimizations of a trained network (kiloml.optimize), in this order: the student
    trained with distillation, pruned and fine-tuned, then quantization-aware training."""

    # structured: whole channels / neurons (smaller graph, fewer MACs); magnitude: single
    # weights set to zero (the dense int8 kernels still store and multiply them).
    prune: Literal["none", "structured", "magnitude"] = "none"
    sparsity: float = Field(default=0.0, ge=0, le=0.95)  # the fraction of weights removed
    prune_schedule: Literal["gradual", "one_shot"] = "gradual"  # magnitude pruning
    fine_tune_epochs: int = Field(default=20, ge=1, le=10_000)  # after pruning, and QAT
    fine_tune_learning_rate: float | None = Field(default=None, gt=0, lt=1)
    distill_from: TeacherConfig | None = None
    temperature: float = Field(default=4.0, gt=0, le=100)
    distill_alpha: float = Field(default=0.5, ge=0, le=1)  # weight of the teacher's term
    # auto: when int8 loses more than qat_threshold_points to float on validation groups
    qat: Literal["off", "auto", "on"] = "off"
    qat_threshold_points: float = Field(default=1.0, ge=0, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> OptimizeConfig:
        if self.prune != "none" and self.sparsity <= 0:
            raise ValueError(f"prune = '{self.prune}' needs sparsity, a fraction in (0, 0.95]")
        if self.prune == "none" and self.sparsity > 0:
            raise ValueError("sparsity needs prune = 'structured' or 'magnitude'")
        return self

    @property
    def active(self) -> bool:
        return self.prune != "none" or self.distill_from is not None or self.qat != "off"


class Project(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig
    window: WindowConfig
    preprocess: list[PreprocessStageConfig] = Field(default_factory=list)
    features: list[FeatureStageConfig] = Field(
        default_factory=lambda: [StatisticsStageConfig(stage="statistics")])
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: (TreeModelConfig | NeuralModelConfig | LogisticRegressionConfig | LinearSvcConfig
           | RidgeConfig) = Field(discriminator="kind")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    target: TargetConfig = Field(default_factory=TargetConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    library: LibraryConfig = Field(default_factory=LibraryConfig)
    search: SearchConfig | None = None
    monitor: MonitorSection | None = None
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig)
    gate: GateConfig = Field(default_factory=GateConfig)


class LoadedProject(BaseModel):
    """A validated project plus where it came from (paths resolve against ``root``)."""

    model_config = ConfigDict(frozen=True)

    config: Project
    path: Path
    root: Path

    def resolve(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.root / p

    def target_profile(self, name: str | None = None):
        """The target's profile: a built-in name, or a .toml path (relative to the project)."""
        from kiloml.targets.profiles import load_profile

        name = name or self.config.target.name
        return load_profile(str(self.resolve(name)) if name.endswith(".toml") else name)

    @property
    def output_dir(self) -> Path:
        if self.config.output.dir:
            return self.resolve(self.config.output.dir)
        return Path.cwd() / "build" / self.config.name


# --- loading ---------------------------------------------------------------


def locate(project: LoadedProject, section: tuple[str, ...], key: str | None) -> int | None:
    """The line of ``key`` in ``section`` of the project file (for errors found later)."""
    return locate_in(project.path, section, key)


def locate_in(path: Path, section: tuple[str, ...], key: str | None) -> int | None:
    """The line of ``key`` in ``section`` of a project file (best effort)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return find_key_line(text, section, key)


def line_of_setting(project: LoadedProject, where: str | None) -> int | None:
    """The line of a setting named like an error's ``where`` ("[evaluation] cv_folds")."""
    m = re.fullmatch(r"\[([A-Za-z_.0-9]+)\]\s*([A-Za-z_]+)?", where or "")
    if not m:
        return None
    return locate(project, tuple(m.group(1).split(".")), m.group(2))


MAX_PROJECT_BYTES = 1 << 22  # a project file is a few kB; a bigger one is not a project file


def load_project(path: str | Path) -> LoadedProject:
    """Read and validate a project file (or a folder holding ``kiloml.toml``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "kiloml.toml"
    if not os.path.lexists(p):
        raise KilomlError("project file not found", file=p)
    text = decode_utf8(read_regular(p, p, MAX_PROJECT_BYTES, "project file"), p, "project file")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        msg = re.sub(r"\s*\((at line \d+, column \d+|at end of document)\)", "", str(exc))
        raise KilomlError(f"invalid TOML: {msg}{_escape_hint(msg)}", file=p, line=line) from None
    _check_unknown_keys(raw, Project, (), text, p)
    try:
        config = Project.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, text, p) from None
    _check_optimize_applies(config, text, p)
    loaded = LoadedProject(config=config, path=p.resolve(), root=p.resolve().parent)
    try:
        loaded.target_profile()
    except KilomlError as exc:
        if exc.file is not None:  # a profile file of the user's: its own path and field
            raise
        raise KilomlError(exc.message, file=p, line=find_key_line(text, ("target",), "name"),
                          where="[target] name") from None
    return loaded


def _check_optimize_applies(config: Project, text: str, path: Path) -> None:
    """[optimize] retrains a template network: not for trees or imported models."""
    opt, model = config.optimize, config.model
    used = [k for k, on in (("prune", opt.prune != "none"),
                            ("distill_from", opt.distill_from is not None),
                            ("qat", opt.qat != "off")) if on]
    if not used:
        return
    line = find_key_line(text, ("optimize",), used[0])
    if not isinstance(model, NeuralModelConfig) or model.kind == "imported":
        what = ("a tree model" if isinstance(model, TreeModelConfig) else "an imported model"
                if isinstance(model, NeuralModelConfig) else "a linear model")
        raise KilomlError(f"[optimize] {used[0]} retrains a network template (mlp, cnn1d, "
                          f"dscnn); [model] kind = '{model.kind}' is {what}", file=path,
                          line=line)
    teacher = opt.distill_from
    if teacher is not None and teacher.kind in ("mlp", "cnn1d", "dscnn"):
        reads = "window" if teacher.kind == "cnn1d" else "features"
        if reads != model.reads or (teacher.kind == "dscnn") != (model.kind == "dscnn"):
            raise KilomlError(f"[optimize] distill_from: a {teacher.kind} teacher cannot read "
                              f"what the {model.kind} student reads ({model.reads}); use a "
                              f"{model.kind} teacher or a random_forest",
                              file=path, line=find_key_line(text, ("optimize",), "distill_from"))


def _escape_hint(message: str) -> str:
    """A backslash TOML does not know in a double-quoted string is almost always a regular
    expression (or a Windows path): say how to write it."""
    if "Unescaped '\\'" in message or "Invalid hex value" in message:
        return ("; a backslash in a double-quoted string starts an escape: write regular "
                "expressions in single quotes (a literal string), e.g. "
                "group_pattern = '(?P<group>s\\d+)'")
    return ""


def _toml_error_line(message: str) -> int | None:
    m = re.search(r"at line (\d+)", message)
    return int(m.group(1)) if m else None


def section_model(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The model class that validates ``value`` for a field with ``annotation``."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return section_model(typing.get_args(annotation)[0], value)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(annotation):
            found = section_model(arg, value)
            if found is not None:
                return found
    return None


def _check_unknown_keys(raw: Any, model: type[BaseModel], where: tuple[str, ...], text: str,
                        path: Path) -> None:
    if not isinstance(raw, dict):
        return
    fields = model.model_fields
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else \
                f" (known keys: {', '.join(fields)})"
            section = f"[{'.'.join(where)}] " if where else ""
            raise KilomlError(f"{section}unknown key '{key}'{hint}", file=path,
                              line=find_key_line(text, where, key))
        annotation = fields[key].annotation
        if key in ("features", "preprocess") and model is Project:
            table = FEATURE_STAGES if key == "features" else PREPROCESS_STAGES
            for i, item in enumerate(value if isinstance(value, list) else []):
                stage = item.get("stage") if isinstance(item, dict) else None
                if isinstance(stage, str) and stage in table:
                    _check_unknown_keys(item, table[stage], (*where, f"{key}.{i}"), text, path)
            continue
        if key == "model" and model is Project and isinstance(value, dict):
            kind = value.get("kind")
            kind = kind if isinstance(kind, str) else None
            sub_model = (NeuralModelConfig if kind in NEURAL_KINDS else
                         TreeModelConfig if kind in TREE_KINDS else
                         LINEAR_CONFIGS.get(kind) if kind is not None else None)
            if sub_model is not None:
                _check_unknown_keys(value, sub_model, (*where, key), text, path)
            continue
        sub = section_model(annotation, value)
        if sub is not None:
            _check_unknown_keys(value, sub, (*where, key), text, path)


def find_key_line(text: str, where: tuple[str, ...], key: str | int | None) -> int | None:
    """Best-effort line number of ``key`` inside the table ``where``."""
    lines = text.splitlines()
    start = 0
    if where:
        head = where[0]
        m = re.fullmatch(r"(features|preprocess)\.(\d+)", head) if isinstance(head, str) \
            else None
        if m:
            n = int(m.group(2))
            seen = -1
            for i, line in enumerate(lines):
                if re.match(rf"^\s*\[\[\s*{m.group(1)}\s*\]\]", line):
                    seen += 1
                    if seen == n:
                        start = i + 1
                        break
        else:
            dotted = r"\.".join(re.escape(str(w)) for w in where)
            for i, line in enumerate(lines):
                if re.match(rf"^\s*\[\s*{dotted}\s*\]", line):
                    start = i + 1
                    break
    if key is None:
        return start or None
    pattern = re.compile(rf"^\s*[\"']?{re.escape(str(key))}[\"']?\s*=")
    for i in range(start, len(lines)):
        if i > start and re.match(r"^\s*\[", lines[i]) and where:
            break
        if pattern.match(lines[i]):
            return i + 1
    return start or None


def _field_names() -> set[str]:
    names: set[str] = set()
    for value in list(globals().values()):
        if isinstance(value, type) and issubclass(value, Section):
            names.update(value.model_fields)
    return names


def _error_path(err: Any) -> tuple[list[str], int | None]:
    """The keys leading to an error (``features.0`` for a stage) and the index of a list
    item, without pydantic's union and discriminator tags."""
    loc = tuple(str(x) for x in err["loc"])
    cleaned: list[str] = []
    for part in loc:
        if cleaned and cleaned[-1] in ("features", "preprocess") and part.isdigit():
            cleaned[-1] = f"{cleaned[-1]}.{part}"
            continue
        cleaned.append(part)
    if len(cleaned) >= 2 and cleaned[0].startswith(("features.", "preprocess.")) and \
            cleaned[1] in {**FEATURE_STAGES, **PREPROCESS_STAGES}:
        cleaned.pop(1)
    if len(cleaned) >= 2 and cleaned[0] == "model" and cleaned[1] in (*TREE_KINDS, *NEURAL_KINDS,
                                                                  *LINEAR_KINDS):
        cleaned.pop(1)  # the discriminator tag
    known = _field_names()
    names: list[str] = []
    item = None
    for part in cleaned:
        if part in known or re.fullmatch(r"(features|preprocess)\.\d+", part):
            names.append(part)
            item = None
        elif part.isdigit() and names:
            item = int(part)
        # anything else is a union member's tag ('float', "literal['sqrt','log2','all']")
    return names, item


def validation_error(exc: ValidationError, text: str, path: Path) -> KilomlError:
    errors = exc.errors()
    err = errors[0]
    cleaned, item = _error_path(err)
    if err["type"] in ("union_tag_invalid", "union_tag_not_found") and cleaned == ["model"]:
        kinds = ", ".join(f"'{k}'" for k in (*TREE_KINDS, *NEURAL_KINDS, *LINEAR_KINDS))
        value = err.get("input", {}).get("kind") if isinstance(err.get("input"), dict) else None
        got = f"'{value}'" if value is not None else "nothing"
        return KilomlError(f"[model] kind: got {got}; choose one of {kinds}", file=path,
                           line=find_key_line(text, ("model",), "kind"))
    # A union (max_features: a name, a count or a fraction) fails once per alternative.
    messages: list[str] = []
    for e in errors:
        if _error_path(e)[0] == cleaned:
            m = re.sub(r"^(Value error|Assertion failed), ", "", e["msg"])
            if m not in messages:
                messages.append(m)
    msg = messages[0] + "".join(", or " + m.removeprefix("Input should be ")
                                for m in messages[1:])
    if err["type"] == "missing":
        section = ".".join(cleaned[:-1])
        where = f"[{section}] " if section else ""
        line = find_key_line(text, tuple(cleaned[:-1]), None) if section else None
        return KilomlError(f"{where}missing required key '{cleaned[-1]}'", file=path, line=line)
    if cleaned and re.fullmatch(r"(features|preprocess)\.\d+", cleaned[-1]):
        # a rule across the keys of one stage
        line = find_key_line(text, (cleaned[-1],), None)
        return KilomlError(f"[{cleaned[-1]}] {msg}", file=path, line=line)
    if len(cleaned) == 1 and cleaned[0] in Project.model_fields and \
            Project.model_fields[cleaned[0]].annotation is not str and err["type"].startswith(
                ("model_", "value_error")):
        # error on the whole section (a cross-field rule)
        line = find_key_line(text, (cleaned[0],), None)
        return KilomlError(f"[{cleaned[0]}] {msg}", file=path, line=line)
    section, key = tuple(cleaned[:-1]), cleaned[-1] if cleaned else None
    line = find_key_line(text, section, key)
    value = err.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
    where = f"[{'.'.join(section)}] " if section else ""
    which = f" item {item + 1}" if item is not None else ""
    return KilomlError(f"{where}{key}{which}: {msg}{shown}", file=path, line=line)
