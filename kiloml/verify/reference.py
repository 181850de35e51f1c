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

RECORD_BYTES = 48  # kml_telemetry_v1 (kiloml.monitor.snapshot.RECORD_BYTES)

REFERENCE_FILE = "reference.npz"
I64, F32, F64, U8 = "int64", "float32", "float64", "uint8"
# field: (dtype, shape in symbols): N windows, T window samples, C channels, K classes,
# F features, S stream samples, R recordings, M streamed windows; mode = "recording":
# Q samples of the recordings given to kml_classify_recording, P such recordings
LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "windows": (F32, ("N", "T", "C")), "labels": (I64, ("N",)), "scores": (F64, ("N", "K")),
    "features": (F32, ("N", "F")), "stream_samples": (F32, ("S", "C")),
    "stream_lengths": (I64, ("R",)), "stream_recording": (I64, ("M",)),
    "stream_last_sample": (I64, ("M",)), "stream_labels": (I64, ("M",)),
    "stream_scores": (F64, ("M", "K")), "stream_device_scores": (F32, ("M", "K")),
    "stream_decision": (I64, ("M",)), "stream_changed": (I64, ("M",)),
    "stream_candidate": (I64, ("M",)), "stream_smoothed": (F32, ("M", "K")),
    # with a [monitor]: its flags after each streamed window, and the 48-byte telemetry
    # record written at every snapshot_every-th window of a recording (zeros elsewhere)
    "stream_monitor_flags": (I64, ("M",)), "stream_monitor_records": (U8, ("M", "B")),
    "recording_samples": (F32, ("Q", "C")), "recording_lengths": (I64, ("P",)),
    "recording_labels": (I64, ("P",)), "recording_scores": (F32, ("P", "K")),
    "recording_probe": (I64, ("P",)),
}
RECORDING_FIELDS = ("recording_samples", "recording_lengths", "recording_labels",
                    "recording_scores", "recording_probe")


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
    # the monitor's twin (kiloml.monitor.Monitor) after the decision layer, restarted per
    # recording like the C's kml_monitor_restart (None without a [monitor])
    stream_monitor_flags: np.ndarray | None = None  # int64 [M]
    stream_monitor_records: np.ndarray | None = None  # uint8 [M, 48]
    # mode = "recording": what kml_classify_recording must return for every held-out
    # recording (raw samples, probe 0) and for boundary-length probes made from one of
    # them (probe 1: 0 and 1 samples, one sample short of the window, exactly it, one to
    # three samples over); labels -1 where the C must refuse, scores the device's float32
    # (zeros where refused). None in windowed runs.
    recording_samples: np.ndarray | None = None  # float32 [Q, C]
    recording_lengths: np.ndarray | None = None  # int64 [P]
    recording_labels: np.ndarray | None = None  # int64 [P]
    recording_scores: np.ndarray | None = None  # float32 [P, K]
    recording_probe: np.ndarray | None = None  # int64 [P]

    @property
    def stream_recordings(self) -> list[np.ndarray]:
        bounds = np.concatenate([[0], np.cumsum(self.stream_lengths)])
        return [self.stream_samples[a:b] for a, b in itertools.pairwise(bounds)]

    @property
    def whole_recordings(self) -> list[np.ndarray]:
        """The recordings kml_classify_recording is given (empty in windowed runs)."""
        if self.recording_lengths is None or self.recording_samples is None:
            return []
        bounds = np.concatenate([[0], np.cumsum(self.recording_lengths)])
        return [self.recording_samples[a:b] for a, b in itertools.pairwise(bounds)]

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
        _check_recordings(data, path, sizes.get("K"))
        if pipeline is not None and (pipeline.recording is None) == ("recording_labels" in data):
            missing = pipeline.recording is not None
            raise KilomlError("the whole-recording arrays (recording_*) are " + (
                "missing, and the pipeline classifies whole recordings" if missing else
                "there, and the pipeline cuts windows"), file=path,
                where="recording_labels")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @classmethod
    def build(cls, pipeline: Pipeline, windows: np.ndarray, features: np.ndarray,
              labels: np.ndarray, scores: np.ndarray, raw: list[Recording],
              processed: list[Recording], *,
              whole: list[Recording] | None = None,
              model_id: bytes | None = None) -> Reference:
        """``raw`` recordings are what the firmware is fed sample by sample; ``processed``
        are the same after preprocessing, whose windows the Python side decided on.
        ``whole``: every held-out recording as read (mode = "recording": what
        kml_classify_recording is checked on, with boundary-length probes). ``model_id``:
        the library's 8 bytes (the telemetry records of a monitor hold them)."""
        extra = {} if pipeline.recording is None or whole is None else \
            whole_recording_reference(pipeline, whole)
        return dataclasses.replace(cls._build(pipeline, windows, features, labels, scores,
                                              raw, processed, model_id), **extra)

    @classmethod
    def _build(cls, pipeline: Pipeline, windows: np.ndarray, features: np.ndarray,
               labels: np.ndarray, scores: np.ndarray, raw: list[Recording],
               processed: list[Recording], model_id: bytes | None = None) -> Reference:
        lengths = [r.n_samples for r in processed]
        rec, _, last = expected_stream(lengths, pipeline.window_samples, pipeline.stride_samples)
        last = last * pipeline.decimation  # the raw sample that completes each window
        stream_labels, stream_scores, device, steps, monitor = [], [], [], [], []
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
            if pipeline.monitor is not None:
                monitor.append(monitor_stream(pipeline, view[starts].transpose(0, 2, 1), f,
                                              steps[-1], model_id or bytes(8)))
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
            # float64 whatever the model gives (a network's probabilities are float32)
            stream_scores=cat(stream_scores, np.float64, k),
            stream_device_scores=cat(device, np.float32, k),
            stream_decision=cat([d.decision for d in steps], np.int64),
            stream_changed=cat([d.changed for d in steps], np.int64),
            stream_candidate=cat([d.candidate for d in steps], np.int64),
            stream_smoothed=cat([d.smoothed for d in steps], np.float32, k),
            **({} if pipeline.monitor is None else {
                "stream_monitor_flags": cat([m[0] for m in monitor], np.int64),
                "stream_monitor_records": cat([m[1] for m in monitor], np.uint8, RECORD_BYTES)}),
        )


