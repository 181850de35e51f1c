"""The raw window as the feature vector: what a network reading [T, C] is fed.

The C copies the ring (oldest row first) into the feature buffer, so the
streaming path hands the network the same window, in order, as ``kml_classify``.
"""

from __future__ import annotations

import numpy as np

from kiloml.stage import CStage, EmitContext, FeatureStage, StageCost
from kiloml.targets.profiles import TargetProfile


class RawWindow(FeatureStage):
    kind = "raw"
    reads = "window"

    def __init__(self, window_rows: int, channels: int) -> None:
        self.window_rows = window_rows
        self.channels = channels
        self.output_shape = (window_rows, channels)

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x.reshape(len(x), -1)

    def feature_names(self, input_names: list[str]) -> list[str]:
        return [f"{c}[{t}]" for t in range(self.window_rows) for c in input_names]

    def emit_c(self, ctx: EmitContext) -> CStage:
        rows, ch = ctx.window_rows, ctx.channels
        call = (f"{{ /* the ring in time order: rows [start_row, {rows}) then [0, start_row) */\n"
                f"        const int32_t first_ = ({rows} - {ctx.start_row}) * {ch};\n"
                f"        int32_t i_;\n"
                f"        for (i_ = 0; i_ < first_; ++i_) {{\n"
                f"            ({ctx.output})[i_] = {ctx.window}[{ctx.start_row} * {ch} + i_];\n"
                f"        }}\n"
                f"        for (i_ = first_; i_ < {rows * ch}; ++i_) {{\n"
                f"            ({ctx.output})[i_] = {ctx.window}[i_ - first_];\n"
                f"        }}\n    }}")
        return CStage(call=call)

    def cost(self, profile: TargetProfile, window_rows: int, channels: int) -> StageCost:
        return StageCost(flash_bytes=60, ram_bytes=0, instructions=4 * window_rows * channels)
