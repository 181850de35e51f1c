"""Resource estimates from the stages' cost models, without compiling (uncalibrated)."""

from __future__ import annotations

from kiloml.pipeline import Pipeline
from kiloml.targets.profiles import TargetProfile

STACK_ESTIMATE_BYTES = 256  # the tree and statistics kernels' frames, with FPU spills


def estimate_resources(pipeline: Pipeline, profile: TargetProfile, n_features: int) -> dict:
    costs = [s.cost(profile, pipeline.window_samples, pipeline.n_channels)
             for s in pipeline.features]
    costs.append(pipeline.model.cost(profile, n_features))
    ring = 4 * pipeline.window_samples * pipeline.n_channels + 4 * n_features
    instructions = sum(c.instructions for c in costs)
    return {
        "flash_bytes": sum(c.flash_bytes for c in costs),
        "ram_bytes": sum(c.ram_bytes for c in costs) + ring,
        "stack_bytes": STACK_ESTIMATE_BYTES,
        "instructions_per_inference": instructions,
        "latency_us": round(profile.latency_us(instructions), 3),
        "note": "uncalibrated estimate from per-stage cost models",
    }
