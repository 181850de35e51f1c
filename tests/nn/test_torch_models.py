"""Torch templates: export equivalence with the reference interpreter, training, int8.

The export tests randomize BatchNorm statistics and fit the input
standardization on skewed data so that every fold (BN, standardization) and
every padding path (SAME with the odd pixel after, VALID, explicit PAD) is
exercised against torch's own forward pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kiloml.nn.graph import Graph
from kiloml.nn.quantize import dequantize_output, quantize_graph
from kiloml.nn.reference import Interpreter
from kiloml.nn.torch_export import to_graph
from kiloml.nn.torch_models import build_model, fit_standardization, graph_inputs, pad_amounts
from kiloml.nn.train import (
    evaluate_int8,
    evaluate_module,
    graph_predict,
    predict_proba,
    train_classifier,
)

N_CLASSES = 5

EXPORT_CASES = [
    ("mlp", (12,), {}),
    ("mlp", (7,), {"hidden": []}),
    ("mlp", (9,), {"hidden": [5]}),
    ("cnn1d", (100, 6), {}),  # defaults: k=5, first stride 2
    ("cnn1d", (37, 3), {"kernel_size": 4, "stride": 2, "pool": True}),  # even k, odd T
    ("cnn1d", (24, 2), {"kernel_size": 2, "stride": 1, "filters": [4, 6]}),  # pad after only
    ("cnn1d", (31, 3), {"kernel_size": 4, "stride": 3, "padding": "symmetric",
                        "pool": [True, False, False]}),  # needs an explicit PAD
    ("cnn1d", (20, 2), {"kernel_size": 3, "stride": 1, "padding": "valid", "filters": [4, 5]}),
    ("dscnn", (49, 10), {}),
    ("dscnn", (20, 13), {"kernel_size": (4, 2), "stride": (2, 1), "filters": [8, 8, 12]}),
    ("dscnn", (21, 11), {"kernel_size": 4, "stride": 2, "padding": "symmetric",
                         "filters": [6, 8]}),
    # The graph takes standardized inputs; padding is zeros after standardizing.
    ("mlp", (12,), {"standardize": "external"}),
    ("cnn1d", (37, 3), {"kernel_size": 4, "stride": 2, "standardize": "external"}),
    ("cnn1d", (31, 3), {"kernel_size": 4, "stride": 3, "padding": "symmetric",
                        "standardize": "external"}),
    ("dscnn", (20, 13), {"kernel_size": (4, 2), "standardize": "external"}),
]


def _randomized(template: str, shape: tuple[int, ...], params: dict, seed: int) -> nn.Module:
    """A template with non-trivial BN statistics, scaled-up logits and fitted standardization."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(template, shape, N_CLASSES, **params)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        model.head.weight.mul_(4.0)  # spread the softmax so the comparison means something
    x = _inputs(shape, 256, rng)
    fit_standardization(model, x)
    return model.eval()


def _inputs(shape: tuple[int, ...], n: int, rng: np.random.Generator,
            spread: tuple[float, float] = (0.1, 5.0)) -> np.ndarray:
    """Channels with different offsets and scales, like raw sensor data."""
    scale = rng.uniform(*spread, size=shape[-1])
    offset = rng.normal(size=shape[-1]) * 3.0
    return (rng.normal(size=(n, *shape)) * scale + offset).astype(np.float32)


def _logits_index(graph: Graph) -> int:
    return next(op.inputs[0] for op in graph.ops if op.kind == "SOFTMAX")


@pytest.mark.parametrize(("template", "shape", "params"), EXPORT_CASES,
                         ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(EXPORT_CASES)])
def test_export_matches_torch(template: str, shape: tuple[int, ...], params: dict) -> None:
    model = _randomized(template, shape, params, seed=len(shape) + len(params))
    x = _inputs(shape, 48, np.random.default_rng(1))
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    expected = torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    graph = to_graph(model, shape)
    assert graph.input_tensors[0].shape == (1, *shape)
    assert graph.ops[-1].kind == "SOFTMAX" and graph.ops[-1].options["beta"] == 1.0
    assert not {"RELU", "MUL", "ADD"} & {op.kind for op in graph.ops}  # fused / folded
    trace: dict[int, np.ndarray] = {}
    probs = Interpreter(graph).run([graph_inputs(model, x)], trace=trace)[0]
    assert expected.std(axis=1).mean() > 0.05  # not a flat softmax
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    np.testing.assert_allclose(trace[_logits_index(graph)], logits, atol=1e-4, rtol=1e-4)


