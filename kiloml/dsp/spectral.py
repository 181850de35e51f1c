"""Spectral features: the Python reference for ``kml_spectral``.

Per channel: frames of ``fft_length`` every ``fft_length / 2`` samples, times the
window function, real FFT (``kiloml.dsp.fft``), power averaged over frames and
scaled by 1 / (frames * sum(w^2)); then band energies, peaks, centroid, entropy
and flatness, with every sum taken sequentially in float32 as the C does.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from kiloml.codegen.cwriter import c_array, c_float
from kiloml.dsp import fft
from kiloml.dsp.math32 import expf, logf
from kiloml.errors import KilomlError
from kiloml.project import SPECTRAL_FEATURES, SpectralStageConfig
from kiloml.stage import CStage, EmitContext, FeatureStage, StageCost
from kiloml.targets.profiles import TargetProfile

F32 = np.float32
POWER_FLOOR = F32(1e-10)
FLAGS = {"band_energies": "KML_SPECTRAL_BANDS", "peaks": "KML_SPECTRAL_PEAKS",
         "centroid": "KML_SPECTRAL_CENTROID", "entropy": "KML_SPECTRAL_ENTROPY",
         "flatness": "KML_SPECTRAL_FLATNESS"}


def window_function(name: str, n: int) -> np.ndarray:
    if name == "rectangular":
        return np.ones(n, dtype=F32)
    return signal.get_window(name, n, fftbins=True).astype(F32)  # periodic, as for spectra


def seq_sum(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sum in float32 from the first element to the last, as a C loop adds."""
    if x.shape[axis] == 0:
        shape = list(x.shape)
        del shape[axis]
        return np.zeros(shape, dtype=F32)
    return np.take(np.cumsum(x.astype(F32), axis=axis, dtype=F32), -1, axis=axis)


