"""The behaviour diff: what changes on the devices when package B replaces package A.

Both C libraries (the packages' firmware/, as released) are compiled on the host and fed
the same recordings sample by sample (kiloml.registry.streams); their decision layers'
decisions are aligned by time (kiloml.registry.alignment) and compared: the transition
matrix (A's decision -> B's, uncertain included), the changed segments, the events gained
and lost, the changes per class, group and recording, and the confidence shift."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError
from kiloml.progress import track
from kiloml.registry.alignment import UNCERTAIN_NAME, Aligned, align, decision_names, label_index
from kiloml.registry.contents import Package
from kiloml.registry.recordings import Streams
from kiloml.registry.streams import Decisions, stream_decisions

DIFF_FORMAT = 1


@dataclass
class BehaviourDiff:
    a: Package
    b: Package
    streams: Streams
    decisions_a: Decisions
    decisions_b: Decisions
    aligned: Aligned
    summary: dict  # diff.json

    @property
    def changed_fraction(self) -> float:
        return float(self.summary["changed_fraction"])


def comparable(a: Package, b: Package) -> str | None:
    """Why the two libraries cannot read the same samples (None: they can). Windows,
    strides and classes may differ; the channels and the input rate may not."""
    pa, pb = a.pipeline, b.pipeline
    if list(pa.channels) != list(pb.channels):
        return (f"{a.label} reads channels {', '.join(pa.channels)} and {b.label} reads "
                f"{', '.join(pb.channels)}")
    if float(pa.input_rate_hz) != float(pb.input_rate_hz):
        return (f"{a.label} reads {pa.input_rate_hz:g} Hz samples and {b.label} "
                f"{pb.input_rate_hz:g} Hz")
    return None


def check_comparable(a: Package, b: Package) -> None:
    why = comparable(a, b)
    if why is not None:
        raise KilomlError(f"{a.label} and {b.label} have different interfaces and cannot be "
                          f"fed the same samples: {why}")


def behaviour_diff(a: Package, b: Package, streams: Streams) -> BehaviourDiff:
    """B's decisions against A's on ``streams`` (raw samples at the libraries' rate)."""
    check_comparable(a, b)
    decided: list[Decisions] = []
    with tempfile.TemporaryDirectory(prefix="kiloml-diff-") as tmp:
        for i, package in enumerate(track([a, b], "streaming both libraries")):
            decided.append(stream_decisions(package, streams.samples, Path(tmp) / "ab"[i]))
    da, db = decided
    aligned = align(da, db, len(streams.samples))
    if not len(aligned):
        longest = max(streams.lengths, default=0) / streams.rate_hz
        raise KilomlError(f"no decisions to compare: none of {streams.source} "
                          f"({len(streams.samples)}, the longest {longest:g} s) holds a window "
                          f"of both libraries ({a.label}: {_window_s(a):g} s, {b.label}: "
                          f"{_window_s(b):g} s)")
    return BehaviourDiff(a, b, streams, da, db, aligned, summarize(a, b, streams, da, db,
                                                                   aligned))


def _window_s(package: Package) -> float:
    p = package.pipeline
    return p.window_samples * p.decimation / p.input_rate_hz


def summarize(a: Package, b: Package, streams: Streams, da: Decisions, db: Decisions,
              aligned: Aligned) -> dict:
    names_a, names_b = decision_names(da.class_names), decision_names(db.class_names)
    n, changed = len(aligned), int(aligned.changed.sum())
    counts = np.zeros((len(names_a), len(names_b)), dtype=np.int64)
    np.add.at(counts, (aligned.a, aligned.b), 1)
    events_a = decision_events(da, streams)
    events_b = decision_events(db, streams)
    lost, gained = unmatched(events_a, events_b), unmatched(events_b, events_a)
    return {
        "format": DIFF_FORMAT,
        "a": _describe(a, da), "b": _describe(b, db),
        "recordings": {"source": streams.source, "n": len(streams.samples),
                       "names": streams.names, "groups": streams.groups,
                       "seconds": round(streams.seconds, 3), "rate_hz": streams.rate_hz},
        "alignment": ("by time: a decision holds until its library's next one; compared at "
                      "every sample where either library decides, once both have decided "
                      "in that recording"),
        "n_windows": n, "changed_windows": changed,
        "changed_fraction": changed / n if n else 0.0,
        "unaligned_windows": aligned.unaligned,
        "transitions": {"a": names_a, "b": names_b, "counts": counts.tolist()},
        "segments": changed_segments(aligned, streams, names_a, names_b),
        "events": {"a": len(events_a), "b": len(events_b), "lost": lost, "gained": gained,
                   "n_lost": len(lost), "n_gained": len(gained),
                   "per_class": _events_per_class(names_a, names_b, lost, gained),
                   "note": "an event is a run of one decision class (not uncertain); one "
                           "is lost when B has no event of its class overlapping it in "
                           "time, gained when A has none overlapping B's"},
        "per_class": _per_class(aligned, names_a, names_b),
        "per_group": _per_key(aligned, np.array(streams.groups, dtype=object), "group"),
        "per_recording": _per_recording(aligned, streams),
        "confidence": _confidence(aligned, names_a, names_b),
    }


def _describe(package: Package, d: Decisions) -> dict:
    p = package.pipeline
    return {"label": package.label, "model_id": package.model_id,
            "interface_hash": package.interface_hash, "classes": list(p.class_names),
            "window_samples": int(p.window_samples), "stride_samples": int(p.stride_samples),
            "window_rate_hz": float(p.sample_rate_hz), "input_rate_hz": float(p.input_rate_hz),
            "decisions": len(d.decision)}


def _end_times(samples: np.ndarray, n_samples: int, rate: float) -> np.ndarray:
    """Each instant holds until the next one, the last until the recording ends."""
    return np.append(samples[1:] + 1, n_samples) / rate


def changed_segments(aligned: Aligned, streams: Streams, names_a: list[str],
                     names_b: list[str]) -> list[dict]:
    """Runs of compared instants with the same pair of different decisions."""
    out: list[dict] = []
    rate = streams.rate_hz
    for r, n_samples in enumerate(streams.lengths):
        idx = np.flatnonzero(aligned.recording == r)
        if not idx.size:
            continue
        t = aligned.sample[idx]
        start, end = (t + 1) / rate, _end_times(t, n_samples, rate)
        ch, a, b = aligned.changed[idx], aligned.a[idx], aligned.b[idx]
        i = 0
        while i < len(idx):
            if not ch[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(idx) and ch[j + 1] and a[j + 1] == a[i] and b[j + 1] == b[i]:
                j += 1
            out.append({"recording": streams.names[r], "recording_index": r,
                        "group": streams.groups[r], "start_s": round(float(start[i]), 4),
                        "end_s": round(float(end[j]), 4), "a": names_a[a[i]],
                        "b": names_b[b[i]], "windows": j - i + 1})
            i = j + 1
    return out


def decision_events(d: Decisions, streams: Streams) -> list[dict]:
    """A library's events on its own decisions: runs of one class (not uncertain)."""
    names = decision_names(d.class_names)
    labels = label_index(d.decision, len(d.class_names))
    rate, out = streams.rate_hz, []
    for r, n_samples in enumerate(streams.lengths):
        idx = np.flatnonzero(d.recording == r)
        if not idx.size:
            continue
        t, lab = d.sample[idx], labels[idx]
        end = _end_times(t, n_samples, rate)
        bounds = np.flatnonzero(np.diff(lab)) + 1
        for i, j in zip(np.r_[0, bounds], np.r_[bounds, len(lab)], strict=True):
            if names[lab[i]] == UNCERTAIN_NAME:
                continue
            out.append({"recording": streams.names[r], "recording_index": r,
                        "class": names[lab[i]], "start_s": round(float((t[i] + 1) / rate), 4),
                        "end_s": round(float(end[j - 1]), 4)})
    return out


def unmatched(events: list[dict], others: list[dict]) -> list[dict]:
    """The events no event of the other library's of the same class and recording overlaps
    in time (one library's events of one class are disjoint and in time order)."""
    index: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for o in others:
        index.setdefault((o["recording_index"], o["class"]), []).append((o["start_s"],
                                                                         o["end_s"]))
    spans = {k: np.array(v, dtype=float).reshape(-1, 2) for k, v in index.items()}
    out = []
    for e in events:
        span = spans.get((e["recording_index"], e["class"]))
        if span is not None:
            j = int(np.searchsorted(span[:, 0], e["end_s"], side="left")) - 1
            if j >= 0 and span[j, 1] > e["start_s"]:
                continue
        out.append(e)
    return out


def _events_per_class(names_a: list[str], names_b: list[str], lost: list[dict],
                      gained: list[dict]) -> dict:
    return {name: {"lost": sum(e["class"] == name for e in lost),
                   "gained": sum(e["class"] == name for e in gained)}
            for name in _union(names_a, names_b) if name != UNCERTAIN_NAME}


def _union(names_a: list[str], names_b: list[str]) -> list[str]:
    classes = [x for x in names_a if x != UNCERTAIN_NAME]
    classes += [x for x in names_b if x != UNCERTAIN_NAME and x not in classes]
    return [*classes, UNCERTAIN_NAME]


def _per_class(aligned: Aligned, names_a: list[str], names_b: list[str]) -> dict:
    a = np.array(names_a, dtype=object)[aligned.a] if len(aligned) else np.zeros(0, object)
    b = np.array(names_b, dtype=object)[aligned.b] if len(aligned) else np.zeros(0, object)
    out = {}
    for name in _union(names_a, names_b):
        in_a, in_b = a == name, b == name
        n_a, c_from = int(in_a.sum()), int((in_a & aligned.changed).sum())
        out[name] = {"windows_a": n_a, "windows_b": int(in_b.sum()), "changed_from": c_from,
                     "changed_to": int((in_b & aligned.changed).sum()),
                     "changed_fraction": c_from / n_a if n_a else 0.0}
    return out


def _per_key(aligned: Aligned, key_of_recording: np.ndarray, what: str) -> dict:
    keys = key_of_recording[aligned.recording] if len(aligned) else np.zeros(0, object)
    out = {}
    for key in dict.fromkeys(key_of_recording.tolist()):
        rows = keys == key
        n, c = int(rows.sum()), int((rows & aligned.changed).sum())
        out[str(key)] = {"windows": n, "changed": c, "changed_fraction": c / n if n else 0.0}
    return out


def _per_recording(aligned: Aligned, streams: Streams) -> list[dict]:
    out = []
    for r, name in enumerate(streams.names):
        rows = aligned.recording == r
        n, c = int(rows.sum()), int((rows & aligned.changed).sum())
        out.append({"recording": name, "group": streams.groups[r],
                    "seconds": round(streams.lengths[r] / streams.rate_hz, 3),
                    "windows": n, "changed": c, "changed_fraction": c / n if n else 0.0})
    return out


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _confidence(aligned: Aligned, names_a: list[str], names_b: list[str]) -> dict:
    """The mean top smoothed score of each library where it decides each class."""
    a = np.array(names_a, dtype=object)[aligned.a] if len(aligned) else np.zeros(0, object)
    b = np.array(names_b, dtype=object)[aligned.b] if len(aligned) else np.zeros(0, object)
    per_class = {}
    for name in _union(names_a, names_b):
        ma, mb = _mean(aligned.a_score[a == name]), _mean(aligned.b_score[b == name])
        per_class[name] = {"a": ma, "b": mb,
                           "shift": None if ma is None or mb is None else mb - ma}
    ma, mb = _mean(aligned.a_score), _mean(aligned.b_score)
    return {"a": ma, "b": mb, "shift": None if ma is None or mb is None else mb - ma,
            "per_class": per_class,
            "note": "mean top smoothed score (kml_decide_latest's smoothed scores) at the "
                    "compared instants where the library decides the class"}
