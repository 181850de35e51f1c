"""What the Python reference decided on the held-out data: the yardstick for every C run.

Saved with the run (``verify/reference.npz``) so ``kiloml verify`` can check the
same library on another target later without recomputing anything. Read back without
pickle, every array's dtype and shape checked against the others and the pipeline (the
harness writes them into the C program's input files).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.data.recording import Recording
from kiloml.data.windows import window_starts
from kiloml.decision.layer import DecisionLayer
from kiloml.errors import KilomlError
from kiloml.persist.archive import read_npz
from kiloml.pipeline import Pipeline
from kiloml.verify.parity import expected_stream

REFERENCE_FILE = "reference.npz"
I64, F32, F64 = "int64", "float32", "float64"
# field: (dtype, shape in symbols): N windows, T window samples, C channels, K classes,
# F features, S stream samples, R recordings, M streamed windows
LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "windows": (F32, ("N", "T", "C")), "labels": (I64, ("N",)), "scores": (F64, ("N", "K")),
    "features": (F32, ("N", "F")), "stream_samples": (F32, ("S", "C")),
    "stream_lengths": (I64, ("R",)), "stream_recording": (I64, ("M",)),
    "stream_last_sample": (I64, ("M",)), "stream_labels": (I64, ("M",)),
    "stream_scores": (F64, ("M", "K")), "stream_device_scores": (F32, ("M", "K")),
    "stream_decision": (I64, ("M",)), "stream_changed": (I64, ("M",)),
    "stream_candidate": (I64, ("M",)), "stream_smoothed": (F32, ("M", "K")),
}


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
    def load(cls, path: Path, pipeline: Pipeline | None = None) -> Reference:
        """The saved reference, its arrays consistent with each other (and with
        ``pipeline``'s window, channels, classes and features when given)."""
        data = read_npz(Path(path))
        required = [k for k, f in cls.__dataclass_fields__.items()
                    if f.default is dataclasses.MISSING]
        sizes: dict[str, int] = {}
        if pipeline is not None:
            sizes = {"T": pipeline.window_samples, "C": pipeline.n_channels,
                     "K": pipeline.n_classes, "F": len(pipeline.feature_names())}
        for key in data:
            if key not in LAYOUT:
                raise KilomlError("not an array of a kiloml reference", file=path, where=key)
        for key, (dtype, dims) in LAYOUT.items():
            if key not in data:
                if key in required:
                    raise KilomlError("missing", file=path, where=key)
                continue
            a = data[key]
            if a.dtype != np.dtype(dtype) or a.ndim != len(dims):
                raise KilomlError(f"{a.dtype} array of {a.ndim} dimensions, expected {dtype} "
                                  f"[{', '.join(dims)}]", file=path, where=key)
            for axis, (dim, n) in enumerate(zip(dims, a.shape, strict=True)):
                if sizes.setdefault(dim, n) != n:
                    raise KilomlError(f"shape {list(a.shape)}: axis {axis} ({dim}) is {n}, "
                                      f"elsewhere {sizes[dim]}", file=path, where=key)
        lengths = data["stream_lengths"]
        if np.any(lengths < 0) or int(lengths.sum()) != len(data["stream_samples"]):
            raise KilomlError(f"the recordings' lengths add up to {int(lengths.sum())}, not "
                              f"the {len(data['stream_samples'])} samples",
                              file=path, where="stream_lengths")
        recording = data["stream_recording"]
        if np.any((recording < 0) | (recording >= len(lengths))):
            raise KilomlError("a streamed window names a recording that is not there",
                              file=path, where="stream_recording")
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
