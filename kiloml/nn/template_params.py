"""A template's constructor arguments from its [model] settings (mlp, cnn1d, dscnn):
what the trainer, the optimizer (pruning, distillation teachers) and the estimator build."""

from __future__ import annotations

from kiloml.project import NeuralModelConfig


def template_params(c: NeuralModelConfig) -> dict[str, object]:
    if c.kind == "mlp":
        return {"hidden": list(c.hidden), "dropout": c.dropout}
    if c.kind == "cnn1d":
        return {"filters": list(c.filters), "kernel_size": c.kernel_size, "stride": c.stride,
                "pool": c.pool, "dropout": c.dropout}
    return {"filters": list(c.filters), "kernel_size": min(c.kernel_size, 3), "stride": c.stride,
            "dropout": c.dropout}
