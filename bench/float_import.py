"""Float networks imported into a project: what int8 costs, before and after kiloml folds a
per-channel input standardization into the imported model's first layer.

On the watch data (examples/watch: statistics features, subjects 9 and 10 held out), the
way a user brings a model: MLPs (60 -> 32 -> 16 -> 7) trained in PyTorch on the raw
features, or with their standardization inside the module, exported with
`torch.onnx.export`'s defaults; with `--converter-python` (a Python with scikit-learn and
skl2onnx, e.g. /tmp/tfvenv/bin/python) also scikit-learn MLPClassifiers, raw and in a
StandardScaler pipeline, through skl2onnx. Each is imported as `[model] kind = "imported"`
does (NeuralModel.fit on the training windows: calibration on 1000 of them) with
`input_scaling = "none"` (kiloml before the fix) and `"standardize"` (the default now);
kiloml's own `mlp` template with the same layers beside them. Diagnostics say where the
loss came from: the float model fed the int8-rounded input alone, a larger calibration
set, mse calibration, per-output-channel FC weights. With `--cnn`, the same for a 1-D CNN
on the raw windows (PyTorch Conv1d, channels first, so the window is transposed by the
input adapter), and with `--templates` kiloml's cnn1d template (slow: it trains 60
epochs). Results: bench/results/float_import.json and float_import.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))
F32 = np.float32

SKLEARN_SCRIPT = """
import sys, numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skl2onnx import to_onnx
d = np.load(sys.argv[1]); out = sys.argv[2]
x, y, tr = d["x"].astype(np.float32), d["y"], d["train"]
for name, make in (("raw", lambda: MLPClassifier((32, 16), max_iter=300, random_state=0)),
                   ("scaled", lambda: make_pipeline(StandardScaler(), MLPClassifier(
                       (32, 16), max_iter=300, random_state=0)))):
    m = make().fit(x[tr], y[tr])
    last = m if name == "raw" else m[-1]
    onx = to_onnx(m, x[:1], options={id(last): {"zipmap": False}}, target_opset=13)
    open(f"{out}/mlp_sklearn_{name}.onnx", "wb").write(onx.SerializeToString())
