"""Training-time augmentation: copies of training recordings with Gaussian noise at a
random SNR, a random time shift (zeros fill the gap) and a random gain. Test recordings
are never augmented, and copies keep their source's group, so they cannot leak."""

from __future__ import annotations

import numpy as np

from kiloml.data.recording import Recording
from kiloml.project import AugmentConfig


def augment(recordings: list[Recording], cfg: AugmentConfig) -> list[Recording]:
    """``cfg.copies`` augmented copies of each recording (the originals not included)."""
    rng = np.random.default_rng(cfg.seed)
    out: list[Recording] = []
    for rec in recordings:
        x0 = rec.samples.astype(np.float64)
        power = float(np.mean(x0 ** 2)) or 1e-12
        max_shift = round(cfg.time_shift_ms * rec.sample_rate_hz / 1000.0)
        for k in range(cfg.copies):
            x = x0.copy()
            labels = None if rec.sample_labels is None else rec.sample_labels.copy()
            if max_shift:
                shift = int(rng.integers(-max_shift, max_shift + 1))
                x = _shift(x, shift, 0.0)
                if labels is not None:
                    labels = _shift(labels, shift, "")
            x = x * 10.0 ** (rng.uniform(*cfg.gain_db) / 20.0)
            snr_db = rng.uniform(*cfg.noise_snr_db)
            noise_power = power * 10.0 ** (-snr_db / 10.0)
            x = x + rng.normal(0.0, np.sqrt(noise_power), x.shape)
            out.append(Recording(samples=x.astype(np.float32), sample_rate_hz=rec.sample_rate_hz,
                                 channels=list(rec.channels), group=rec.group,
                                 source=f"{rec.source}#augmented{k}", label=rec.label,
                                 sample_labels=labels, augmented=True))
    return out


def _shift(x: np.ndarray, shift: int, fill) -> np.ndarray:
    out = np.empty_like(x)
    if shift > 0:
        out[:shift] = fill
        out[shift:] = x[:-shift]
    elif shift < 0:
        out[shift:] = fill
        out[:shift] = x[-shift:]
    else:
        out[:] = x
    return out
