"""The decision layer's parameters and its Python twin of kml_decision.c.

Per window, from the model's float32 scores and arg-max label:
1. smoothing: the mean of the last K score vectors ("average", summed oldest first in
   float32, then divided by the count held), or the vote fractions of the last K labels
   ("majority"); fewer than K while the history fills;
2. candidate: the first arg-max of the smoothed scores, or UNCERTAIN when its score is
   below its class threshold or ``min_score``, or its lead over the second is below
   ``min_margin``;
3. hysteresis: the decision switches to a new candidate after ``on_windows``
   consecutive windows of it (``off_windows`` for UNCERTAIN); ``changed`` marks the
   window where it switched.
Every operation is float32 in the order of the C code, so the twin is bit-exact with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

F32 = np.float32
UNCERTAIN = -1
SMOOTHING = {"none": 0, "average": 1, "majority": 2}


@dataclass
class DecisionParams:
    n_classes: int
    thresholds: np.ndarray  # float32 [K]: per-class minimum smoothed score (0 = none)
    min_score: float = 0.0
    min_margin: float = 0.0
    smoothing: str = "none"
    smoothing_windows: int = 1
    on_windows: int = 1
    off_windows: int = 1
    calibration: dict = field(default_factory=dict)  # how the thresholds were chosen

    def __post_init__(self) -> None:
        self.thresholds = np.asarray(self.thresholds, dtype=F32).reshape(self.n_classes)
        if self.smoothing == "none":
            self.smoothing_windows = 1

    @classmethod
    def passthrough(cls, n_classes: int) -> DecisionParams:
        """The model's arg-max, window by window (no thresholds, smoothing or hysteresis)."""
        return cls(n_classes, np.zeros(n_classes, F32))

    def describe(self) -> dict:
        return {"thresholds": [float(t) for t in self.thresholds],
                "min_score": self.min_score, "min_margin": self.min_margin,
                "smoothing": self.smoothing, "smoothing_windows": self.smoothing_windows,
                "on_windows": self.on_windows, "off_windows": self.off_windows,
                "calibration": self.calibration}


@dataclass
class DecisionSteps:
    """The layer's outputs for a sequence of windows."""

    smoothed: np.ndarray   # float32 [N, K]
    candidate: np.ndarray  # int64 [N]: class or UNCERTAIN
    decision: np.ndarray   # int64 [N]: the debounced state
    changed: np.ndarray    # int64 [N]: 1 where the decision switched


class DecisionLayer:
    """Stateful twin of the C decision layer (reset at the start of every stream)."""

    def __init__(self, params: DecisionParams) -> None:
        self.p = params
        self.reset()

    def reset(self) -> None:
        k, c = self.p.smoothing_windows, self.p.n_classes
        self.history = np.zeros((k, c), dtype=F32)
        self.votes = np.zeros(k, dtype=np.int64)
        self.next = 0
        self.count = 0
        self.state = UNCERTAIN
        self.pending = UNCERTAIN
        self.pending_count = 0

    def _smooth(self, scores: np.ndarray, label: int) -> np.ndarray:
        p, k = self.p, self.p.smoothing_windows
        if p.smoothing == "none":
            return scores.astype(F32, copy=True)
        self.history[self.next] = scores
        self.votes[self.next] = label
        self.next = (self.next + 1) % k
        self.count = min(self.count + 1, k)
        oldest = (self.next - self.count) % k
        order = [(oldest + j) % k for j in range(self.count)]
        n = F32(self.count)
        out = np.zeros(p.n_classes, dtype=F32)
        if p.smoothing == "average":
            for c in range(p.n_classes):
                acc = F32(0.0)
                for j in order:
                    acc = F32(acc + self.history[j, c])
                out[c] = F32(acc / n)
        else:
            counts = np.bincount(self.votes[order], minlength=p.n_classes)
            out[:] = counts.astype(F32) / n
        return out

    def step(self, scores: np.ndarray, label: int) -> tuple[np.ndarray, int, int, int]:
        p = self.p
        if label < 0:
            # the model refused the window (a linear model's answer to a NaN feature): no
            # evidence, kept out of the smoothing history, an uncertain candidate
            return self._hysteresis(np.asarray(scores, dtype=F32).copy(), UNCERTAIN)
        sm = self._smooth(np.asarray(scores, dtype=F32), int(label))
        # the C loops: the first maximum, and the largest other score; a NaN score never
        # wins a comparison, so it is passed over (np.argmax and max would pick it)
        best = 0
        for c in range(1, p.n_classes):
            if sm[c] > sm[best]:
                best = c
        second = F32(-np.inf)
        for c in range(p.n_classes):
            if c != best and sm[c] > second:
                second = sm[c]
        top = sm[best]
        candidate = best
        if (top < p.thresholds[best] or top < F32(p.min_score)
                or F32(top - second) < F32(p.min_margin)):
            candidate = UNCERTAIN
        return self._hysteresis(sm, candidate)

    def _hysteresis(self, sm: np.ndarray, candidate: int) -> tuple[np.ndarray, int, int, int]:
        p = self.p
        changed = 0
        if candidate == self.state:
            self.pending, self.pending_count = self.state, 0
        else:
            if candidate == self.pending:
                self.pending_count += 1
            else:
                self.pending, self.pending_count = candidate, 1
            need = p.off_windows if candidate == UNCERTAIN else p.on_windows
            if self.pending_count >= need:
                self.state, changed, self.pending_count = candidate, 1, 0
        return sm, candidate, self.state, changed

    def run(self, scores: np.ndarray, labels: np.ndarray) -> DecisionSteps:
        """Reset, then step through a stream's windows in order."""
        self.reset()
        n, k = len(scores), self.p.n_classes
        out = DecisionSteps(np.zeros((n, k), F32), np.zeros(n, np.int64),
                            np.zeros(n, np.int64), np.zeros(n, np.int64))
        for i in range(n):
            sm, cand, dec, ch = self.step(scores[i], int(labels[i]))
            out.smoothed[i], out.candidate[i], out.decision[i], out.changed[i] = sm, cand, dec, ch
        return out
