"""Two-sided Page-Hinkley change detection, the twin of kml_mon_page_hinkley.

g+ = max(0, g+ + (x - mean) - delta) and g- = max(0, g- - (x - mean) - delta), with the
detector's running mean (a plain mean until ``cap`` windows, then an EWMA of 1/cap): the
bounded form of m_T - min m_t. It fires when either passes lambda after ``min_windows``
windows, then starts again (mean included)."""

from __future__ import annotations

import numpy as np

F32 = np.float32


class PageHinkley:
    def __init__(self) -> None:
        self.n, self.mean, self.up, self.down = F32(0.0), F32(0.0), F32(0.0), F32(0.0)

    def update(self, x: np.float32, delta: np.float32, lam: np.float32, cap: np.float32,
               min_windows: np.float32) -> bool:
        if self.n < cap:
            self.n = F32(self.n + F32(1.0))
        self.mean = F32(self.mean + F32(F32(x - self.mean) / self.n))
        dev = F32(x - self.mean)
        up = F32(F32(self.up + dev) - delta)
        down = F32(F32(self.down - dev) - delta)
        self.up = up if up > F32(0.0) else F32(0.0)
        self.down = down if down > F32(0.0) else F32(0.0)
        if self.n >= min_windows and (self.up > lam or self.down > lam):
            self.n, self.up, self.down = F32(0.0), F32(0.0), F32(0.0)
            return True
        return False
