"""A pipeline: preprocess -> window -> features -> model, the object every step walks.

Training, evaluation, code generation, verification and reporting all use the
same ordered lists of stages, so a stage added once shows up everywhere.

* ``preprocess``: sample stages (filters, pre-emphasis, decimation) applied to whole
  recordings from a zero state, as the firmware applies them to the sample stream.
* ``features``: "window" stages each append their features for a window of
  preprocessed samples; "vector" stages (scaling) transform all features so far.
* ``model``: features -> class scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from kiloml.data.recording import Recording
from kiloml.decision.layer import DecisionParams
from kiloml.dsp.filters import Butterworth, Decimate, PreEmphasis
from kiloml.dsp.mfcc import Mfcc
from kiloml.dsp.scaling import Scale
from kiloml.dsp.spectral import Spectral
from kiloml.dsp.statistics import Statistics
from kiloml.errors import KilomlError
from kiloml.models.trees import TreeModel
from kiloml.monitor.config import MonitorParams

if TYPE_CHECKING:
    from kiloml.models.neural import NeuralModel
from kiloml.project import LoadedProject, RecordingRule, locate
from kiloml.stage import FeatureStage, SampleStage

F32 = np.float32


def _located(project: LoadedProject | None, section: str, exc: KilomlError) -> KilomlError:
    """Attach the project file and the line of the offending key to a stage's error."""
    if project is None:
        return exc
    key = exc.where.split()[-1] if exc.where else None
    exc.file = str(project.path)
    exc.line = locate(project, (section,), key)
    return exc


def make_preprocess_stages(project: LoadedProject, rate_hz: float) -> list[SampleStage]:
    stages: list[SampleStage] = []
    for i, cfg in enumerate(project.config.preprocess):
        where = f"[preprocess.{i}]"
        try:
            if cfg.stage == "filter":
                stages.append(Butterworth(cfg.type, cfg.cutoff_hz, cfg.order, rate_hz,
                                          f"{where} cutoff_hz"))
            elif cfg.stage == "pre_emphasis":
                stages.append(PreEmphasis(cfg.coefficient))
            else:
                stages.append(Decimate(cfg.factor, rate_hz, f"{where} factor"))
        except KilomlError as exc:
            raise _located(project, f"preprocess.{i}", exc) from None
        rate_hz /= stages[-1].decimation
    return stages


def make_feature_stages(project: LoadedProject | None, rate_hz: float, window_rows: int,
                        channels: list[str], configs: list | None = None
                        ) -> list[FeatureStage]:
    stages: list[FeatureStage] = []
    configs = configs if configs is not None else project.config.features
    for i, cfg in enumerate(configs):
        where = f"[features.{i}]"
        try:
            if cfg.stage == "statistics":
                stages.append(Statistics(list(cfg.statistics)))
            elif cfg.stage == "spectral":
                stages.append(Spectral(cfg, rate_hz, window_rows, channels, where))
            elif cfg.stage in ("mfcc", "mfe"):
                stages.append(Mfcc(cfg, rate_hz, window_rows, channels, where))
            else:
                stages.append(Scale(cfg.method))
        except KilomlError as exc:
            raise _located(project, f"features.{i}", exc) from None
    if stages and stages[0].reads != "window":
        raise KilomlError("the first feature stage must make features from the window "
                          "(statistics, spectral, mfcc or mfe), not transform them",
                          file=project.path if project else None, where="[features.0]")
    return stages


