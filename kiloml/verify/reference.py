"""What the Python reference decided on the held-out data: the yardstick for every C run.

Saved with the run (``verify/reference.npz``) so ``kiloml verify`` can check the
same library on another target later without recomputing anything.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.data.recording import Recording
from kiloml.data.windows import window_starts
from kiloml.decision.layer import DecisionLayer
from kiloml.pipeline import Pipeline
from kiloml.verify.parity import expected_stream

REFERENCE_FILE = "reference.npz"


@dataclass
class Reference:
    windows: np.ndarray  # float32 [N, T, C]: every held-out window
    labels: np.ndarray  # int64 [N]: the Python decisions
    scores: np.ndarray  # float64 [N, K]
    features: np.ndarray  # float32 [N, F]
    stream_samples: np.ndarray  # float32 [S, C]: held-out recordings, end to end
    stream_lengths: np.ndarray  # int64 [R]
    stream_recording: np.ndarray  # int64 [M]: expected windows of the streaming API
    stream_last_sample: np.ndarray  # int64 [M]
    stream_labels: np.ndarray  # int64 [M]
    stream_scores: np.ndarray  # float64 [M, K]
    # the decision layer's twin on the device's float32 scores, reset per recording
    # (None in references saved before the decision layer existed)
    stream_device_scores: np.ndarray | None = None  # float32 [M, K]
    stream_decision: np.ndarray | None = None  # int64 [M]
    stream_changed: np.ndarray | None = None  # int64 [M]
    stream_candidate: np.ndarray | None = None  # int64 [M]
    stream_smoothed: np.ndarray | None = None  # float32 [M, K]

    @property
    def stream_recordings(self) -> list[np.ndarray]:
        bounds = np.concatenate([[0], np.cumsum(self.stream_lengths)])
        return [self.stream_samples[a:b] for a, b in itertools.pairwise(bounds)]

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **{k: getattr(self, k) for k in self.__dataclass_fields__
                                     if getattr(self, k) is not None})

    @classmethod
    def load(cls, path: Path) -> Reference:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @classmethod
    def build(cls, pipeline: Pipeline, windows: np.ndarray, features: np.ndarray,
              labels: np.ndarray, scores: np.ndarray, raw: list[Recording],
              processed: list[Recording]) -> Reference:
        """``raw`` recordings are what the firmware is fed sample by sample; ``processed``
        are the same after preprocessing, whose windows the Python side decided on."""
        lengths = [r.n_samples for r in processed]
        rec, _, last = expected_stream(lengths, pipeline.window_samples, pipeline.stride_samples)
        last = last * pipeline.decimation  # the raw sample that completes each window
        stream_labels, stream_scores, device, steps = [], [], [], []
        layer = DecisionLayer(pipeline.decision_params)
        for r in processed:
            starts = window_starts(r.n_samples, pipeline.window_samples, pipeline.stride_samples)
            view = np.lib.stride_tricks.sliding_window_view(r.samples, pipeline.window_samples,
                                                            axis=0)
            f = pipeline.compute_features(np.ascontiguousarray(view[starts].transpose(0, 2, 1)))
            stream_labels.append(pipeline.model.predict(f))
            stream_scores.append(pipeline.model.predict_proba(f))
            device.append(pipeline.device_scores(f))
            steps.append(layer.run(device[-1], stream_labels[-1]))  # kml_reset per recording
        k = pipeline.n_classes

        def cat(arrays: list[np.ndarray], dtype, width: int = 0) -> np.ndarray:
            return (np.concatenate(arrays).astype(dtype) if arrays else
                    np.zeros((0, width) if width else 0, dtype))
        return cls(
            windows=np.ascontiguousarray(windows, dtype=np.float32),
            labels=np.asarray(labels, dtype=np.int64),
            scores=np.asarray(scores, dtype=np.float64),
            features=np.asarray(features, dtype=np.float32),
            stream_samples=(np.concatenate([r.samples for r in raw]) if raw
                            else np.zeros((0, pipeline.n_channels), np.float32)),
            stream_lengths=np.asarray([r.n_samples for r in raw], dtype=np.int64),
            stream_recording=rec,
            stream_last_sample=last,
            stream_labels=(np.concatenate(stream_labels).astype(np.int64) if stream_labels
                           else np.zeros(0, np.int64)),
            stream_scores=(np.concatenate(stream_scores) if stream_scores
                           else np.zeros((0, k))),
            stream_device_scores=cat(device, np.float32, k),
            stream_decision=cat([d.decision for d in steps], np.int64),
            stream_changed=cat([d.changed for d in steps], np.int64),
            stream_candidate=cat([d.candidate for d in steps], np.int64),
            stream_smoothed=cat([d.smoothed for d in steps], np.float32, k),
        )
