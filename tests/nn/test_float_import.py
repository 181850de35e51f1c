"""Float networks in a project: input layouts matched to the windows, per-channel input
standardization folded into the first layer, torch.onnx.export's defaults, and the
converter-made CNN fixtures end to end (host and QEMU parity)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from kiloml.models.neural import NeuralModel
from kiloml.nn.graph import Graph, Tensor
from kiloml.nn.input_layout import InputMismatch, candidate_layouts, match_input
from kiloml.nn.input_scaling import channel_statistics, fold_standardization
from kiloml.nn.load import load_model
from kiloml.nn.onnx_import import onnx_input_layout
from kiloml.nn.reference import Interpreter
from kiloml.nn.tflite_io import write_tflite
from kiloml.project import NeuralModelConfig
from tests.conftest import assert_user_error, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
RATE_HZ = 50
N_CLASSES = 7  # the CNN fixtures' outputs
CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz")


# ---- a 6-channel CSV project with 128-sample windows -----------------------------------

def write_imu_project(root: Path, model_toml: str, seconds: float = 8.0) -> Path:
    """Seven classes x three subjects, 6 channels at 50 Hz (channels with different
    offsets and spreads, like accelerometer and gyroscope axes); windows of 128 samples."""
    seed = 0
    for k in range(N_CLASSES):
        for subject in ("s1", "s2", "s3"):
            rng = np.random.default_rng(seed)
            seed += 1
            t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
            base = np.sin(2 * np.pi * (k + 0.5) * t)
            cols = [t] + [(c + 1) * (base + 0.3 * rng.standard_normal(len(t))) + 2 * c
                          for c in range(len(CHANNELS))]
            path = root / "data" / f"c{k}" / f"{subject}_rec.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = np.column_stack(cols)
            path.write_text("t," + ",".join(CHANNELS) + "\n" + "\n".join(
                ",".join(f"{v:.6f}" for v in row) for row in rows) + "\n")
    toml = root / "kiloml.toml"
    toml.write_text(f'''name = "imu"

[data]
source = "csv"
path = "data"
sample_rate_hz = {RATE_HZ}
timestamp_column = "t"
label_from_folder = true
group_pattern = "(?P<group>s\\\\d+)_"

[window]
window_ms = 2560
stride_ms = 1280

{model_toml}
[evaluation]
test_groups = ["s3"]
cv_folds = 0

[target]
name = "cortex-m4f"

[output]
dir = "out"
''')
    return toml


def metrics(root: Path) -> dict:
    return json.loads((root / "out" / "metrics.json").read_text())


@pytest.mark.parametrize("fixture, declared, layout", [
    ("cnn1d_torch.onnx", [1, 6, 128], "channels_first"),   # PyTorch Conv1d: [N, C, T]
    ("cnn1d_keras.onnx", [1, 128, 6], "channels_last"),    # tf2onnx of Keras: [N, T, C]
])
def test_converter_cnn_fixtures_run_in_a_project(tmp_path: Path, fixture: str,
                                                 declared: list[int], layout: str) -> None:
    (tmp_path / fixture).write_bytes((FIXTURES / fixture).read_bytes())
    toml = write_imu_project(tmp_path, f'[model]\nkind = "imported"\npath = "{fixture}"\n'
                                       'input = "window"\n')
    result = run_cli("run", str(toml))
    assert result.exit_code == 0, result.stderr
    m = metrics(tmp_path)
    model = m["model"]
    assert model["input_shape"] == [128, 6]
    assert model["input_layout"] == {"model_input_shape": declared, "reads": layout,
                                     "from_setting": False}
    # float model: calibrated on the training windows, standardized per channel (scale
    # only: the first convolution pads its input)
    assert model["calibration"] == "minmax"
    assert len(model["input_standardization"]["std"]) == 6
    assert any("scale only" in note for note in model["import_notes"])
    n = m["neural"]
    assert n["float_accuracy"] is not None and n["tflm_parity"]["all_bit_exact"]
    assert n["tflm_parity"]["n"] == m["evaluation"]["n_test_windows"] > 0
    for where in ("host", "cortex-m4f"):
        p = m["parity"][where]
        assert p["all_decisions_equal"] and p["max_abs_score_diff"] == 0.0, where
        assert p["streaming"]["all_decisions_equal"], where
    # the shipped int8 model reads the window as the project computes it
    graph = load_model(tmp_path / "out" / "model.tflite")
    assert graph.input_tensors[0].shape == (1, 128, 6)
    assert graph.ops[0].kind == "RESHAPE"  # [1, 128, 6] -> the network's [1, 1, 128, 6]


def test_imported_float_model_matches_the_onnx_model_on_the_windows(tmp_path: Path) -> None:
    """What the project computes (standardized window -> adapted, folded float graph) is
    what onnxruntime computes on the window laid out as the ONNX model declares it."""
    ort = pytest.importorskip("onnxruntime")
    path = FIXTURES / "cnn1d_torch.onnx"
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((40, 128, 6)) * np.arange(1, 7) + np.arange(6) * 2).astype(
        np.float32)
    model = NeuralModel(NeuralModelConfig(kind="imported", path=str(path), input="window"),
                        N_CLASSES, (128, 6), path)
    model.fit(x, np.zeros(len(x), int), np.array(["g"] * len(x)), progress=False)
    assert model.input_mean is not None and np.all(model.input_mean == 0)  # scale only
    got = model.predict_proba_float(x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": np.ascontiguousarray(x.transpose(0, 2, 1))})[0]
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


# ---- the input's shape against the samples ---------------------------------------------

@pytest.mark.parametrize("declared, fits", [
    ((1, 128, 6), ["channels_last"]),
    ((1, 1, 128, 6), ["channels_last"]),
    ((1, 128, 1, 6), ["channels_last"]),
    ((1, 6, 128), ["channels_first"]),
    ((1, 6, 128, 1), ["channels_first"]),     # NCHW image of one row per channel
    ((1, 6, 1, 128), ["channels_first"]),
    ((1, 768), ["channels_last", "channels_first"]),   # flattened: the shape cannot tell
    ((1, 100, 6), []),
    ((1, 128, 3), []),
])
def test_candidate_layouts(declared: tuple[int, ...], fits: list[str]) -> None:
    assert candidate_layouts(declared, (128, 6)) == fits


def test_square_windows_and_single_channel() -> None:
    assert candidate_layouts((1, 6, 6), (6, 6)) == ["channels_last", "channels_first"]
    assert candidate_layouts((1, 1, 40), (40, 1)) == ["channels_last"]  # one order only
    assert candidate_layouts((1, 24), (24,)) == ["channels_last"]
    assert candidate_layouts((1, 4, 6), (24,)) == []


def dense_model(n_in: int, n_classes: int, seed: int = 0, shape=None) -> Graph:
    """A float FULLY_CONNECTED + SOFTMAX graph on an input of ``shape`` (n_in values)."""
    rng = np.random.default_rng(seed)
    g = Graph([], [], [], [], name="dense")
    shape = shape or (1, n_in)
    x = g.add_tensor(Tensor("x", shape, "float32"))
    src = x
    if len(shape) != 2:
        flat = g.add_tensor(Tensor("flat", (1, n_in), "float32"))
        target = g.add_tensor(Tensor("flat/shape", (2,), "int32", data=np.array([1, n_in])))
        g.add_op("RESHAPE", [x, target], [flat])
        src = flat
    w = g.add_tensor(Tensor("w", (n_classes, n_in), "float32",
                            data=rng.normal(size=(n_classes, n_in))))
    b = g.add_tensor(Tensor("b", (n_classes,), "float32", data=rng.normal(size=n_classes)))
    h = g.add_tensor(Tensor("logits", (1, n_classes), "float32"))
    g.add_op("FULLY_CONNECTED", [src, w, b], [h])
    y = g.add_tensor(Tensor("p", (1, n_classes), "float32"))
    g.add_op("SOFTMAX", [h], [y])
    g.inputs, g.outputs = [x], [y]
    return g


def run(graph: Graph, x: np.ndarray) -> np.ndarray:
    return Interpreter(graph).run([np.asarray(x, np.float32)])[0]


@pytest.mark.parametrize("declared, setting", [
    ((1, 6, 20), None), ((1, 20, 6), None), ((1, 1, 20, 6), None), ((1, 6, 20, 1), None),
    ((1, 120), "channels_last"), ((1, 120), "channels_first"),
])
def test_matched_input_reads_the_window_in_the_declared_order(declared, setting) -> None:
    g = dense_model(120, 3, shape=declared)
    adapted, match = match_input(g, (20, 6), what="windows", setting=setting)
    assert adapted.input_tensors[0].shape == (1, 20, 6)
    assert adapted.input_tensors[0].name == "x"
    windows = np.random.default_rng(1).standard_normal((5, 20, 6)).astype(np.float32)
    layout = match.layout
    as_declared = windows.transpose(0, 2, 1) if layout == "channels_first" else windows
    want = run(g, np.ascontiguousarray(as_declared).reshape(5, *declared[1:]))
    np.testing.assert_array_equal(run(adapted, windows), want)


def test_input_that_cannot_be_matched_names_both_shapes_and_the_setting() -> None:
    with pytest.raises(InputMismatch) as info:
        match_input(dense_model(120, 3, shape=(1, 120)), (20, 6), what="windows")
    text = str(info.value)
    assert "model input 'x' has shape [1, 120]" in text and "are [1, 20, 6]" in text
    assert "[20, 6] (channels last)" in text and "[6, 20] (channels first)" in text
    assert "[model] input_layout = 'channels_last' or 'channels_first'" in text
    with pytest.raises(InputMismatch) as info:
        match_input(dense_model(120, 3, shape=(1, 20, 6)), (20, 6), what="windows",
                    setting="channels_first")
    assert "input_layout = 'channels_first' reads them as [6, 20]" in str(info.value)
    assert "set [model] input_layout = 'channels_last' or remove it" in str(info.value)
    with pytest.raises(InputMismatch) as info:
        match_input(dense_model(100 * 6, 3, shape=(1, 100, 6)), (128, 6), what="windows")
    assert "has shape [1, 100, 6]" in str(info.value) and "[1, 128, 6]" in str(info.value)
    assert "[window] window_ms" in str(info.value)


def test_ambiguous_input_in_a_project_then_resolved_by_the_setting(tmp_path: Path) -> None:
    """A float model on the flattened window [1, 768]: T-major or channel-major? One line
    naming both shapes and the setting; with the setting, the run (host and QEMU)."""
    (tmp_path / "flat.tflite").write_bytes(write_tflite(dense_model(768, N_CLASSES)))
    toml = write_imu_project(tmp_path, '[model]\nkind = "imported"\npath = "flat.tflite"\n'
                                       'input = "window"\n')
    assert_user_error(run_cli("run", str(toml)), "flat.tflite",
                      "model input 'x' has shape [1, 768]",
                      "windows [samples, channels] are [1, 128, 6]",
                      "[model] input_layout = 'channels_last' or 'channels_first'")
    assert not (tmp_path / "out").exists()
    toml.write_text(toml.read_text().replace('input = "window"\n', 'input = "window"\n'
                                             'input_layout = "channels_first"\n'))
    result = run_cli("run", str(toml))
    assert result.exit_code == 0, result.stderr
    m = metrics(tmp_path)
    assert m["model"]["input_layout"]["reads"] == "channels_first"
    assert m["model"]["input_layout"]["from_setting"]
    assert [op.kind for op in load_model(tmp_path / "out" / "model.tflite").ops][:2] == \
        ["TRANSPOSE", "RESHAPE"]
    for where in ("host", "cortex-m4f"):
        assert m["parity"][where]["all_decisions_equal"], where
    assert m["neural"]["tflm_parity"]["all_bit_exact"]


def test_a_model_on_windows_in_a_features_project_is_told_to_read_windows(
        tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes((FIXTURES / "cnn1d_torch.onnx").read_bytes())
    toml = write_imu_project(tmp_path, '[[features]]\nstage = "statistics"\n\n[model]\n'
                                       'kind = "imported"\npath = "m.onnx"\n')
    assert_user_error(run_cli("run", str(toml)), "m.onnx", "has shape [1, 6, 128]",
                      "the project's features are", "set [model] input = 'window'")


def test_layout_settings_are_for_imported_models_only(tmp_path: Path) -> None:
    toml = write_imu_project(tmp_path, '[model]\nkind = "cnn1d"\ninput_layout = '
                                       '"channels_first"\n')
    assert_user_error(run_cli("run", str(toml)), "kiloml.toml",
                      "input_layout is only for kind = 'imported'")


# ---- input standardization folded into the first layer ---------------------------------

def conv_model(padding: str, depthwise: bool = False, transpose_first: bool = False) -> Graph:
    """[1, 20, 6] window -> (TRANSPOSE) -> RESHAPE [1, 1, 20, 6] -> conv -> MEAN -> FC."""
    rng = np.random.default_rng(5)
    g = Graph([], [], [], [], name="conv")
    shape = (1, 6, 20) if transpose_first else (1, 20, 6)
    x = g.add_tensor(Tensor("x", shape, "float32"))
    src = x
    if transpose_first:
        t = g.add_tensor(Tensor("t", (1, 20, 6), "float32"))
        perm = g.add_tensor(Tensor("perm", (3,), "int32", data=np.array([0, 2, 1])))
        g.add_op("TRANSPOSE", [x, perm], [t])
        src = t
    r = g.add_tensor(Tensor("r", (1, 1, 20, 6), "float32"))
    target = g.add_tensor(Tensor("r/shape", (4,), "int32", data=np.array([1, 1, 20, 6])))
    g.add_op("RESHAPE", [src, target], [r])
    out_c = 6 if depthwise else 8
    kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    w_shape = (1, 1, 5, 6) if depthwise else (8, 1, 5, 6)
    w = g.add_tensor(Tensor("w", w_shape, "float32", data=rng.normal(size=w_shape)))
    b = g.add_tensor(Tensor("b", (out_c,), "float32", data=rng.normal(size=out_c)))
    width = 20 if padding == "SAME" else 16
    c = g.add_tensor(Tensor("c", (1, 1, width, out_c), "float32"))
    g.add_op(kind, [r, w, b], [c], padding=padding, fused_activation="RELU")
    axes = g.add_tensor(Tensor("axes", (2,), "int32", data=np.array([1, 2])))
    m = g.add_tensor(Tensor("m", (1, out_c), "float32"))
    g.add_op("MEAN", [c, axes], [m])
    w2 = g.add_tensor(Tensor("w2", (3, out_c), "float32", data=rng.normal(size=(3, out_c))))
    y = g.add_tensor(Tensor("y", (1, 3), "float32"))
    g.add_op("FULLY_CONNECTED", [m, w2, -1], [y])
    g.inputs, g.outputs = [x], [y]
    return g


@pytest.mark.parametrize("graph, centered", [
    (dense_model(60, 7), True),
    (dense_model(120, 3, shape=(1, 20, 6)), True),   # FC on the flattened window
    (conv_model("VALID"), True),
    (conv_model("SAME"), False),                     # padded zeros: scale only
    (conv_model("VALID", depthwise=True), True),
    # a channels-first model behind match_input's TRANSPOSE: traced through both
    (match_input(conv_model("VALID", transpose_first=True), (20, 6), what="windows")[0], True),
])
def test_standardization_folds_exactly(graph: Graph, centered: bool) -> None:
    shape = graph.input_tensors[0].shape[1:]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, *shape)) * 5.0 + 40.0
    if len(shape) == 2:  # channels of very different offsets and spreads
        k = shape[-1]
        x = rng.standard_normal((64, *shape)) * np.geomspace(0.01, 50, k) + np.arange(k) * 9
    x = x.astype(np.float32)
    mean, std = channel_statistics(x)
    folded = fold_standardization(graph, mean, std)
    assert folded is not None and folded.centered == centered
    if not centered:
        assert np.all(folded.mean == 0)
    xs = ((x - folded.mean) / folded.std).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want, got = run(graph, x), run(folded.graph, xs)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_standardization_is_not_folded_past_other_operators() -> None:
    g = dense_model(6, 3)
    one = g.add_tensor(Tensor("one", (1, 6), "float32", data=np.ones((1, 6))))
    shifted = g.add_tensor(Tensor("shifted", (1, 6), "float32"))
    x = g.inputs[0]
    g.ops[0].inputs[0] = shifted
    g.add_op("ADD", [x, one], [shifted])
    g.ops.insert(0, g.ops.pop())
    assert fold_standardization(g, np.zeros(6), np.ones(6)) is None


def test_torch_onnx_export_defaults_import(tmp_path: Path) -> None:
    """torch.onnx.export with no options (the dynamo exporter, weights in model.onnx.data
    beside the model) imports and computes what the module computes."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv1d(6, 8, 5, stride=2, padding=2),
                                 torch.nn.ReLU(), torch.nn.AdaptiveAvgPool1d(1),
                                 torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    x = torch.randn(3, 6, 32)
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x[:1],), str(path))
    assert any(p.name != "net.onnx" for p in tmp_path.iterdir())  # the external data file
    graph = load_model(path)
    layout = onnx_input_layout(graph)[0]
    adapted, match = match_input(graph, (32, 6), what="windows",
                                 declared_shape=layout.onnx_shape, to_ir=layout.to_ir)
    assert match.layout == "channels_first"
    windows = x.numpy().transpose(0, 2, 1).copy()
    got = run(adapted, windows)
    want = module(x).detach().numpy()
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))


