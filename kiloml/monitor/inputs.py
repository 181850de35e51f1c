"""What the monitor is given per window, computed as the device computes it: the vector
its watched inputs come from (the feature vector, or for a model of the raw window the
window's channel means and variances), the channel variances (stuck channels), the
model's device scores and, for a network, the energy score of its logits. Every path
that feeds the twin (a run's reference, the held-out streams, the drift evaluation, the
instruction count) takes them from here, so the twin sees what kml_mo_step passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kiloml.monitor.config import MonitorParams
from kiloml.monitor.energy import energies
from kiloml.monitor.signals import channel_moments_many, channel_variances

if TYPE_CHECKING:
    from kiloml.pipeline import Pipeline

F32 = np.float32


@dataclass
class WindowInputs:
    watched: np.ndarray           # float32 [N, F or 2 x channels]: what index points into
    channel_variance: np.ndarray  # float32 [N, channels]
    scores: np.ndarray            # float32 [N, classes]: the device scores
    energy: np.ndarray | None     # float32 [N]: the network's energy score (None: none)


def is_network(model) -> bool:
    return getattr(model, "kind", None) == "neural" and getattr(model, "graph", None) is not None


def reads_window(model) -> bool:
    """A network fed the raw window (a RawWindow stage makes its 'features')."""
    return is_network(model) and getattr(model, "reads", "features") == "window"


def scores_and_energy(model, features: np.ndarray, n_classes: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """A network's device scores and the energy of its logits, from one interpreter run."""
    from kiloml.nn.logits import check_logits, scores_and_logits

    logits = check_logits(model.graph, n_classes)
    scores, values = scores_and_logits(model, np.asarray(features, F32), logits)
    return scores, energies(values)


def monitor_inputs(pipeline: Pipeline, windows: np.ndarray, features: np.ndarray,
                   params: MonitorParams | None = None) -> WindowInputs:
    """``windows`` [N, T, C] (preprocessed, in time order: the ring from its oldest row),
    ``features`` [N, F] their feature vectors; ``params`` default the pipeline's monitor."""
    p = params if params is not None else pipeline.monitor
    w = np.ascontiguousarray(windows, F32)
    f = np.asarray(features, F32)
    energy = None
    if p is not None and p.energy:
        scores, energy = scores_and_energy(pipeline.model, f, pipeline.n_classes)
    else:
        scores = np.asarray(pipeline.device_scores(f), F32)
    if p is not None and p.inputs == "channels":
        watched = channel_moments_many(w) if len(w) else \
            np.zeros((0, 2 * pipeline.n_channels), F32)
        variance = watched[:, pipeline.n_channels:]
    else:
        watched = f
        variance = channel_variances(w) if len(w) else np.zeros((0, pipeline.n_channels), F32)
    return WindowInputs(watched, variance, scores, energy)