def test_padding_choices() -> None:
    # TFLite SAME puts the odd pixel after: k=4, s=2 on 37 samples pads (1, 2).
    assert pad_amounts(37, 4, 2, "same") == (1, 2)
    assert pad_amounts(24, 2, 1, "same") == (0, 1)
    assert pad_amounts(100, 5, 2, "same") == (1, 2)
    same = to_graph(_randomized("cnn1d", (37, 3), {"kernel_size": 4, "stride": 2}, 0))
    assert "PAD" not in [op.kind for op in same.ops]
    assert all(op.options["padding"] == "SAME" for op in same.ops if op.kind == "CONV_2D")
    conv = next(op for op in same.ops if op.kind == "CONV_2D")
    assert same.tensors[conv.inputs[1]].shape == (16, 1, 4, 3)  # OHWI with H = 1
    symmetric = to_graph(_randomized("cnn1d", (31, 3), {"kernel_size": 4, "stride": 3,
                                                        "padding": "symmetric"}, 0))
    assert [op.kind for op in symmetric.ops].count("PAD") == 3


def test_layouts() -> None:
    g = to_graph(_randomized("dscnn", (20, 13), {"kernel_size": (4, 2), "filters": [8, 12]}, 0))
    kinds = [op.kind for op in g.ops]
    assert kinds == ["RESHAPE", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "MEAN",
                     "FULLY_CONNECTED", "SOFTMAX"]
    w = [g.tensors[op.inputs[1]].shape for op in g.ops if op.kind.endswith("CONV_2D")]
    assert w == [(8, 4, 2, 1), (1, 3, 3, 8), (12, 1, 1, 8)]
    mean = next(op for op in g.ops if op.kind == "MEAN")
    assert g.tensors[mean.inputs[1]].data.tolist() == [1, 2]
    assert mean.options["keep_dims"] is False
    assert g.tensors[g.ops[0].outputs[0]].shape == (1, 20, 13, 1)


@pytest.mark.parametrize("template,shape,params", [
    ("mlp", (10,), {}),
    ("cnn1d", (50, 3), {"filters": [8, 8]}),
    ("cnn1d", (50, 3), {"filters": [8, 8], "kernel_size": 4, "pool": True,
                        "padding": "symmetric"}),  # PAD and MAX_POOL_2D in int8
    ("dscnn", (16, 8), {}),
])
def test_exported_graph_quantizes(template: str, shape: tuple[int, ...], params: dict) -> None:
    model = _randomized(template, shape, params, 3)
    rng = np.random.default_rng(2)
    # Similar channel ranges: an int8 input has one scale for all channels.
    data = _inputs(shape, 160, rng, (0.5, 2.0))
    fit_standardization(model, data)
    graph = to_graph(model)
    q = quantize_graph(graph, [data[:128]])
    out = q.output_tensors[0]
    assert out.dtype == "int8" and out.quant.zp == -128 and abs(out.quant.s - 1 / 256) < 1e-9
    x = data[128:]
    probs = graph_predict(graph, x)
    q_probs = dequantize_output(graph_predict(q, x), out)
    assert np.abs(q_probs - probs).max() < 0.05
    assert np.mean(q_probs.argmax(1) == probs.argmax(1)) >= 0.8


# ---- training on real data ---------------------------------------------------------------