class Spectral(FeatureStage):
    kind = "spectral"
    reads = "window"

    def __init__(self, cfg: SpectralStageConfig, rate_hz: float, window_rows: int,
                 channels: list[str], where: str) -> None:
        fft.check_fft_length(cfg.fft_length, f"{where} fft_length")
        n = cfg.fft_length
        if window_rows < n:
            raise KilomlError(f"the window has {window_rows} samples, shorter than the FFT "
                              f"(fft_length = {n})", where=f"{where} fft_length")
        nyquist = rate_hz / 2.0
        f_max = cfg.f_max_hz if cfg.f_max_hz is not None else nyquist
        if f_max > nyquist or cfg.f_min_hz >= nyquist:
            raise KilomlError(f"band edges up to {f_max:g} Hz are above the Nyquist frequency "
                              f"({nyquist:g} Hz at {rate_hz:g} Hz)", where=f"{where} f_max_hz")
        if cfg.f_min_hz >= f_max:
            raise KilomlError(f"f_min_hz {cfg.f_min_hz:g} is not below f_max_hz {f_max:g}",
                              where=f"{where} f_min_hz")
        if cfg.band_spacing == "log" and cfg.f_min_hz <= 0:
            raise KilomlError("log-spaced bands need f_min_hz > 0", where=f"{where} f_min_hz")
        self.cfg = cfg
        self.where = where
        self.selected = [c for c in (cfg.channels or channels)]
        missing = [c for c in self.selected if c not in channels]
        if missing:
            raise KilomlError(f"channel '{missing[0]}' is not among {channels}",
                              where=f"{where} channels")
        self.channel_index = [channels.index(c) for c in self.selected]
        self.plan = fft.make_plan(n)
        self.window_rows = window_rows
        self.rate_hz = rate_hz
        self.window = window_function(cfg.window_function, n)
        self.n_frames = 1 + (window_rows - n) // (n // 2)
        self.power_scale = F32(1.0 / (self.n_frames * float(np.sum(
            self.window.astype(np.float64) ** 2))))
        self.hz_per_bin = F32(rate_hz / n)
        bins = n // 2 + 1
        self.inv_log_bins = F32(1.0 / np.log(bins))
        if cfg.band_spacing == "linear":
            edges_hz = np.linspace(cfg.f_min_hz, f_max, cfg.n_bands + 1)
        else:
            edges_hz = np.geomspace(cfg.f_min_hz, f_max, cfg.n_bands + 1)
        # bin k covers frequency k * rate / n; a band takes bins with lo <= f < hi (the
        # last band includes f_max)
        edges = np.ceil(edges_hz / (rate_hz / n) - 1e-9).astype(int)
        edges[-1] = min(int(np.floor(f_max / (rate_hz / n) + 1e-9)) + 1, bins)
        self.band_edges = np.clip(edges, 0, bins).astype(np.uint16)
        self.what = [f for f in SPECTRAL_FEATURES if f in cfg.features]

    @property
    def log(self) -> bool:
        return self.cfg.log

    def per_channel(self) -> list[str]:
        names: list[str] = []
        for f in self.what:
            if f == "band_energies":
                names += [f"band{b}" for b in range(self.cfg.n_bands)]
            elif f == "peaks":
                for i in range(self.cfg.n_peaks):
                    names += [f"peak{i}_hz", f"peak{i}_height"]
            else:
                names.append(f)
        return names

    def feature_names(self, input_names: list[str]) -> list[str]:
        return [f"{c}.{n}" for c in self.selected for n in self.per_channel()]

    def spectrum(self, x: np.ndarray) -> np.ndarray:
        """Averaged, scaled power spectrum [N, C_selected, bins] of windows x [N, T, C]."""
        n = self.cfg.fft_length
        hop = n // 2
        xs = np.ascontiguousarray(np.asarray(x, F32)[:, :, self.channel_index].transpose(0, 2, 1))
        avg = np.zeros((*xs.shape[:2], n // 2 + 1), dtype=F32)
        for f in range(self.n_frames):
            frame = xs[..., f * hop:f * hop + n] * self.window
            avg = avg + fft.power(fft.rfft(self.plan, frame))
        return avg * self.power_scale

    def transform(self, x: np.ndarray) -> np.ndarray:
        p = self.spectrum(x)
        n_win, n_ch, bins = p.shape
        total = seq_sum(p)
        out: list[np.ndarray] = []
        floor = POWER_FLOOR

        def value(v: np.ndarray) -> np.ndarray:
            return logf(np.maximum(v, floor)) if self.log else v

        if "band_energies" in self.what:
            e = self.band_edges
            energies = np.stack([seq_sum(p[..., e[b]:e[b + 1]])
                                 for b in range(self.cfg.n_bands)], axis=-1)
            out.append(value(energies))
        if "peaks" in self.what:
            out.append(self._peaks(p, value))
        if "centroid" in self.what:
            hz = np.arange(bins).astype(F32) * self.hz_per_bin
            weighted = seq_sum(hz * p)
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(np.where(total > 0, weighted / total, F32(0))[..., None])
        if "entropy" in self.what:
            with np.errstate(divide="ignore", invalid="ignore"):
                prob = p / total[..., None]
                terms = np.where(p > 0, prob * logf(prob), F32(0)).astype(F32)
            h = np.zeros((n_win, n_ch), dtype=F32)
            for k in range(bins):  # h -= p log p, in order, skipping empty bins
                h = np.where((p[..., k] > 0) & (total > 0), h - terms[..., k], h)
            out.append((h * self.inv_log_bins)[..., None])
        if "flatness" in self.what:
            log_sum = seq_sum(logf(np.maximum(p, floor)))
            mean = total / F32(bins)
            flat = expf(log_sum / F32(bins)) / np.maximum(mean, floor)
            out.append(flat[..., None].astype(F32))
        return np.concatenate(out, axis=-1).reshape(n_win, -1).astype(F32)

    def _peaks(self, p: np.ndarray, value) -> np.ndarray:
        n_win, n_ch, bins = p.shape
        k_peaks = self.cfg.n_peaks
        inner = p[..., 1:bins - 1]
        is_peak = (inner > p[..., :bins - 2]) & (inner >= p[..., 2:])
        height = np.where(is_peak, inner, -np.inf)
        bin_index = np.arange(1, bins - 1)
        # highest first; on equal heights the earlier bin (a stable sort keeps it first)
        order = np.argsort(-height, axis=-1, kind="stable")[..., :k_peaks]
        top_h = np.take_along_axis(height, order, axis=-1)
        found = top_h > -np.inf  # -inf marks "no peak"; a peak may itself be +inf
        hz = np.where(found, bin_index[order].astype(F32) * self.hz_per_bin, F32(0))
        h = np.where(found, top_h, POWER_FLOOR).astype(F32)
        if k_peaks > top_h.shape[-1]:  # fewer candidate bins than peaks asked
            pad = k_peaks - top_h.shape[-1]
            hz = np.concatenate([hz, np.zeros((n_win, n_ch, pad), F32)], axis=-1)
            h = np.concatenate([h, np.full((n_win, n_ch, pad), POWER_FLOOR, F32)], axis=-1)
        pairs = np.stack([hz, value(h)], axis=-1)
        return pairs.reshape(n_win, n_ch, 2 * k_peaks).astype(F32)

    def emit_c(self, ctx: EmitContext) -> CStage:
        p = ctx.prefix
        plan_c, plan_name = self.plan.c_constants(f"{p}fft_")
        flags = " | ".join(FLAGS[f] for f in self.what) + (" | KML_SPECTRAL_LOG" if self.log
                                                           else "")
        constants = "\n".join([
            plan_c,
            c_array("float", f"{p}window", self.window, fmt=c_float, per_line=6),
            c_array("uint16_t", f"{p}band_edges", self.band_edges, per_line=16),
            f"static const kml_spectral_t {p}spectral = {{\n"
            f"    &{plan_name}, {p}window, {c_float(self.power_scale)}, "
            f"{c_float(self.hz_per_bin)}, {c_float(POWER_FLOOR)},\n"
            f"    {c_float(self.inv_log_bins)}, {flags}, {self.cfg.n_bands}, {p}band_edges, "
            f"{self.cfg.n_peaks}\n}};\n"])
        n = self.cfg.fft_length
        scratch = n + n // 2 + 1 + 2 * self.cfg.n_peaks
        per = len(self.per_channel())
        call = "\n    ".join(
            f"kml_spectral(&{p}spectral, {ctx.window} + {c}, {ctx.window_rows}, "
            f"{ctx.channels}, {ctx.start_row}, {ctx.scratch}, {ctx.output} + {i * per});"
            for i, c in enumerate(self.channel_index))
        return CStage(runtime=["kml_fft", "kml_math", "kml_spectral"], constants=constants,
                      call=call, scratch_floats=scratch)

    def cost(self, profile: TargetProfile, window_rows: int, channels: int) -> StageCost:
        n = self.cfg.fft_length
        fft_instr = int(5 * n * np.log2(n)) * (1 if profile.has_fpu else 30)
        per_channel = self.n_frames * (fft_instr + 8 * n) + 40 * n
        return StageCost(flash_bytes=16 * n + 1800, ram_bytes=4 * (n + n // 2 + 1),
                         instructions=per_channel * len(self.selected))
