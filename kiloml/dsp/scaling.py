"""Per-feature scaling fitted on training windows: out = (x - offset) * gain, in float32
as ``kml_scale`` computes it."""

from __future__ import annotations

import numpy as np

from kiloml.codegen.cwriter import c_array, c_float
from kiloml.stage import CStage, EmitContext, FeatureStage, StageCost
from kiloml.targets.profiles import TargetProfile

F32 = np.float32


class Scale(FeatureStage):
    kind = "scale"
    reads = "vector"

    def __init__(self, method: str) -> None:
        self.method = method
        self.offset: np.ndarray | None = None
        self.gain: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> Scale:
        x64 = np.asarray(x, dtype=np.float64)
        if self.method == "standard":
            offset, spread = x64.mean(axis=0), x64.std(axis=0)
        else:
            offset, spread = x64.min(axis=0), x64.max(axis=0) - x64.min(axis=0)
        with np.errstate(divide="ignore", over="ignore"):
            gain = (1.0 / spread).astype(F32)
        # a constant feature (or one whose spread is too small for a float32 gain) is
        # shifted only
        gain[~(spread > 0) | ~np.isfinite(gain)] = F32(1.0)
        self.offset = offset.astype(F32)
        self.gain = gain
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.offset is None:
            raise RuntimeError("scale stage used before fit")
        return ((np.asarray(x, F32) - self.offset) * self.gain).astype(F32)

    def feature_names(self, input_names: list[str]) -> list[str]:
        return list(input_names)

    def emit_c(self, ctx: EmitContext) -> CStage:
        p = ctx.prefix
        constants = (c_array("float", f"{p}offset", self.offset, fmt=c_float, per_line=6)
                     + c_array("float", f"{p}gain", self.gain, fmt=c_float, per_line=6))
        return CStage(runtime=["kml_scale"], constants=constants,
                      call=f"kml_scale({p}offset, {p}gain, {ctx.n_inputs}, {ctx.output});")

    def cost(self, profile: TargetProfile, window_rows: int, channels: int) -> StageCost:
        n = len(self.offset) if self.offset is not None else 0
        return StageCost(flash_bytes=8 * n + 60, ram_bytes=0,
                         instructions=(6 if profile.has_fpu else 90) * n)
