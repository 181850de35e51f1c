"""kiloml.convert on models trained outside kiloml, on real data (seglearn's watch set:
6-axis IMU, 7 exercises, 10 subjects; subjects 9 and 10 held out), each verified on the
host and in QEMU on a Cortex-M4F with its resources.

    .venv/bin/python examples/python-api/convert_models.py [--out results.json]

Models: a RandomForest, a LogisticRegression, a LinearSVC and a RidgeClassifier on
window statistics (the linear models on standardized statistics), an MLPClassifier
(int8 from calibration data), and a PyTorch 1-D CNN on the raw windows [N, C, T]
(exported through ONNX, int8). Prints accuracy (float vs int8 for the networks), parity
counts per place and the measured flash, RAM, stack and instructions."""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import kiloml

HERE = Path(__file__).resolve().parent
WATCH = HERE.parent / "watch" / "kiloml.toml"


def watch_data():
    """Windows [N, T, C], their statistics [N, F], labels and the held-out mask."""
    from kiloml.families import family_for
    from kiloml.prepare import prepare_data
    from kiloml.project import load_project

    project = load_project(WATCH)
    _, _, pipeline, windows, split = prepare_data(project, announce=False)
    inputs = family_for(project).model_inputs(pipeline, windows, split)
    test = np.zeros(len(windows), bool)
    test[split.test] = True
    return windows.x, inputs.features, windows.y, test, windows.class_names


def torch_cnn(x_train: np.ndarray, y_train: np.ndarray, n_classes: int, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    channels = x_train.shape[1]
    model = torch.nn.Sequential(
        torch.nn.Conv1d(channels, 16, 7, stride=2, padding=3), torch.nn.ReLU(),
        torch.nn.Conv1d(16, 32, 5, stride=2, padding=2), torch.nn.ReLU(),
        torch.nn.Conv1d(32, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(), torch.nn.Linear(32, n_classes))
    opt = torch.optim.Adam(model.parameters(), 3e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(40):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def show(name: str, lib, x_test, y_test, float_labels=None) -> dict:
    started = time.time()
    figures = lib.verify(x_test)
    res = figures["resources"][lib.target]
    row = {"model": name, "source": lib.source, "n": figures["n"],
           "accuracy_int8_or_exact": float(np.mean(lib.predict(x_test) == y_test)),
           "parity": {place: f"{p['decisions_equal']}/{p['n']}"
                      for place, p in figures["parity"].items()},
           "streaming": {place: p["streaming"]["all_decisions_equal"]
                         for place, p in figures["parity"].items()},
           "kml_predict": figures["parity"]["host"].get("kml_predict", {}).get(
               "decisions_equal"),
           "resources": {k: res[k] for k in ("flash_bytes", "ram_bytes", "stack_bytes",
                                            "instructions_per_inference", "latency_us",
                                            "measured_on")},
           "estimate": {k: figures["estimates"][lib.target][k] for k in
                        ("flash_bytes", "ram_bytes", "instructions_per_inference")},
           "ok": figures["ok"], "verify_seconds": round(time.time() - started, 1)}
    if float_labels is not None:
        row["accuracy_float"] = float(np.mean(float_labels == y_test))
    print(json.dumps(row))
    return row


def main() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import LinearSVC

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    windows, stats, y, test, classes = watch_data()
    train = ~test
    mean, std = stats[train].mean(0), stats[train].std(0) + 1e-6
    scaled = ((stats - mean) / std).astype(np.float32)
    rows = []
    forest = RandomForestClassifier(n_estimators=30, max_depth=10, random_state=0)
    forest.fit(stats[train], y[train])
    rows.append(show("random_forest", kiloml.convert(forest, class_names=classes),
                     stats[test], y[test]))
    for name, est in [("logistic_regression", LogisticRegression(C=1.0, max_iter=2000)),
                      ("linear_svc", LinearSVC(C=0.1)), ("ridge", RidgeClassifier(1.0))]:
        est.fit(scaled[train].astype(np.float64), y[train])
        assert np.array_equal(est.predict(scaled[test]),
                              kiloml.convert(est).predict(scaled[test]))
        rows.append(show(name, kiloml.convert(est, class_names=classes), scaled[test],
                         y[test]))
    mlp = MLPClassifier((64, 32), max_iter=600, random_state=0).fit(scaled[train], y[train])
    lib = kiloml.convert(mlp, calibration=scaled[train][::4], class_names=classes)
    rows.append(show("mlp_classifier", lib, scaled[test], y[test],
                     lib.float_predict(scaled[test])))
    cf = np.ascontiguousarray(windows.transpose(0, 2, 1))  # PyTorch's [N, C, T]
    cnn = torch_cnn(cf[train], y[train], len(classes))
    lib = kiloml.convert(cnn, calibration=cf[train][::8], class_names=classes, name="cnn1d")
    rows.append(show("torch_cnn1d", lib, cf[test], y[test], lib.float_predict(cf[test])))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
