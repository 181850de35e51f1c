"""Real public sensor data that ships inside PyPI packages (works offline)."""

from __future__ import annotations

import numpy as np

from kiloml.data.recording import Recording
from kiloml.optional import needs, require


def load_watch() -> list[Recording]:
    """seglearn's smartwatch IMU data: 140 recordings, 6 axes at 50 Hz, 7 shoulder
    exercises, 10 subjects (Burns et al., 2018)."""
    with needs("seglearn", "the 'watch' data set", where="[data] source"):
        from seglearn.datasets import load_watch as _load
    data = _load()
    names = [str(n) for n in data["y_labels"]]
    channels = [str(c) for c in data["X_labels"]]
    return [
        Recording(
            samples=np.asarray(x, dtype=np.float32),
            sample_rate_hz=50.0,
            channels=channels,
            group=str(int(subject)),
            source=f"seglearn:watch[{i}]",
            label=names[int(y)],
        )
        for i, (x, y, subject) in enumerate(zip(data["X"], data["y"], data["subject"],
                                                strict=True))
    ]


BASIC_MOTIONS_CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


def load_basic_motions() -> list[Recording]:
    """BasicMotions (UEA archive): 80 smartwatch recordings of 10 s at 10 Hz, 3-axis
    accelerometer and gyroscope, 4 activities. The archive has no subject ids, so
    each recording is its own group."""
    arrays = []
    try:
        from aeon.datasets import load_basic_motions as _load

        for split in ("train", "test"):
            arrays.append(_load(split=split))
    except ImportError:
        try:
            from sktime.datasets import load_basic_motions as _load_sk
        except ImportError:  # neither: the one line that names kiloml's extra
            require("aeon", "the 'basic-motions' data set", where="[data] source")
            raise
        for split in ("train", "test"):
            arrays.append(_load_sk(split=split, return_type="numpy3D"))
    recordings = []
    for split_name, (x, y) in zip(("train", "test"), arrays, strict=True):
        for i in range(len(x)):
            recordings.append(Recording(
                samples=np.asarray(x[i], dtype=np.float32).T,
                sample_rate_hz=10.0,
                channels=list(BASIC_MOTIONS_CHANNELS),
                group=f"{split_name}-{i:02d}",
                source=f"BasicMotions[{split_name}][{i}]",
                label=str(y[i]),
            ))
    return recordings