@dataclass
class Pipeline:
    name: str
    channels: list[str]
    sample_rate_hz: float  # of the windows (after preprocessing)
    window_samples: int
    stride_samples: int
    class_names: list[str]
    features: list[FeatureStage]
    model: TreeModel | NeuralModel
    preprocess: list[SampleStage] = field(default_factory=list)
    input_sample_rate_hz: float | None = None  # of the samples the firmware is fed
    decision: DecisionParams | None = None  # the decision layer (None: pass-through)
    # [window] mode = "recording": how kml_classify_recording fits a recording to the
    # window (None: windows cut from a stream)
    recording: RecordingRule | None = None
    # [library] prefix: the generated library's names (kiloml.codegen.prefix)
    library_prefix: str = "kml"
    # [library] updatable / update_key: the forest's parameters can be replaced by a blob
    # (kiloml.blob); the 32-byte Ed25519 public key blobs must be signed with (None: any)
    library_updatable: bool = False
    library_update_key: bytes | None = None
    # [monitor]: the on-device monitor after the decision layer (None: no monitor), and
    # the windows between its telemetry records in verification
    monitor: MonitorParams | None = None
    monitor_snapshot_every: int = 64

    @property
    def decision_params(self) -> DecisionParams:
        return self.decision or DecisionParams.passthrough(self.n_classes)

    def device_scores(self, features: np.ndarray) -> np.ndarray:
        """float32 [N, K]: the scores the C library computes for these features, exactly."""
        if hasattr(self.model, "device_scores"):
            return self.model.device_scores(features)
        return np.asarray(self.model.predict_proba(features), dtype=F32)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def decimation(self) -> int:
        d = 1
        for stage in self.preprocess:
            d *= stage.decimation
        return d

    @property
    def input_rate_hz(self) -> float:
        return self.input_sample_rate_hz or self.sample_rate_hz

    # --- preprocessing ----------------------------------------------------------

    def preprocess_recordings(self, recordings: list[Recording]) -> list[Recording]:
        """Every preprocess stage over whole recordings, each from a zero state."""
        if not self.preprocess:
            return recordings
        out: list[Recording] = []
        # recordings of equal length run together (vectorised over recordings)
        by_length: dict[int, list[int]] = {}
        for i, r in enumerate(recordings):
            by_length.setdefault(r.n_samples, []).append(i)
        processed: dict[int, np.ndarray] = {}
        for _, idx in sorted(by_length.items()):
            x = np.stack([recordings[i].samples for i in idx]).astype(F32)
            for stage in self.preprocess:
                x = stage.process(x)
            for j, i in enumerate(idx):
                processed[i] = x[j]
        d = self.decimation
        for i, r in enumerate(recordings):
            out.append(Recording(
                samples=processed[i], sample_rate_hz=r.sample_rate_hz / d,
                channels=list(r.channels), group=r.group, source=r.source, label=r.label,
                sample_labels=None if r.sample_labels is None else r.sample_labels[::d],
                augmented=r.augmented))
        return out

    # --- features -----------------------------------------------------------------

    def feature_names(self) -> list[str]:
        names: list[str] = []
        for stage in self.features:
            if stage.reads == "window":
                names += stage.feature_names(list(self.channels))
            else:
                names = stage.feature_names(names)
        return names

    def feature_slices(self) -> list[tuple[str, int, int]]:
        """(stage kind, first, end) of the features each window stage makes."""
        out, start = [], 0
        for stage in self.features:
            if stage.reads == "window":
                n = len(stage.feature_names(list(self.channels)))
                out.append((stage.kind, start, start + n))
                start += n
        return out

    def window_features(self, x: np.ndarray) -> list[np.ndarray]:
        """The output of each window stage for windows x [N, T, C]. IEEE float32 as in C:
        an overflow gives inf silently (callers check features are finite and say where)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return [stage.transform(x) for stage in self.features if stage.reads == "window"]

    def assemble(self, parts: list[np.ndarray], fit_rows: np.ndarray | None = None,
                 y: np.ndarray | None = None) -> np.ndarray:
        """Window-stage outputs -> features, through the vector stages; with fit_rows the
        vector stages are fitted on those rows first."""
        out = np.zeros((len(parts[0]) if parts else 0, 0), dtype=F32)
        it = iter(parts)
        for stage in self.features:
            if stage.reads == "window":
                out = np.concatenate([out, next(it)], axis=1)
            else:
                if fit_rows is not None:
                    stage.fit(out[fit_rows], None if y is None else y[fit_rows])
                with np.errstate(over="ignore", invalid="ignore"):  # IEEE, as the C
                    out = stage.transform(out)
        return out.astype(F32, copy=False)

    def compute_features(self, x: np.ndarray) -> np.ndarray:
        return self.assemble(self.window_features(x))

    def compute_features_batched(self, x: np.ndarray, batch: int = 2048) -> np.ndarray:
        """compute_features over many windows, a batch at a time (bounded memory)."""
        parts = [self.compute_features(x[a:a + batch]) for a in range(0, len(x), batch)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.feature_names())),
                                                            dtype=F32)

    @property
    def model_reads_window(self) -> bool:
        # networks reading the window get it through a RawWindow feature stage
        return getattr(self.model, "reads", "features") == "window" and not self.features

    def model_input(self, x: np.ndarray) -> np.ndarray:
        """What the model reads for windows x [N, T, C]: the raw window or the features."""
        if self.model_reads_window:
            return np.asarray(x, dtype=F32)
        return self.compute_features(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(self.model_input(x))
