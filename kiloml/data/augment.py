"""Training-time augmentation: copies of training recordings with Gaussian noise at a
random SNR, a random time shift (zeros fill the gap) and a random gain. Test recordings
are never augmented, and copies keep their source's group, so they cannot leak."""

from __future__ import annotations

import numpy as np

from kiloml.data.recording import MAX_AUGMENTED_VALUES, Recording
from kiloml.errors import KilomlError
from kiloml.project import AugmentConfig


def augment(recordings: list[Recording], cfg: AugmentConfig) -> list[Recording]:
    """``cfg.copies`` augmented copies of each recording (the originals not included)."""
    _check_settings(recordings, cfg)
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


def _check_settings(recordings: list[Recording], cfg: AugmentConfig) -> None:
    if not recordings or not cfg.copies:
        return
    values = cfg.copies * sum(r.samples.size for r in recordings)
    if values > MAX_AUGMENTED_VALUES:
        raise KilomlError(f"copies = {cfg.copies} of the training recordings would hold "
                          f"{values * 4 / 2**30:.1f} GiB of samples (at most "
                          f"{MAX_AUGMENTED_VALUES * 4 / 2**30:.0f} GiB); make fewer copies",
                          where="[augment] copies")
    longest_ms = max(r.duration_s for r in recordings) * 1000.0
    if cfg.time_shift_ms >= longest_ms:
        raise KilomlError(f"time_shift_ms = {cfg.time_shift_ms:g} is not shorter than the "
                          f"longest training recording ({longest_ms:g} ms): copies shifted "
                          f"that far hold nothing of it", where="[augment] time_shift_ms")
