"""NPY and NPZ recordings.

NPY: one array [T] or [T, C]. NPZ: an array ``samples`` [T] or [T, C] (or the
archive's only array), optionally ``labels`` [T] (one label per sample) and
``sample_rate_hz`` (a scalar).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError


def read_npy(path: Path, display: str) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """Samples [T, C] float32, per-sample labels or None, and the stored rate or None."""
    labels = rate = None
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise KilomlError("file not found", file=display) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise KilomlError(f"not a readable NPY/NPZ file: {exc}", file=display) from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            if "samples" in keys:
                samples = loaded["samples"]
            elif len(keys) == 1:
                samples = loaded[keys[0]]
            else:
                raise KilomlError(f"NPZ needs an array named 'samples' (has: {', '.join(keys)})",
                                  file=display)
            if "labels" in keys:
                labels = np.asarray(loaded["labels"]).astype(str).astype(object)
                labels = np.array([s.strip() for s in labels], dtype=object)
            if "sample_rate_hz" in keys:
                value = np.asarray(loaded["sample_rate_hz"])
                if value.size != 1 or not np.isfinite(value).all() or float(value) <= 0:
                    raise KilomlError("'sample_rate_hz' must be one positive number",
                                      file=display)
                rate = float(value)
    else:
        samples = loaded
    if samples.dtype.kind not in "fiub":
        raise KilomlError(f"samples have dtype {samples.dtype}; a numeric array is needed",
                          file=display)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2:
        raise KilomlError(f"samples have shape {samples.shape}; [T] or [T, C] is needed",
                          file=display)
    if samples.shape[0] == 0:
        raise KilomlError("the array holds no samples", file=display)
    samples32 = samples.astype(np.float32)
    bad = np.argwhere(~np.isfinite(samples32))
    if len(bad):
        t, c = bad[0]
        raise KilomlError(f"sample {t} of channel {c} is not finite (or too large for float32)",
                          file=display)
    if labels is not None and len(labels) != len(samples32):
        raise KilomlError(f"'labels' has {len(labels)} entries for {len(samples32)} samples",
                          file=display)
    return samples32, labels, rate
