"""Log mel filterbank energies (MFE) and MFCCs: the Python reference for ``kml_mfcc``.

Conventions (stated because MFCC implementations differ): frames of ``frame_ms``
every ``frame_stride_ms`` inside the window (no padding at the ends), a periodic
Hamming window (by default), zero-padding to ``fft_length``, the power spectrum
|X_k|^2 (not divided by the FFT length), HTK mel scale 2595 log10(1 + f / 700) with
triangular filters evaluated at the bin frequencies (peak 1, not area-normalised),
natural log of max(energy, 1e-10), and an orthonormal DCT-II (scipy's norm="ortho")
keeping the first ``n_coefficients`` (c0 included, no liftering).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dct

from kiloml.codegen.cwriter import c_array, c_float
from kiloml.dsp import fft
from kiloml.dsp.math32 import logf
from kiloml.dsp.spectral import seq_sum, window_function
from kiloml.errors import KilomlError
from kiloml.project import MfccStageConfig
from kiloml.stage import CStage, EmitContext, FeatureStage, StageCost
from kiloml.targets.profiles import TargetProfile

F32 = np.float32
ENERGY_FLOOR = F32(1e-10)


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_filters: int, n_fft: int, rate_hz: float, f_min: float,
                   f_max: float) -> np.ndarray:
    """Triangular filters [n_filters, n_fft / 2 + 1] (float64), HTK mel, peak 1."""
    points = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_filters + 2))
    freqs = np.arange(n_fft // 2 + 1) * rate_hz / n_fft
    bank = np.zeros((n_filters, len(freqs)))
    for m in range(n_filters):
        lo, mid, hi = points[m], points[m + 1], points[m + 2]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        bank[m] = np.maximum(0.0, np.minimum(rising, falling))
    return bank


class Mfcc(FeatureStage):
    reads = "window"

    def __init__(self, cfg: MfccStageConfig, rate_hz: float, window_rows: int,
                 channels: list[str], where: str) -> None:
        fft.check_fft_length(cfg.fft_length, f"{where} fft_length")
        self.kind = cfg.stage
        self.cfg = cfg
        n = cfg.fft_length
        self.frame_length = round(cfg.frame_ms * rate_hz / 1000.0)
        self.frame_stride = round(cfg.frame_stride_ms * rate_hz / 1000.0)
        if self.frame_length < 2 or self.frame_stride < 1:
            raise KilomlError(f"frames of {cfg.frame_ms:g} ms every {cfg.frame_stride_ms:g} ms "
                              f"are too short at {rate_hz:g} Hz", where=f"{where} frame_ms")
        if self.frame_length > n:
            raise KilomlError(f"a frame of {self.frame_length} samples does not fit the FFT "
                              f"(fft_length = {n})", where=f"{where} fft_length")
        if window_rows < self.frame_length:
            raise KilomlError(f"the window has {window_rows} samples, shorter than one frame "
                              f"({self.frame_length})", where=f"{where} frame_ms")
        nyquist = rate_hz / 2.0
        f_max = cfg.f_max_hz if cfg.f_max_hz is not None else nyquist
        if f_max > nyquist:
            raise KilomlError(f"f_max_hz {f_max:g} is above the Nyquist frequency ({nyquist:g} "
                              f"Hz at {rate_hz:g} Hz)", where=f"{where} f_max_hz")
        if cfg.f_min_hz >= f_max:
            raise KilomlError(f"f_min_hz {cfg.f_min_hz:g} is not below f_max_hz {f_max:g}",
                              where=f"{where} f_min_hz")
        self.selected = list(cfg.channels or channels)
        missing = [c for c in self.selected if c not in channels]
        if missing:
            raise KilomlError(f"channel '{missing[0]}' is not among {channels}",
                              where=f"{where} channels")
        self.channel_index = [channels.index(c) for c in self.selected]
        self.plan = fft.make_plan(n)
        self.window = window_function(cfg.window_function, self.frame_length)
        self.n_frames = 1 + (window_rows - self.frame_length) // self.frame_stride
        bank = mel_filterbank(cfg.n_filters, n, rate_hz, cfg.f_min_hz, f_max).astype(F32)
        self.first_bin, self.offsets, weights = [], [0], []
        for row in bank:
            nonzero = np.flatnonzero(row)
            if len(nonzero) == 0:
                raise KilomlError(f"mel filter {len(self.first_bin)} covers no FFT bin: use "
                                  f"fewer filters or a longer FFT", where=f"{where} n_filters")
            first, last = nonzero[0], nonzero[-1]
            self.first_bin.append(first)
            weights.append(row[first:last + 1])
            self.offsets.append(self.offsets[-1] + last - first + 1)
        self.weights = np.concatenate(weights).astype(F32)
        self.n_values = cfg.n_coefficients if self.kind == "mfcc" else cfg.n_filters
        self.dct = (dct(np.eye(cfg.n_filters), type=2, norm="ortho", axis=0)[:cfg.n_coefficients]
                    .astype(F32) if self.kind == "mfcc" else None)
        self.output_shape = (self.n_frames, self.n_values)

    def feature_names(self, input_names: list[str]) -> list[str]:
        tag = "c" if self.kind == "mfcc" else "mel"
        return [f"{c}.f{f}.{tag}{v}" for c in self.selected for f in range(self.n_frames)
                for v in range(self.n_values)]

    def frames_of(self, signal: np.ndarray) -> np.ndarray:
        """MFE/MFCC of frames [..., frame_length] -> [..., n_values] (kml_mfcc_frame)."""
        n = self.cfg.fft_length
        buf = np.zeros((*signal.shape[:-1], n), dtype=F32)
        buf[..., :self.frame_length] = signal.astype(F32) * self.window
        power = fft.power(fft.rfft(self.plan, buf))
        energies = np.stack([
            seq_sum(self.weights[self.offsets[m]:self.offsets[m + 1]]
                    * power[..., self.first_bin[m]:self.first_bin[m]
                            + self.offsets[m + 1] - self.offsets[m]])
            for m in range(self.cfg.n_filters)], axis=-1)
        log_e = logf(np.maximum(energies, ENERGY_FLOOR))
        if self.dct is None:
            return log_e
        return np.stack([seq_sum(self.dct[i] * log_e) for i in range(len(self.dct))], axis=-1)

    def transform(self, x: np.ndarray) -> np.ndarray:
        xs = np.asarray(x, F32)[:, :, self.channel_index].transpose(0, 2, 1)  # [N, C, T]
        starts = np.arange(self.n_frames) * self.frame_stride
        frames = np.stack([xs[..., s:s + self.frame_length] for s in starts], axis=2)
        return self.frames_of(frames).reshape(len(x), -1).astype(F32)

    def emit_c(self, ctx: EmitContext) -> CStage:
        p = ctx.prefix
        plan_c, plan_name = self.plan.c_constants(f"{p}fft_")
        parts = [
            plan_c,
            c_array("float", f"{p}window", self.window, fmt=c_float, per_line=6),
            c_array("uint16_t", f"{p}first_bin", self.first_bin, per_line=16),
            c_array("uint16_t", f"{p}offset", self.offsets, per_line=16),
            c_array("float", f"{p}weights", self.weights, fmt=c_float, per_line=6),
        ]
        if self.dct is not None:
            parts.append(c_array("float", f"{p}dct", self.dct.ravel(), fmt=c_float, per_line=6))
        parts.append(
            f"static const kml_mfcc_t {p}mfcc = {{\n"
            f"    &{plan_name}, {self.frame_length}, {self.frame_stride}, {self.n_frames}, "
            f"{p}window,\n    {self.cfg.n_filters}, {p}first_bin, {p}offset, {p}weights, "
            f"{c_float(ENERGY_FLOOR)},\n    {self.n_values if self.dct is not None else 0}, "
            f"{p + 'dct' if self.dct is not None else 'NULL'}\n}};\n")
        per = self.n_frames * self.n_values
        call = "\n    ".join(
            f"kml_mfcc(&{p}mfcc, {ctx.window} + {c}, {ctx.window_rows}, {ctx.channels}, "
            f"{ctx.start_row}, {ctx.scratch}, {ctx.output} + {i * per});"
            for i, c in enumerate(self.channel_index))
        n = self.cfg.fft_length
        return CStage(runtime=["kml_fft", "kml_math", "kml_mfcc"], constants="\n".join(parts),
                      call=call, scratch_floats=n + n // 2 + 1 + self.cfg.n_filters)

    def cost(self, profile: TargetProfile, window_rows: int, channels: int) -> StageCost:
        n = self.cfg.fft_length
        fft_instr = int(5 * n * np.log2(n)) * (1 if profile.has_fpu else 30)
        per_frame = fft_instr + 6 * len(self.weights) + 60 * self.cfg.n_filters + \
            (4 * self.cfg.n_filters * self.n_values if self.dct is not None else 0)
        flash = 8 * n + 4 * len(self.weights) + (4 * self.dct.size if self.dct is not None
                                                 else 0) + 2500
        return StageCost(flash_bytes=flash, ram_bytes=4 * (n + n // 2 + 1 + self.cfg.n_filters),
                         instructions=per_frame * self.n_frames * len(self.selected))