def test_imported_mlp_on_features_of_different_ranges_keeps_its_accuracy_in_int8(
        tmp_path: Path) -> None:
    """The cause of the 4-6 points imported MLPs lost: features whose ranges differ by
    orders of magnitude under the input's one int8 scale (here the informative ones span
    0.2 beside noise spanning 200). A PyTorch MLP with its scaler inside (folded into the
    first layer at import, so the ONNX model reads raw features), exported with the
    defaults: without standardization int8 loses most of what float knows; with it (the
    default) at most 1 point, as kiloml's own templates."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    rng = np.random.default_rng(0)
    n, k = 1200, 3
    y = rng.integers(0, k, n)
    centers = rng.normal(size=(k, 4)) * 0.05
    informative = centers[y] + rng.normal(size=(n, 4)) * 0.02
    noise = 100 + 50 * rng.normal(size=(n, 4))
    x = np.concatenate([informative, noise], axis=1).astype(np.float32)
    train, test = np.arange(0, 900), np.arange(900, n)
    mean, std = x[train].mean(0), x[train].std(0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, k))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xs = torch.tensor((x[train] - mean) / std)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xs), torch.tensor(y[train])).backward()
        opt.step()

    class Scaled(torch.nn.Module):  # the user's model: its standardization inside
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("m", torch.tensor(mean))
            self.register_buffer("s", torch.tensor(std))
            self.net = net

        def forward(self, v):
            return self.net((v - self.m) / self.s)

    path = tmp_path / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Scaled().eval(), (torch.tensor(x[:1]),), str(path))
    points = {}
    for scaling in ("none", "standardize"):
        cfg = NeuralModelConfig(kind="imported", path=str(path), input_scaling=scaling)
        model = NeuralModel(cfg, k, (8,), path)
        model.fit(x[train], y[train], np.array(["g"] * len(train)), progress=False)
        float_acc = float(np.mean(model.predict_proba_float(x[test]).argmax(1) == y[test]))
        int8_acc = float(np.mean(model.predict(x[test]) == y[test]))
        assert float_acc > 0.9, scaling
        points[scaling] = 100 * (int8_acc - float_acc)
    assert points["standardize"] >= -1.0, points
    assert points["none"] < -10.0, points  # the mechanism, shown: one scale for all inputs