"""


def watch(toml: str):
    from kiloml.families import family_for
    from kiloml.prepare import prepare_data
    from kiloml.project import load_project

    project = load_project(ROOT / "examples" / "watch" / toml)
    _, _, pipeline, windows, split = prepare_data(project, announce=False)
    x = family_for(project).model_inputs(pipeline, windows, split).x
    return np.asarray(x, F32), windows.y, windows.group, split.train, split.test, project


def train_torch(module, x, y, epochs: int, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, weight_decay=1e-4)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(xt[b]), yt[b]).backward()
            opt.step()
    return module.eval()


def export(module, example, path: Path) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.tensor(example),), str(path))  # the defaults
    return path


def torch_mlps(x, y, tr, folder: Path, epochs: int) -> dict[str, Path]:
    import torch
    from torch import nn

    mean = torch.tensor(x[tr].mean(0))
    std = torch.tensor(x[tr].std(0) + 1e-6)

    class Standardize(nn.Module):
        def forward(self, v):
            return (v - mean) / std

    out = {}
    for name, first in (("raw", []), ("scaler inside", [Standardize()])):
        torch.manual_seed(0)
        net = nn.Sequential(*first, nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, 16),
                            nn.ReLU(), nn.Linear(16, 7))
        train_torch(net, x[tr], y[tr], epochs)
        out[f"PyTorch MLP, {name}"] = export(net, x[:1], folder / f"mlp_torch_{len(out)}.onnx")
    return out


def measure(label: str, model, x, y) -> dict:
    f = model.predict_proba_float(x)
    q = model.predict(x)
    fa, qa = float(np.mean(f.argmax(1) == y)), float(np.mean(q == y))
    row = {"model": label, "float_accuracy": round(fa, 4), "int8_accuracy": round(qa, 4),
           "int8_minus_float_points": round(100 * (qa - fa), 2),
           "int8_float_agreement": round(float(np.mean(f.argmax(1) == q)), 4)}
    print(f"{label:<58} float {fa:.4f}  int8 {qa:.4f}  {100 * (qa - fa):+.2f} points  "
          f"agreement {row['int8_float_agreement']:.4f}", flush=True)
    return row


def imported(path: Path, shape, x, y, g, tr, **settings):
    from kiloml.models.neural import NeuralModel
    from kiloml.project import NeuralModelConfig

    cfg = NeuralModelConfig(kind="imported", path=str(path), **settings)
    model = NeuralModel(cfg, 7, shape, path)
    model.fit(x[tr], y[tr], g[tr], progress=False)
    return model


def diagnostics(name: str, path: Path, x, y, g, tr, te) -> list[dict]:
    """Where the loss comes from, without standardization."""
    import kiloml.nn.quantize as quantize
    from kiloml.nn.reference import Interpreter

    rows = []
    base = imported(path, (x.shape[1],), x, y, g, tr, input_scaling="none")
    q = base.graph.input_tensors[0].quant
    xr = ((np.clip(np.round(x[te] / q.s) + q.zp, -128, 127) - q.zp) * q.s).astype(F32)
    p = Interpreter(base.float_graph).run([xr])[0].reshape(len(xr), -1)
    spread = np.ptp(x[tr], axis=0) / q.s
    rows.append({"model": f"{name}: the float model on the int8-rounded input only",
                 "float_accuracy": None, "int8_accuracy": round(float(np.mean(
                     p.argmax(1) == y[te])), 4),
                 "note": f"input scale {q.s:.4g}: the features get {spread.min():.1f} to "
                         f"{spread.max():.0f} int8 levels"})
    print(f"{rows[-1]['model']:<58} {rows[-1]['int8_accuracy']:.4f} ({rows[-1]['note']})")
    rows.append(measure(f"{name}: none, calibration on every training window",
                        imported(path, (x.shape[1],), x, y, g, tr, input_scaling="none",
                                 calibration_windows=len(tr)), x[te], y[te]))
    rows.append(measure(f"{name}: none, mse calibration",
                        imported(path, (x.shape[1],), x, y, g, tr, input_scaling="none",
                                 calibration="mse"), x[te], y[te]))
    original = quantize.quantize_weights
    quantize.quantize_weights = lambda w, axis: original(
        w, 0 if axis is None and w.ndim == 2 else axis)  # diagnostic only: not TFLite-spec
    try:
        rows.append(measure(f"{name}: none, per-output-channel FC weights",
                            imported(path, (x.shape[1],), x, y, g, tr, input_scaling="none"),
                            x[te], y[te]))
    finally:
        quantize.quantize_weights = original
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--converter-python", help="a Python with scikit-learn and skl2onnx")
    ap.add_argument("--cnn", action="store_true", help="also a 1-D CNN on the raw windows")
    ap.add_argument("--templates", action="store_true",
                    help="also kiloml's cnn1d template (trains 60 epochs)")
    ap.add_argument("--epochs", type=int, default=150, help="PyTorch MLP epochs")
    args = ap.parse_args()

    from kiloml.models.neural import NeuralModel
    from kiloml.project import NeuralModelConfig

    rows: list[dict] = []
    x, y, g, tr, te, _ = watch("kiloml.toml")
    print(f"watch statistics: {x.shape[1]} features, {len(tr)} training and {len(te)} "
          f"held-out windows; feature spreads {np.ptp(x[tr], axis=0).min():.3g} to "
          f"{np.ptp(x[tr], axis=0).max():.3g}")
    with tempfile.TemporaryDirectory(prefix="kiloml-float-import-") as tmp:
        folder = Path(tmp)
        models = torch_mlps(x, y, tr, folder, args.epochs)
        if args.converter_python:
            np.savez(folder / "features.npz", x=x, y=y, train=tr)
            subprocess.run([args.converter_python, "-c", SKLEARN_SCRIPT,
                            str(folder / "features.npz"), str(folder)], check=True)
            models["scikit-learn MLPClassifier, raw (skl2onnx)"] = \
                folder / "mlp_sklearn_raw.onnx"
            models["scikit-learn StandardScaler + MLPClassifier (skl2onnx)"] = \
                folder / "mlp_sklearn_scaled.onnx"
        for name, path in models.items():
            for scaling, when in (("none", "before"), ("standardize", "after")):
                model = imported(path, (x.shape[1],), x, y, g, tr, input_scaling=scaling)
                row = measure(f"{name} [{when}: input_scaling = {scaling}]", model, x[te],
                              y[te])
                row.update(kind="imported MLP", input_scaling=scaling)
                rows.append(row)
        template = NeuralModel(NeuralModelConfig(kind="mlp", hidden=[32, 16]), 7,
                               (x.shape[1],))
        template.fit(x[tr], y[tr], g[tr], progress=False)
        rows.append({**measure("kiloml mlp template [32, 16]", template, x[te], y[te]),
                     "kind": "template"})
        worst = list(models.items())[-1]
        rows += [{**r, "kind": "diagnostic"} for r in diagnostics(worst[0], worst[1], x, y, g,
                                                                  tr, te)]
        if args.cnn:
            rows += cnn_rows(folder, args.templates)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "float_import.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["# Float networks imported into a project: float vs int8 (watch, held-out "
             "subjects 9 and 10)", "",
             f"Made by `python bench/float_import.py {' '.join(sys.argv[1:])}` (see its "
             "docstring); before = kiloml without the input standardization "
             "(`input_scaling = \"none\"`), after = the default.",
             "", "| model | float | int8 | int8 - float (points) | int8/float agreement |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        fa = "" if r.get("float_accuracy") is None else f"{r['float_accuracy']:.4f}"
        lines.append(f"| {r['model']}{' (' + r['note'] + ')' if r.get('note') else ''} | "
                     f"{fa} | {r['int8_accuracy']:.4f} | "
                     f"{r.get('int8_minus_float_points', '')} | "
                     f"{r.get('int8_float_agreement', '')} |")
    (RESULTS / "float_import.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'float_import.md'}")


def cnn_rows(folder: Path, templates: bool) -> list[dict]:
    import torch
    from torch import nn

    from kiloml.models.neural import NeuralModel

    x, y, g, tr, te, project = watch("cnn1d.toml")  # [N, 200, 6] raw windows
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(6, 16, 5, stride=2, padding=2), nn.ReLU(),
                        nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(),
                        nn.Conv1d(32, 32, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                        nn.Flatten(), nn.Linear(32, 7))
    channels_first = np.ascontiguousarray(x.transpose(0, 2, 1))
    train_torch(net, channels_first[tr], y[tr], 40)
    path = export(net, channels_first[:1], folder / "cnn1d_torch.onnx")
    rows = []
    for scaling, when in (("none", "before"), ("standardize", "after")):
        model = imported(path, (200, 6), x, y, g, tr, input="window", input_scaling=scaling)
        rows.append({**measure(f"PyTorch cnn1d [16, 32, 32] on raw windows [{when}: "
                               f"input_scaling = {scaling}]", model, x[te], y[te]),
                     "kind": "imported CNN", "input_scaling": scaling})
    if templates:
        model = NeuralModel(project.config.model, 7, (200, 6))
        model.fit(x[tr], y[tr], g[tr], progress=False)
        rows.append({**measure("kiloml cnn1d template [16, 32, 32]", model, x[te], y[te]),
                     "kind": "template"})
    return rows


if __name__ == "__main__":
    main()