def _watch_windows(d: dict, subjects: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """2 s windows (100 samples at 50 Hz), 50 % overlap, of the given subjects' recordings."""
    xs, ys = [], []
    for rec, label, subject in zip(d["X"], d["y"], d["subject"], strict=True):
        if int(subject) not in subjects:
            continue
        for start in range(0, len(rec) - 100 + 1, 50):
            xs.append(rec[start:start + 100])
            ys.append(int(label))
    return np.asarray(xs, np.float32), np.asarray(ys, np.int64)


@pytest.fixture(scope="module")
def watch() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from seglearn.datasets import load_watch

    d = load_watch()  # 140 recordings of 7 shoulder exercises, 10 subjects, 6 IMU channels
    return {"train": _watch_windows(d, [1, 2, 3, 4, 5, 6]), "val": _watch_windows(d, [7, 8]),
            "test": _watch_windows(d, [9, 10])}


def test_cnn1d_trains_on_watch_and_quantizes(watch) -> None:
    (xtr, ytr), (xva, yva), (xte, yte) = watch["train"], watch["val"], watch["test"]
    seen: list[tuple[int, int, float, float]] = []
    model, history = train_classifier(
        "cnn1d", {"filters": [8, 16], "kernel_size": 5}, xtr, ytr, xva, yva, 7,
        max_epochs=8, patience=3, batch_size=64, lr=3e-3,
        progress=lambda *a: seen.append(a))
    assert [s[0] for s in seen] == list(range(1, history.epochs_run + 1))
    assert seen[0][1] == 8
    # The best epoch's weights were restored.
    loss, _ = evaluate_module(model, nn.CrossEntropyLoss(), torch.from_numpy(xva),
                        torch.from_numpy(yva), 64)
    assert loss == pytest.approx(history.best_val_loss, rel=1e-5)

    torch_acc = float(np.mean(predict_proba(model, xte).argmax(1) == yte))
    float_acc, int8_acc = evaluate_int8(to_graph(model), xtr, xte, yte)
    assert float_acc == pytest.approx(torch_acc, abs=2e-3)  # same model, raw inputs
    print(f"watch cnn1d: torch {torch_acc:.3f} float {float_acc:.3f} int8 {int8_acc:.3f}")
    assert float_acc > 0.5, float_acc  # 7 classes: chance is 0.14
    assert abs(float_acc - int8_acc) <= 0.03, (float_acc, int8_acc)


def test_training_is_deterministic(watch) -> None:
    x, y = watch["train"]
    pick = np.random.default_rng(0).choice(len(x), 400, replace=False)
    x, y = x[pick], y[pick]
    runs = [train_classifier("cnn1d", {"filters": [8, 8]}, x[:300], y[:300], x[300:], y[300:], 7,
                             seed=s, max_epochs=2, patience=5)[0].state_dict()
            for s in (3, 3, 4)]
    for key, value in runs[0].items():
        assert torch.equal(value, runs[1][key]), key
    assert not torch.equal(runs[0]["head.weight"], runs[2]["head.weight"])


def test_mlp_and_class_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32) * [1, 10, 100, 0.1] + [0, 5, -50, 1]
    y = (x[:, 0] + x[:, 1] / 10 > 0.5).astype(np.int64)
    model, history = train_classifier("mlp", {"hidden": [16]}, x[:200], y[:200], x[200:],
                                      y[200:], 2, max_epochs=40, lr=1e-2,
                                      class_weight="balanced")
    assert history.best_val_accuracy > 0.85
    probs = graph_predict(to_graph(model), x.astype(np.float32))
    np.testing.assert_allclose(probs, predict_proba(model, x), atol=1e-4)


def test_external_standardization_keeps_small_channels_in_int8() -> None:
    # Feature 0 (range ~0.1) carries the label, feature 1 (range ~100) is noise. Folded, the
    # int8 input's single scale (~0.8 per step) erases feature 0; standardized, it survives.
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(size=600) * 0.03, rng.normal(size=600) * 30.0], axis=1)
    x = x.astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    acc = {}
    for mode in ("folded", "external"):
        model, _ = train_classifier("mlp", {"hidden": [8], "standardize": mode}, x[:400], y[:400],
                                    x[400:500], y[400:500], 2, max_epochs=30, lr=1e-2)
        xs = graph_inputs(model, x)
        acc[mode] = evaluate_int8(to_graph(model), xs[:400], xs[500:], y[500:])
    assert acc["folded"][0] > 0.9 and acc["external"][0] > 0.9
    assert acc["folded"][1] < 0.75, acc
    assert acc["external"][1] > 0.9, acc
