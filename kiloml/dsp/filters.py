"""Preprocessing with state: Butterworth IIR filters, pre-emphasis, decimation.

The reference loops over time, vectorised over recordings and channels, with the
float32 operations of ``kml_filters.c`` in the same order, from a zero state at the
start of each recording (which is what ``kml_reset`` gives the firmware).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from kiloml.codegen.cwriter import c_array, c_float
from kiloml.errors import KilomlError
from kiloml.stage import CStage, EmitContext, SampleStage, StageCost
from kiloml.targets.profiles import TargetProfile

F32 = np.float32


def design_butterworth(kind: str, cutoff_hz: float | list[float], order: int,
                       rate_hz: float, where: str) -> np.ndarray:
    """Second-order sections [n, 5] (b0 b1 b2 a1 a2) in float32, checked stable."""
    nyquist = rate_hz / 2.0
    edges = cutoff_hz if isinstance(cutoff_hz, list) else [cutoff_hz]
    for edge in edges:
        if edge >= nyquist:
            raise KilomlError(f"cutoff {edge:g} Hz is at or above the Nyquist frequency "
                              f"({nyquist:g} Hz at {rate_hz:g} Hz)", where=where)
    btype = {"lowpass": "low", "highpass": "high", "bandpass": "band"}[kind]
    sos = signal.butter(order, edges if len(edges) > 1 else edges[0], btype=btype,
                        output="sos", fs=rate_hz)
    coeffs = np.concatenate([sos[:, :3], sos[:, 4:6]], axis=1).astype(F32)  # a0 == 1
    for _b0, _b1, _b2, a1, a2 in coeffs.astype(np.float64):
        if np.max(np.abs(np.roots([1.0, a1, a2]))) >= 1.0:
            raise KilomlError(f"the {kind} filter is unstable once its coefficients are "
                              f"float32; lower the order or move the cutoff away from 0 "
                              f"and Nyquist", where=where)
    return coeffs


def run_sos(coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """kml_sos_step over time for x [B, T, C] from a zero state."""
    out = np.empty_like(x, dtype=F32)
    z = np.zeros((len(coeffs), 2, x.shape[0], x.shape[2]), dtype=F32)
    b0, b1, b2, a1, a2 = (coeffs[:, i].astype(F32) for i in range(5))
    for t in range(x.shape[1]):
        v = x[:, t, :].astype(F32)
        for s in range(len(coeffs)):
            y = b0[s] * v + z[s, 0]
            z[s, 0] = b1[s] * v - a1[s] * y + z[s, 1]
            z[s, 1] = b2[s] * v - a2[s] * y
            v = y
        out[:, t, :] = v
    return out


def _sos_constants(p: str, coeffs: np.ndarray, channels: int) -> tuple[str, str, str]:
    """(constants, state, struct initializer fields) for a kml_sos_t."""
    constants = c_array("float", f"{p}coeffs", coeffs.ravel(), fmt=c_float, per_line=5)
    state = f"static float {p}state[{2 * len(coeffs) * channels}];\n"
    init = f"{len(coeffs)}, {channels}, {p}coeffs, {p}state"
    return constants, state, init


class Butterworth(SampleStage):
    kind = "filter"

    def __init__(self, kind: str, cutoff_hz: float | list[float], order: int, rate_hz: float,
                 where: str) -> None:
        self.type = kind
        self.cutoff_hz = cutoff_hz
        self.order = order
        self.coeffs = design_butterworth(kind, cutoff_hz, order, rate_hz, where)

    def process(self, x: np.ndarray) -> np.ndarray:
        return run_sos(self.coeffs, x)

    def emit_c(self, ctx: EmitContext) -> CStage:
        p = ctx.prefix
        constants, state, init = _sos_constants(p, self.coeffs, ctx.channels)
        return CStage(runtime=["kml_filters"],
                      constants=constants + f"static const kml_sos_t {p}sos = {{{init}}};\n",
                      state=state, reset=f"kml_sos_reset(&{p}sos);",
                      call=f"kml_sos_step(&{p}sos, {ctx.input}, {ctx.output});")

    def cost(self, profile: TargetProfile, channels: int) -> StageCost:
        per = 14 if profile.has_fpu else 14 * 30
        n = len(self.coeffs)
        return StageCost(flash_bytes=20 * n + 150, ram_bytes=8 * n * channels,
                         instructions=per * n * channels + 10)


class PreEmphasis(SampleStage):
    kind = "pre_emphasis"

    def __init__(self, coefficient: float) -> None:
        self.coefficient = F32(coefficient)

    def process(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(F32)
        previous = np.zeros_like(x)
        previous[:, 1:, :] = x[:, :-1, :]
        return (x - self.coefficient * previous).astype(F32)

    def emit_c(self, ctx: EmitContext) -> CStage:
        p = ctx.prefix
        return CStage(runtime=["kml_filters"],
                      constants=f"static const kml_preemphasis_t {p}pre = {{{ctx.channels}, "
                                f"{c_float(self.coefficient)}, {p}previous}};\n",
                      state=f"static float {p}previous[{ctx.channels}];\n",
                      reset=f"kml_preemphasis_reset(&{p}pre);",
                      call=f"kml_preemphasis_step(&{p}pre, {ctx.input}, {ctx.output});")

    def cost(self, profile: TargetProfile, channels: int) -> StageCost:
        return StageCost(flash_bytes=80, ram_bytes=4 * channels,
                         instructions=(6 if profile.has_fpu else 80) * channels)


class Decimate(SampleStage):
    """Butterworth anti-alias low-pass at 80% of the new Nyquist frequency, then every
    factor-th sample, starting with the first."""

    kind = "decimate"
    ANTI_ALIAS_ORDER = 6

    def __init__(self, factor: int, rate_hz: float, where: str) -> None:
        self.decimation = factor
        self.coeffs = design_butterworth("lowpass", 0.8 * rate_hz / factor / 2,
                                         self.ANTI_ALIAS_ORDER, rate_hz, where)

    def process(self, x: np.ndarray) -> np.ndarray:
        return run_sos(self.coeffs, x)[:, ::self.decimation, :]

    def emit_c(self, ctx: EmitContext) -> CStage:
        p = ctx.prefix
        constants, state, init = _sos_constants(p, self.coeffs, ctx.channels)
        return CStage(
            runtime=["kml_filters"],
            constants=constants + f"static const kml_decimator_t {p}dec = "
                                  f"{{{self.decimation}, {{{init}}}, &{p}phase}};\n",
            state=state + f"static int32_t {p}phase;\n",
            reset=f"kml_decimator_reset(&{p}dec);",
            call=f"if (!kml_decimator_step(&{p}dec, {ctx.input}, {ctx.output})) {{\n"
                 f"        return 0;\n    }}")

    def cost(self, profile: TargetProfile, channels: int) -> StageCost:
        n = len(self.coeffs)
        return StageCost(flash_bytes=20 * n + 200, ram_bytes=8 * n * channels + 4,
                         instructions=(14 if profile.has_fpu else 400) * n * channels + 12)
