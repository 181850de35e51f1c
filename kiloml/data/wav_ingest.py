"""WAV recordings: PCM 8/16/24/32-bit or float, mono or multichannel, scaled to [-1, 1)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from kiloml.errors import KilomlError

# Full-scale value of each integer sample type as scipy returns it. 24-bit PCM
# comes back left-justified in int32, so it shares the 32-bit scale.
_FULL_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}


def read_wav(path: Path, display: str) -> tuple[np.ndarray, float]:
    """Samples [T, C] float32 in [-1, 1) and the sample rate in Hz."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, data = wavfile.read(path)
    except FileNotFoundError:
        raise KilomlError("file not found", file=display) from None
    except (ValueError, EOFError, OSError, IndexError) as exc:
        raise KilomlError(f"not a readable WAV file: {exc}", file=display) from None
    if data.ndim == 1:
        data = data[:, None]
    if data.shape[0] == 0:
        raise KilomlError("the WAV file holds no samples", file=display)
    if data.dtype == np.uint8:
        samples = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype in _FULL_SCALE:
        samples = (data.astype(np.float64) / _FULL_SCALE[data.dtype]).astype(np.float32)
    elif data.dtype.kind == "f":
        samples = data.astype(np.float32)
        bad = np.argwhere(~np.isfinite(samples))
        if len(bad):
            t, c = bad[0]
            raise KilomlError(f"sample {t} of channel {c} is not finite", file=display)
    else:
        raise KilomlError(f"unsupported WAV sample type {data.dtype}", file=display)
    if rate <= 0:
        raise KilomlError(f"sample rate {rate} Hz in the header is not positive", file=display)
    return samples, float(rate)