def monitor_stream(pipeline: Pipeline, windows: np.ndarray, features: np.ndarray, steps,
                   model_id: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The monitor's twin on one recording's windows after the decision layer: its flags
    per window and the records at every snapshot_every-th window (uptime_s: the window's
    number), as the harnesses' kml_monitor_restart, kml_monitor_flags, kml_monitor_snapshot."""
    from kiloml.monitor.inputs import monitor_inputs
    from kiloml.monitor.twin import Monitor

    assert pipeline.monitor is not None
    every = pipeline.monitor_snapshot_every
    mon = Monitor(pipeline.monitor)
    n = len(features)
    # what kml_mo_step passes: the features or the window's channel moments, the channel
    # variances, a network's energy score
    inputs = monitor_inputs(pipeline, windows, features)
    energy = inputs.energy
    flags = np.zeros(n, np.int64)
    records = np.zeros((n, RECORD_BYTES), np.uint8)
    for i in range(n):
        flags[i] = mon.update(inputs.watched[i], inputs.channel_variance[i], steps.smoothed[i],
                              int(steps.decision[i]), bool(steps.candidate[i] == -1),
                              None if energy is None else energy[i])
        if (i + 1) % every == 0:
            records[i] = np.frombuffer(mon.snapshot(model_id, i + 1), np.uint8)
    return flags, records


def _check_recordings(data: dict, path: Path, n_classes: int | None) -> None:
    """The whole-recording arrays: all or none, lengths adding up, labels of a class or -1."""
    present = [k for k in RECORDING_FIELDS if k in data]
    if not present:
        return
    if len(present) != len(RECORDING_FIELDS):
        missing = next(k for k in RECORDING_FIELDS if k not in data)
        raise KilomlError("missing (the other recording_* arrays are there)", file=path,
                          where=missing)
    lengths = data["recording_lengths"]
    if np.any(lengths < 0) or int(lengths.sum()) != len(data["recording_samples"]):
        raise KilomlError(f"the recordings' lengths add up to {int(lengths.sum())}, not the "
                          f"{len(data['recording_samples'])} samples", file=path,
                          where="recording_lengths")
    labels = data["recording_labels"]
    k = n_classes if n_classes is not None else data["recording_scores"].shape[1]
    if np.any((labels < -1) | (labels >= k)):
        raise KilomlError(f"a label outside -1 .. {k - 1}", file=path, where="recording_labels")
    if np.any((data["recording_probe"] != 0) & (data["recording_probe"] != 1)):
        raise KilomlError("holds values other than 0 and 1", file=path, where="recording_probe")


def probe_lengths(window_samples: int, decimation: int) -> list[int]:
    """Raw lengths at the rule's edges: no sample, one, one preprocessed sample short of the
    window, exactly the window (the shortest and the longest raw length giving it), and one,
    two and three preprocessed samples over (an odd and an even excess for "center")."""
    w, d = window_samples, decimation
    return sorted({0, 1, (w - 1) * d, (w - 1) * d + 1, w * d, w * d + 1, (w + 1) * d + 1,
                   (w + 2) * d + 1})


def whole_recording_reference(pipeline: Pipeline, held_out: list[Recording]) -> dict:
    """The recording_* fields: Python's kml_classify_recording on every held-out recording
    and on the boundary probes (made by repeating the first held-out recording)."""
    from kiloml.data.windows import fit_recording

    assert pipeline.recording is not None
    raw = [r.samples for r in held_out]
    probe = [0] * len(raw)
    if held_out:
        source = held_out[0].samples
        for n in probe_lengths(pipeline.window_samples, pipeline.decimation):
            raw.append(np.ascontiguousarray(source[np.arange(n) % len(source)]))
            probe.append(1)
    k, c = pipeline.n_classes, pipeline.n_channels
    labels = np.full(len(raw), -1, dtype=np.int64)
    scores = np.zeros((len(raw), k), dtype=np.float32)
    recs = [Recording(x, pipeline.input_rate_hz, list(pipeline.channels), "", f"#{i}",
                      label="") for i, x in enumerate(raw) if len(x)]
    processed = iter(pipeline.preprocess_recordings(recs))  # each from a zero state
    rows, windows = [], []
    for i, x in enumerate(raw):
        if not len(x):
            continue  # n_samples < 1: the C refuses
        fitted = fit_recording(next(processed).samples, pipeline.window_samples,
                               pipeline.recording)
        if fitted is not None:
            rows.append(i)
            windows.append(fitted.window)
    if rows:
        f = pipeline.compute_features_batched(np.stack(windows))
        labels[rows] = pipeline.model.predict(f)
        scores[rows] = pipeline.device_scores(f)
    return {"recording_samples": (np.concatenate(raw).astype(np.float32) if raw
                                  else np.zeros((0, c), np.float32)),
            "recording_lengths": np.array([len(x) for x in raw], dtype=np.int64),
            "recording_labels": labels, "recording_scores": scores,
            "recording_probe": np.array(probe, dtype=np.int64)}
