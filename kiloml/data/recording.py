"""A recording: one continuous stretch of multichannel sensor samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The most float32 sample values kiloml holds for one recording (2 GiB) and for the
# augmented copies together (4 GiB): a setting or a file header asking for more is an
# error up front, not a MemoryError halfway through.
MAX_RECORDING_VALUES = 1 << 29
MAX_AUGMENTED_VALUES = 1 << 30


@dataclass
class Recording:
    """Samples [T, C] float32 at ``sample_rate_hz`` with a label and a group.

    Either ``label`` (one label for the whole recording) or ``sample_labels``
    (one label per sample; "" marks an unlabeled sample) is set. ``group`` is
    what evaluation splits by (subject, session, device); ``source`` names the
    file or data set entry it came from, for error messages and reports.
    """

    samples: np.ndarray
    sample_rate_hz: float
    channels: list[str]
    group: str
    source: str
    label: str | None = None
    sample_labels: np.ndarray | None = None
    augmented: bool = False  # a training copy made by augmentation

    def __post_init__(self) -> None:
        self.samples = np.ascontiguousarray(self.samples, dtype=np.float32)
        if self.samples.ndim != 2 or self.samples.shape[1] != len(self.channels):
            raise ValueError(f"{self.source}: samples {self.samples.shape} do not match "
                             f"{len(self.channels)} channels")
        if (self.label is None) == (self.sample_labels is None):
            raise ValueError(f"{self.source}: set exactly one of label and sample_labels")
        if self.sample_labels is not None and len(self.sample_labels) != len(self.samples):
            raise ValueError(f"{self.source}: one label per sample is needed")

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    def select_channels(self, names: list[str]) -> Recording:
        index = [self.channels.index(n) for n in names]
        return Recording(self.samples[:, index], self.sample_rate_hz, list(names), self.group,
                         self.source, self.label, self.sample_labels, self.augmented)
