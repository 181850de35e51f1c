"""Two libraries' decisions on the same recordings, aligned by time.

A library decides when a sample completes one of its windows (kml_decide_latest) and its
decision holds until its next one. Two libraries with other windows or strides decide at
other samples: they are compared at every sample where either decides, once both have
decided in that recording (the instants before are counted as unaligned). With the same
window and stride the instants are the windows, each library's own decisions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiloml.decision.layer import UNCERTAIN
from kiloml.registry.streams import Decisions

UNCERTAIN_NAME = "uncertain"


def decision_names(class_names: list[str]) -> list[str]:
    """A library's decisions by index: its classes, then "uncertain" (index -1)."""
    return [*class_names, UNCERTAIN_NAME]


def label_index(decision: np.ndarray, n_classes: int) -> np.ndarray:
    """Decisions as indices into decision_names (uncertain: the last)."""
    d = np.asarray(decision, dtype=np.int64)
    return np.where(d == UNCERTAIN, n_classes, d)


@dataclass
class Aligned:
    """The compared instants of every recording, in recording then time order."""

    recording: np.ndarray  # int64 [P]
    sample: np.ndarray  # int64 [P]: the raw sample whose arrival is the instant
    a: np.ndarray  # int64 [P]: A's decision then, an index into A's decision_names
    b: np.ndarray  # int64 [P]: B's, into B's
    a_score: np.ndarray  # float32 [P]: A's top smoothed score then
    b_score: np.ndarray  # float32 [P]
    a_own: np.ndarray  # bool [P]: A decided at this instant (not a held decision)
    changed: np.ndarray  # bool [P]: the two decisions differ (by class name)
    unaligned: int  # instants before both libraries had decided

    def __len__(self) -> int:
        return len(self.sample)


def align(a: Decisions, b: Decisions, n_recordings: int) -> Aligned:
    la, lb = label_index(a.decision, len(a.class_names)), label_index(b.decision,
                                                                       len(b.class_names))
    names_a, names_b = decision_names(a.class_names), decision_names(b.class_names)
    # the same class name is the same decision, whatever its index in either library
    same = np.array([[x == y for y in names_b] for x in names_a], dtype=bool)
    parts: list[tuple[np.ndarray, ...]] = []
    unaligned = 0
    for r in range(n_recordings):
        ia, ib = np.flatnonzero(a.recording == r), np.flatnonzero(b.recording == r)
        sa, sb = a.sample[ia], b.sample[ib]
        t = np.union1d(sa, sb)
        pa = np.searchsorted(sa, t, side="right") - 1
        pb = np.searchsorted(sb, t, side="right") - 1
        keep = (pa >= 0) & (pb >= 0)
        unaligned += int((~keep).sum())
        t, pa, pb = t[keep], ia[pa[keep]], ib[pb[keep]]
        parts.append((np.full(len(t), r, np.int64), t, la[pa], lb[pb], a.top_score[pa],
                      b.top_score[pb], a.sample[pa] == t))
    cols = [np.concatenate([p[k] for p in parts]) if parts else np.zeros(0)
            for k in range(7)]
    rec, t, da, db = (c.astype(np.int64) for c in cols[:4])
    changed = ~same[da, db] if len(da) else np.zeros(0, dtype=bool)
    return Aligned(rec, t, da, db, cols[4].astype(np.float32), cols[5].astype(np.float32),
                   cols[6].astype(bool), changed, unaligned)
