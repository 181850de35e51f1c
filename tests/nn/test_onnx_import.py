"""ONNX import: every model must compute, through the reference interpreter, what
onnxruntime computes on the same inputs (permuted to the IR layout).

PyTorch models are exported with the TorchScript exporter (``dynamo=False``:
the dynamo exporter needs onnxscript, which is not installed); the tf2onnx-style
and skl2onnx-style graphs are written with ``onnx.helper``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from kiloml.errors import KilomlError  # noqa: E402
from kiloml.nn.analysis import validate  # noqa: E402
from kiloml.nn.graph import Graph  # noqa: E402
from kiloml.nn.onnx_import import (  # noqa: E402
    onnx_input_layout,
    onnx_output_layout,
    read_onnx,
)
from kiloml.nn.reference import run_graph  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
RNG = np.random.default_rng(7)


# ---- helpers -------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _export(tmp_path: Path, model, shapes: Sequence[tuple[int, ...]], name: str = "m",
            preserve_bn: bool = False) -> Path:
    """Export with the TorchScript exporter, a dynamic batch axis, batch-1 example inputs."""
    torch = _torch()
    torch.manual_seed(0)
    model.eval()
    path = tmp_path / f"{name}.onnx"
    names = [f"input{i}" for i in range(len(shapes))]
    kwargs = {"training": torch.onnx.TrainingMode.PRESERVE} if preserve_bn else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(torch.randn(*s) for s in shapes), str(path),
                          dynamo=False, input_names=names,
                          dynamic_axes={n: {0: "batch"} for n in names}, **kwargs)
    return path


def _save(tmp_path: Path, nodes: list, inputs: list, outputs: list, inits: Sequence = (),
          opset: int = 17, name: str = "m", ml: bool = False) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    opsets = [helper.make_opsetid("", opset)]
    if ml:
        opsets.append(helper.make_opsetid("ai.onnx.ml", 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="test")
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _init(name: str, value: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _vi(name: str, shape: Sequence[int | str | None], elem: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, list(shape))


def _ort(path: Path, xs: Sequence[np.ndarray]) -> dict[str, object]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(sess.get_inputs(), xs, strict=True)}
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))


def _close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5) -> None:
    want = np.asarray(want, np.float32)
    assert got.shape == want.shape
    scale = max(float(np.abs(want).max()), 1e-3)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def _check(path: Path, shapes: Sequence[tuple[int, ...]], batch: int = 3,
           make: Callable[[tuple[int, ...]], np.ndarray] | None = None) -> Graph:
    """Import, validate, and compare the IR (reference interpreter) with onnxruntime."""
    graph = read_onnx(path)
    validate(graph)
    assert all(t.dtype in ("float32", "int32") and t.quant is None for t in graph.tensors)
    make = make or (lambda s: RNG.standard_normal(s).astype(np.float32))
    xs = [make((batch, *s[1:])) for s in shapes]
    want = _ort(path, xs)
    ins = [lay.to_ir(x) for lay, x in zip(onnx_input_layout(graph), xs, strict=True)]
    for t, x in zip(graph.input_tensors, ins, strict=True):
        assert x.shape[1:] == t.shape[1:]
    got = run_graph(graph, ins)
    layouts = onnx_output_layout(graph)
    assert len(layouts) == len(got) >= 1
    for lay, y in zip(layouts, got, strict=True):
        ref = want[lay.name]
        if isinstance(ref, list):  # a ZipMap output: list of {label: probability}
            ref = np.array([[d[k] for k in sorted(d)] for d in ref], np.float32)
        _close(lay.from_ir(y), ref)
    return graph


def _kinds(graph: Graph) -> list[str]:
    return [op.kind for op in graph.ops]


def _fused(graph: Graph) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for op in graph.ops:
        out.setdefault(op.kind, []).append(str(op.options.get("fused_activation", "")))
    return out


# ---- PyTorch models ---------------------------------------------------------------

def test_mlp_with_activations(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(),
                          nn.Linear(12, 8), nn.Hardtanh(), nn.Linear(8, 6), nn.ReLU6(),
                          nn.Linear(6, 3), nn.Sigmoid())
    graph = _check(_export(tmp_path, model, [(1, 10)]), [(1, 10)])
    assert _kinds(graph) == ["FULLY_CONNECTED", "FULLY_CONNECTED", "TANH", "FULLY_CONNECTED",
                             "FULLY_CONNECTED", "FULLY_CONNECTED", "LOGISTIC"]
    assert _fused(graph)["FULLY_CONNECTED"] == ["RELU", "NONE", "RELU_N1_TO_1", "RELU6", "NONE"]
    assert onnx_input_layout(graph)[0].is_identity
    assert graph.input_tensors[0].shape == (1, 10)


def test_conv1d_maxpool_global_average_pool(tmp_path: Path) -> None:
    nn = _torch().nn
    model = nn.Sequential(nn.Conv1d(3, 8, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                          nn.Conv1d(8, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                          nn.Flatten(), nn.Linear(6, 4), nn.Softmax(dim=1))
    graph = _check(_export(tmp_path, model, [(1, 3, 32)]), [(1, 3, 32)])
    assert _kinds(graph) == ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED",
                             "SOFTMAX"]
    assert graph.ops[0].options["padding"] == "SAME"  # pads 2/2 of a 5-tap kernel == SAME
    assert graph.input_tensors[0].shape == (1, 1, 32, 3)  # [N, C, W] -> [N, 1, W, C]
    assert onnx_input_layout(graph)[0].axes == (0, None, 2, 1)


def test_channels_last_input_permuted_in_the_model(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn

    class TimeMajor(nn.Module):  # sensor windows as [N, T, C], permuted for Conv1d
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x.permute(0, 2, 1))).amax(dim=-1))

    graph = _check(_export(tmp_path, TimeMajor(), [(1, 12, 3)]), [(1, 12, 3)])
    assert onnx_input_layout(graph)[0].axes == (0, None, 1, 2)  # [N, T, C] -> [N, 1, T, C]
    assert _kinds(graph) == ["CONV_2D", "REDUCE_MAX", "FULLY_CONNECTED"]


def test_conv1d_flatten_permutes_fc_weights(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(4, 5, 3)
            self.pool = nn.MaxPool1d(2)
            self.fc = nn.Linear(5 * 7, 3)

        def forward(self, x):
            y = self.pool(torch.relu(self.conv(x)))
            y = y.view(y.size(0), -1)  # Shape/Gather/Unsqueeze/Concat: folded to constants
            return torch.softmax(self.fc(y), dim=1)

    model = Net()
    graph = _check(_export(tmp_path, model, [(1, 4, 16)]), [(1, 4, 16)])
    assert _kinds(graph) == ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    # ONNX flattens [C=5, W=7] channel-major, the IR flattens [W, C]: columns are permuted
    fc = graph.ops[3]
    w_ir = graph.tensors[fc.inputs[1]].data
    w = model.fc.weight.detach().numpy()
    order = np.arange(35).reshape(5, 7).T.reshape(-1)
    np.testing.assert_array_equal(w_ir, w[:, order])


def test_conv2d_batchnorm_depthwise_global_pool(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(1)
    bn1, bn2 = nn.BatchNorm2d(8), nn.BatchNorm2d(8)
    for bn in (bn1, bn2):  # non-trivial statistics so folding matters
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), bn1, nn.ReLU(),
                          nn.Conv2d(8, 8, 3, groups=8, padding=1), bn2, nn.ReLU6(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    path = _export(tmp_path, model, [(1, 3, 12, 10)], preserve_bn=True)
    assert "BatchNormalization" in {n.op_type for n in onnx.load(str(path)).graph.node}
    graph = _check(path, [(1, 3, 12, 10)])
    assert _kinds(graph) == ["CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert [op.options["fused_activation"] for op in graph.ops[:2]] == ["RELU", "RELU6"]
    assert graph.ops[0].inputs[2] >= 0  # the folded BatchNorm gave the bias-free conv a bias
    dw = graph.ops[1]
    assert graph.tensors[dw.inputs[1]].shape == (1, 3, 3, 8)
    assert dw.options["depth_multiplier"] == 1 and dw.options["padding"] == "SAME"
    assert graph.input_tensors[0].shape == (1, 12, 10, 3)


def test_depthwise_multiplier_and_grouped_conv(tmp_path: Path) -> None:
    nn = _torch().nn
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=4), nn.ReLU(),
                          nn.Conv2d(8, 6, 1, groups=2), nn.Flatten(), nn.Linear(6 * 4 * 4, 2))
    graph = _check(_export(tmp_path, model, [(1, 4, 6, 6)]), [(1, 4, 6, 6)])
    assert _kinds(graph)[:2] == ["DEPTHWISE_CONV_2D", "CONV_2D"]
    assert graph.ops[0].options["depth_multiplier"] == 2
    assert graph.tensors[graph.ops[1].inputs[1]].shape == (6, 1, 1, 4)  # in_c / groups


def test_residual_add(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(4, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            y = torch.relu(self.b(torch.relu(self.a(x))) + x)
            return self.fc(y.mean(dim=(2, 3)))

    graph = _check(_export(tmp_path, Residual(), [(1, 4, 7, 5)]), [(1, 4, 7, 5)])
    assert _kinds(graph) == ["CONV_2D", "CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"]
    assert _fused(graph)["ADD"] == ["RELU"]


def test_shared_activation_is_not_fused(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 4)

        def forward(self, x):
            y = self.fc(x)
            return torch.relu(y) * y, torch.clamp(y, 0, 6)

    graph = _check(_export(tmp_path, Shared(), [(1, 6)]), [(1, 6)])
    assert sorted(_kinds(graph)) == ["FULLY_CONNECTED", "MUL", "RELU", "RELU6"]
    assert _fused(graph)["FULLY_CONNECTED"] == ["NONE"]


def test_concat_on_channels(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn

    class Branches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(3, 2, 1)
            self.c = nn.Conv2d(6, 5, 3)
            self.pool = nn.AdaptiveMaxPool2d(1)
            self.fc = nn.Linear(5, 3)

        def forward(self, x):
            y = torch.cat([torch.relu(self.a(x)), torch.sigmoid(self.b(x))], dim=1)
            return self.fc(torch.flatten(self.pool(torch.tanh(self.c(y))), 1))

    graph = _check(_export(tmp_path, Branches(), [(1, 3, 8, 8)]), [(1, 3, 8, 8)])
    concat = next(op for op in graph.ops if op.kind == "CONCATENATION")
    assert concat.options["axis"] == 3  # ONNX channel axis 1 -> NHWC axis 3
    assert {"REDUCE_MAX", "MAX_POOL_2D"} & set(_kinds(graph))  # AdaptiveMaxPool2d(1)


def test_concat_of_flattened_features(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 3, 3)
            self.fc = nn.Linear(3 * 8 + 4, 2)

        def forward(self, x, z):
            return self.fc(torch.cat([torch.flatten(self.conv(x), 1), z], dim=1))

    _check(_export(tmp_path, TwoHeads(), [(1, 2, 10), (1, 4)]), [(1, 2, 10), (1, 4)])


def test_padding_variants(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class Pads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv1d(2, 3, 4)
            self.c2 = nn.Conv2d(3, 4, 3, padding=(0, 1), stride=2)
            self.zero = nn.ZeroPad2d((1, 0, 2, 1))
            self.avg_same = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
            self.avg_incl = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True)
            self.max_same = nn.MaxPool2d(3, stride=1, padding=1)

        def forward(self, x, image):
            y = self.c1(F.pad(x, (1, 2)))  # asymmetric 1-D padding before a conv
            z = self.c2(self.zero(image))  # explicit (non-SAME) conv pads and a ZeroPad2d
            return y, self.max_same(self.avg_incl(self.avg_same(z)))

    shapes = [(1, 2, 16), (1, 3, 9, 11)]
    graph = _check(_export(tmp_path, Pads(), shapes), shapes)
    pools = {op.kind + "/" + str(op.options["padding"]) for op in graph.ops
             if op.kind.endswith("POOL_2D")}
    assert pools == {"AVERAGE_POOL_2D/SAME", "AVERAGE_POOL_2D/VALID", "MAX_POOL_2D/SAME"}
    assert _kinds(graph).count("PAD") == 4  # F.pad, ZeroPad2d, conv (0,1)/stride 2, avg_incl
    # conv feature-map outputs stay NHWC; the layout record maps them back
    assert onnx_output_layout(graph)[1].axes == (0, 2, 3, 1)
    assert onnx_output_layout(graph)[0].axes == (0, None, 2, 1)


def test_image_input_flattened_into_mlp(tmp_path: Path) -> None:
    nn = _torch().nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6), nn.ReLU(), nn.Linear(6, 2))
    graph = _check(_export(tmp_path, model, [(1, 3, 4, 5)]), [(1, 3, 4, 5)])
    assert graph.input_tensors[0].shape == (1, 4, 5, 3)
    assert _kinds(graph) == ["RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED"]


def test_flattened_output_records_feature_order(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Sigmoid())
    graph = _check(_export(tmp_path, model, [(1, 2, 6)]), [(1, 2, 6)])
    order = onnx_output_layout(graph)[0].feature_order
    assert order is not None and sorted(order) == list(range(12)) and order != tuple(range(12))


# ---- onnx.helper graphs ----------------------------------------------------------

def test_tf2onnx_style_channels_last_conv1d(tmp_path: Path) -> None:
    """Keras Conv1D via tf2onnx: [N, W, C] input, Unsqueeze + Transpose around each Conv."""
    w = RNG.standard_normal((6, 3, 1, 3)).astype(np.float32)  # Conv2D over [N, C, 1, W]
    fc = RNG.standard_normal((8 * 6, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Unsqueeze", ["x", "ax1"], ["x4"], name="expand"),
        helper.make_node("Transpose", ["x4"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Conv", ["nchw", "w", "b"], ["conv"], kernel_shape=[1, 3],
                         name="conv1d"),
        helper.make_node("Transpose", ["conv"], ["nhwc"], perm=[0, 2, 3, 1], name="to_nhwc"),
        helper.make_node("Squeeze", ["nhwc", "ax1"], ["sq"], name="squeeze"),
        helper.make_node("Relu", ["sq"], ["relu"]),
        helper.make_node("ReduceMax", ["relu"], ["gmax"], axes=[1], keepdims=0),
        helper.make_node("Reshape", ["relu", "flat"], ["flat_out"], name="flatten"),
        helper.make_node("MatMul", ["flat_out", "fc"], ["mm"]),
        helper.make_node("Add", ["mm", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inits = [_init("ax1", np.array([1], np.int64)), _init("w", w),
             _init("b", RNG.standard_normal(6).astype(np.float32)),
             _init("flat", np.array([-1, 48], np.int64)), _init("fc", fc),
             _init("fc_b", RNG.standard_normal(4).astype(np.float32))]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 10, 3])],
                 [_vi("probs", ["N", 4]), _vi("gmax", ["N", 6])], inits, opset=13)
    graph = _check(path, [(1, 10, 3)])
    assert onnx_input_layout(graph)[0].axes == (0, None, 1, 2)  # taken as channels-last
    assert graph.input_tensors[0].shape == (1, 1, 10, 3)
    fcs = [op for op in graph.ops if op.kind == "FULLY_CONNECTED"]
    np.testing.assert_array_equal(graph.tensors[fcs[0].inputs[1]].data, fc.T)  # no permutation
    assert fcs[0].inputs[2] >= 0  # MatMul + Add -> one FC with a bias


def test_tf2onnx_style_transposes_pushed_to_the_input(tmp_path: Path) -> None:
    """tf2onnx's optimizer moves the NWC->NCW Transpose to the input; a computed flatten."""
    bn, bn_inits = _batchnorm_nodes("s2", "bn", 5, "bn_after_pool")
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Unsqueeze", ["t", "ax2"], ["u"]),
        helper.make_node("Conv", ["u", "w"], ["c"], kernel_shape=[1, 3], pads=[0, 1, 0, 1]),
        helper.make_node("Squeeze", ["c", "ax2"], ["s"]),
        helper.make_node("Relu", ["s"], ["r"]),
        helper.make_node("Unsqueeze", ["r", "ax2"], ["u2"]),
        helper.make_node("MaxPool", ["u2"], ["mp"], kernel_shape=[1, 2], strides=[1, 2]),
        helper.make_node("Squeeze", ["mp", "ax2"], ["s2"]),
        *bn,
        helper.make_node("Transpose", ["bn"], ["back"], perm=[0, 2, 1]),
        helper.make_node("Shape", ["back"], ["shp"]),
        helper.make_node("Slice", ["shp", "zero", "one"], ["n"]),
        helper.make_node("Concat", ["n", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["back", "target"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fw"], ["mm"]),
        helper.make_node("Add", ["mm", "fb"], ["logits"]),
        helper.make_node("ReduceMean", ["back"], ["gap"], axes=[1], keepdims=0),
    ]
    inits = [*bn_inits, _init("ax2", np.array([2], np.int64)),
             _init("w", RNG.standard_normal((5, 3, 1, 3)).astype(np.float32)),
             _init("zero", np.array([0], np.int64)), _init("one", np.array([1], np.int64)),
             _init("minus_one", np.array([-1], np.int64)),
             _init("fw", RNG.standard_normal((50, 4)).astype(np.float32)),
             _init("fb", RNG.standard_normal(4).astype(np.float32))]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 20, 3])],
                 [_vi("logits", ["N", 4]), _vi("gap", ["N", 5])], inits, opset=13)
    graph = _check(path, [(1, 20, 3)])
    assert onnx_input_layout(graph)[0].axes == (0, None, 1, 2)
    assert _kinds(graph)[:2] == ["CONV_2D", "MAX_POOL_2D"]


def _batchnorm_nodes(x: str, y: str, c: int, prefix: str) -> tuple[list, list]:
    stats = [RNG.uniform(0.5, 1.5, c), RNG.uniform(-0.5, 0.5, c), RNG.uniform(-1, 1, c),
             RNG.uniform(0.5, 2, c)]
    names = [f"{prefix}_{k}" for k in ("scale", "bias", "mean", "var")]
    node = helper.make_node("BatchNormalization", [x, *names], [y], epsilon=1e-3, name=prefix)
    return [node], [_init(n, s.astype(np.float32)) for n, s in zip(names, stats, strict=True)]


def test_batchnorm_without_producer_becomes_mul_add(tmp_path: Path) -> None:
    bn, inits = _batchnorm_nodes("x", "y", 3, "bn_in")
    nodes = [*bn, helper.make_node("Sigmoid", ["y"], ["out"])]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 3, 5])], [_vi("out", ["N", 3, 5])], inits)
    graph = _check(path, [(1, 3, 5)])
    assert _kinds(graph) == ["MUL", "ADD", "LOGISTIC"]


def test_gemm_attributes_and_constant_arithmetic(tmp_path: Path) -> None:
    w = RNG.standard_normal((5, 4)).astype(np.float32)  # [in, out]: transB = 0
    c = RNG.standard_normal((1, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Sub", ["x", "mu"], ["centred"]),
        helper.make_node("Div", ["centred", "sigma"], ["scaled"]),
        helper.make_node("Gemm", ["scaled", "w", "c"], ["g"], alpha=0.5, beta=2.0),
        helper.make_node("Sub", ["one", "g"], ["neg"]),
        helper.make_node("Clip", ["neg", "lo", "hi"], ["out"]),
        helper.make_node("Mul", ["out", "out"], ["sq"]),
    ]
    inits = [_init("mu", RNG.standard_normal(5).astype(np.float32)),
             _init("sigma", RNG.uniform(0.5, 2, 5).astype(np.float32)), _init("w", w),
             _init("c", c), _init("one", np.array(1.0, np.float32)),
             _init("lo", np.array(-1.0, np.float32)), _init("hi", np.array(1.0, np.float32))]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 5])], [_vi("sq", ["N", 4])], inits)
    graph = _check(path, [(1, 5)])
    assert "FULLY_CONNECTED" in _kinds(graph)


def test_batchnorm1d_folds_into_the_next_linear(tmp_path: Path) -> None:
    torch = _torch()
    nn = torch.nn
    bn = nn.BatchNorm1d(3 * 4 * 4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3)
            self.bn = bn
            self.drop = nn.Dropout(0.3)
            self.fc = nn.Linear(48, 2)

        def forward(self, x):
            y = self.drop(self.bn(torch.flatten(self.conv(x), 1)))
            return torch.softmax(self.fc(y) * 2.0 - 1.0, dim=-1)

    path = _export(tmp_path, Head(), [(1, 2, 6, 6)], preserve_bn=True)
    graph = _check(path, [(1, 2, 6, 6)])
    assert _kinds(graph) == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]


def test_sklearn_scaler_before_mlp(tmp_path: Path) -> None:
    """skl2onnx Pipeline(StandardScaler, MLP): ai.onnx.ml Scaler, then MatMul/Add."""
    nodes = [helper.make_node("Scaler", ["x"], ["scaled"], domain="ai.onnx.ml",
                              offset=[0.5, -1.0, 2.0], scale=[2.0, 0.5, 0.25]),
             helper.make_node("MatMul", ["scaled", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["z"]),
             helper.make_node("Relu", ["z"], ["out"])]
    inits = [_init("w", RNG.standard_normal((3, 4)).astype(np.float32)),
             _init("b", RNG.standard_normal((1, 4)).astype(np.float32))]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 3])], [_vi("out", ["N", 4])], inits, ml=True)
    graph = _check(path, [(1, 3)])
    assert _kinds(graph) == ["FULLY_CONNECTED"]  # the scaler folds into the weights and bias


def test_onnx_helper_conv_pool_variants(tmp_path: Path) -> None:
    """auto_pad SAME_UPPER / VALID, dilation, ceil_mode that does not change the size."""
    w1 = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)
    w2 = RNG.standard_normal((4, 4, 2, 2)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Conv", ["a", "w2"], ["b"], auto_pad="VALID", dilations=[2, 1]),
        helper.make_node("MaxPool", ["b"], ["c"], kernel_shape=[2, 2], strides=[2, 2],
                         ceil_mode=1),
        helper.make_node("AveragePool", ["c"], ["d"], kernel_shape=[2, 2], auto_pad="SAME_UPPER",
                         strides=[1, 1]),
        helper.make_node("GlobalAveragePool", ["d"], ["e"]),
    ]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 2, 11, 14])], [_vi("e", ["N", 4, 1, 1])],
                 [_init("w1", w1), _init("w2", w2)])
    graph = _check(path, [(1, 2, 11, 14)])
    assert [op.options["padding"] for op in graph.ops if "POOL" in op.kind] == ["VALID", "SAME"]


def _skl2onnx_mlp(clf, n_features: int) -> onnx.ModelProto:
    """The graph skl2onnx's MLPClassifier converter writes (zipmap=True)."""
    act = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": "Identity",
           "softmax": "Softmax"}
    nodes = [helper.make_node("Cast", ["float_input"], ["cast_input"], to=TensorProto.FLOAT)]
    inits = []
    prev = "cast_input"
    layers = len(clf.coefs_)
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
        inits += [_init(f"coefficient{i}", w.astype(np.float32)),
                  _init(f"intercepts{i}", b.astype(np.float32).reshape(1, -1))]
        nodes += [helper.make_node("MatMul", [prev, f"coefficient{i}"], [f"mul_result{i}"]),
                  helper.make_node("Add", [f"mul_result{i}", f"intercepts{i}"],
                                   [f"add_result{i}"])]
        last = i == layers - 1
        out = "out_activations_result" if last else f"next_activations{i}"
        nodes.append(helper.make_node(act[clf.out_activation_ if last else clf.activation],
                                      [f"add_result{i}"], [out]))
        prev = out
    classes = clf.classes_.astype(np.int32)
    if len(classes) == 2:
        inits.append(_init("unity", np.array(1.0, np.float32)))
        nodes += [helper.make_node("Sub", ["unity", prev], ["negative_class_proba"]),
                  helper.make_node("Concat", ["negative_class_proba", prev], ["probabilities"],
                                   axis=1)]
    else:
        nodes.append(helper.make_node("Identity", [prev], ["probabilities"]))
    inits += [_init("classes", classes), _init("shape_tensor", np.array([-1], np.int64))]
    nodes += [
        helper.make_node("ArgMax", ["probabilities"], ["argmax_output"], axis=1),
        helper.make_node("ArrayFeatureExtractor", ["classes", "argmax_output"],
                         ["array_feature_extractor_result"], domain="ai.onnx.ml"),
        helper.make_node("Reshape", ["array_feature_extractor_result", "shape_tensor"],
                         ["reshaped_result"]),
        helper.make_node("Cast", ["reshaped_result"], ["label"], to=TensorProto.INT64),
        helper.make_node("Cast", ["label"], ["output_label"], to=TensorProto.INT64),
        helper.make_node("ZipMap", ["probabilities"], ["output_probability"],
                         classlabels_int64s=[int(c) for c in classes], domain="ai.onnx.ml"),
    ]
    zipmap_type = helper.make_sequence_type_proto(helper.make_map_type_proto(
        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])))
    graph = helper.make_graph(
        nodes, "mlp", [_vi("float_input", [None, n_features])],
        [_vi("output_label", [None], TensorProto.INT64),
         helper.make_value_info("output_probability", zipmap_type)], inits)
    model = helper.make_model(graph, producer_name="skl2onnx", opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("n_classes,activation", [(3, "relu"), (2, "tanh")])
def test_sklearn_mlp_classifier_graph(tmp_path: Path, n_classes: int, activation: str) -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x = RNG.standard_normal((60, 7)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5 if n_classes == 3 else 0)
    clf = MLPClassifier(hidden_layer_sizes=(9, 5), activation=activation, max_iter=60,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    path = tmp_path / "mlp.onnx"
    onnx.save(_skl2onnx_mlp(clf, 7), str(path))
    graph = _check(path, [(1, 7)])
    assert [t.name for t in graph.output_tensors] == ["output_probability"]
    assert "ArgMax" not in graph.description
    ir = onnx_output_layout(graph)[0].from_ir(run_graph(graph, [x])[0])
    np.testing.assert_allclose(ir, clf.predict_proba(x), rtol=1e-4, atol=1e-5)
    expected = ["FULLY_CONNECTED"] * 3 + (["SOFTMAX"] if n_classes == 3 else
                                          ["LOGISTIC", "MUL", "ADD", "CONCATENATION"])
    if activation == "tanh":
        expected = [expected[0], "TANH", expected[1], "TANH", *expected[2:]]
    assert _kinds(graph) == expected


# ---- converter-made fixtures ------------------------------------------------------

# the networks; the tree ensembles (*_sklearn.onnx holding a TreeEnsembleClassifier) are
# test_onnx_trees.py's
TREE_FIXTURES = ("forest_sklearn.onnx", "extra_trees_sklearn.onnx", "tree_sklearn.onnx")
FIXTURE_FILES = sorted(p for p in FIXTURES.glob("*.onnx") if p.name not in TREE_FIXTURES) \
    if FIXTURES.is_dir() else []


@pytest.mark.parametrize("name", TREE_FIXTURES)
def test_tree_ensembles_are_not_networks(name: str) -> None:
    text = _message(FIXTURES / name)
    assert "a tree ensemble (ai.onnx.ml.TreeEnsembleClassifier) is not a network" in text
    assert "[model] kind = 'imported'" in text


@pytest.mark.skipif(not FIXTURE_FILES, reason="no .onnx fixtures in tests/nn/fixtures")
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.name for p in FIXTURE_FILES])
def test_converter_fixtures_match_onnxruntime(path: Path) -> None:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = [tuple(d if isinstance(d, int) and d > 0 else 1 for d in i.shape)
              for i in sess.get_inputs()]
    _check(path, shapes, batch=2)


@pytest.mark.skipif(not (FIXTURES / "cnn1d_keras.onnx").is_file(), reason="no fixtures")
def test_converter_fixture_layouts() -> None:
    from kiloml.nn.load import load_model

    keras = load_model(FIXTURES / "cnn1d_keras.onnx")  # tf2onnx: the input is already NWC
    assert onnx_input_layout(keras)[0].axes == (0, None, 1, 2)
    assert keras.input_tensors[0].shape == (1, 1, 128, 6)
    torch_cnn = load_model(FIXTURES / "cnn1d_torch.onnx")  # PyTorch: NCW
    assert onnx_input_layout(torch_cnn)[0].axes == (0, None, 2, 1)
    assert torch_cnn.input_tensors[0].shape == (1, 1, 128, 6)
    mlp = load_model(FIXTURES / "mlp_sklearn.onnx")  # the label output is dropped
    assert [t.name for t in mlp.output_tensors] == ["probabilities"]
    assert _kinds(mlp) == ["FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]


# ---- errors -------------------------------------------------------------------------

def _message(path: Path) -> str:
    with pytest.raises(KilomlError) as info:
        read_onnx(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path))
    return text


def _tiny(tmp_path: Path) -> Path:
    w = RNG.standard_normal((3, 4)).astype(np.float32)
    return _save(tmp_path, [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
                 [_vi("x", ["N", 4])], [_vi("y", ["N", 3])], [_init("w", w)], name="tiny")


def test_error_truncated_and_corrupt_files(tmp_path: Path) -> None:
    data = _tiny(tmp_path).read_bytes()
    for name, content in (("truncated", data[: len(data) // 2]),
                          ("garbage", bytes(RNG.integers(0, 256, 300, dtype=np.uint8))),
                          ("empty", b""), ("text", b"not an onnx model at all\n")):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(content)
        assert "not a valid .onnx file:" in _message(path), name
    assert "not found" in _message(tmp_path / "missing.onnx")


def test_error_unsupported_operator(tmp_path: Path) -> None:
    path = _save(tmp_path, [helper.make_node("LeakyRelu", ["x"], ["y"], name="leaky_1")],
                 [_vi("x", ["N", 4])], [_vi("y", ["N", 4])])
    text = _message(path)
    assert "LeakyRelu" in text and "leaky_1" in text and "supported:" in text
    assert "Conv" in text and "Gemm" in text


def test_error_quantized_qdq_model(tmp_path: Path) -> None:
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    inits = [_init("s", np.array(0.1, np.float32)), _init("z", np.array(0, np.int8))]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 4])], [_vi("y", ["N", 4])], inits)
    text = _message(path)
    assert "quantized ONNX models (QuantizeLinear/DequantizeLinear) are not supported" in text
    assert "import the float model" in text


def test_error_non_float32_input_and_weights(tmp_path: Path) -> None:
    path = _save(tmp_path, [helper.make_node("Identity", ["x"], ["y"])],
                 [_vi("x", ["N", 4], TensorProto.INT64)], [_vi("y", ["N", 4], TensorProto.INT64)],
                 name="int_input")
    assert "only float32" in _message(path) and "int64" in _message(path)
    w = RNG.standard_normal((3, 4)).astype(np.float16)
    path = _save(tmp_path, [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
                            helper.make_node("Gemm", ["xh", "w"], ["yh"], transB=1),
                            helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT)],
                 [_vi("x", ["N", 4])], [_vi("y", ["N", 3])], [_init("w", w)], name="half")
    text = _message(path)
    assert "float16" in text and "float32" in text


def test_error_unsupported_attributes(tmp_path: Path) -> None:
    w = RNG.standard_normal((2, 2, 3, 3)).astype(np.float32)
    path = _save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER",
                                             name="conv_lower")],
                 [_vi("x", ["N", 2, 6, 6])], [_vi("y", ["N", 2, 6, 6])], [_init("w", w)],
                 name="lower")
    text = _message(path)
    assert "conv_lower" in text and "auto_pad=SAME_LOWER" in text
    path = _save(tmp_path, [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                             strides=[2, 2], ceil_mode=1, name="pool_ceil")],
                 [_vi("x", ["N", 2, 7, 7])], [_vi("y", ["N", 2, 4, 4])], name="ceil")
    text = _message(path)
    assert "pool_ceil" in text and "ceil_mode=1" in text
    path = _save(tmp_path, [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3],
                                             pads=[2, 0], name="pool_pads")],
                 [_vi("x", ["N", 2, 8])], [_vi("y", ["N", 2, 8])], name="pads")
    assert "pool_pads" in _message(path) and "pads=" in _message(path)
    path = _save(tmp_path, [helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip3")],
                 [_vi("x", ["N", 4])], [_vi("y", ["N", 4])],
                 [_init("lo", np.array(0.0, np.float32)), _init("hi", np.array(3.0, np.float32))],
                 name="clip")
    assert "clip3" in _message(path) and "min/max" in _message(path)


def test_error_transpose_that_needs_data_movement(tmp_path: Path) -> None:
    w1 = RNG.standard_normal((4, 3, 3)).astype(np.float32)
    w2 = RNG.standard_normal((2, 6, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv_a"),
             helper.make_node("Transpose", ["a"], ["t"], perm=[0, 2, 1], name="swap"),
             helper.make_node("Conv", ["t", "w2"], ["y"], name="conv_b")]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 3, 8])], [_vi("y", ["N", 2, 4])],
                 [_init("w1", w1), _init("w2", w2)])
    text = _message(path)
    assert "conv_b" in text and "transpose" in text and "swap" in text


def test_error_softmax_over_a_spatial_axis(tmp_path: Path) -> None:
    w = RNG.standard_normal((4, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"]),
             helper.make_node("Softmax", ["a"], ["y"], axis=2, name="sm_w")]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 3, 8])], [_vi("y", ["N", 4, 6])],
                 [_init("w", w)])
    text = _message(path)
    assert "sm_w" in text and "Softmax" in text


def test_error_dynamic_non_batch_dimension(tmp_path: Path) -> None:
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])],
                 [_vi("x", ["N", "T"])], [_vi("y", ["N", "T"])])
    assert "dynamic dimension at axis 1" in _message(path)


# ---- hostile files: values the checker does not look at -------------------------------

def _conv_model(tmp_path: Path, name: str = "conv", **attrs: object) -> Path:
    w = RNG.standard_normal((4, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_1", **attrs)
    return _save(tmp_path, [node], [_vi("x", ["N", 3, 16])], [_vi("y", ["N", 4, 14])],
                 [_init("w", w)], name=name)


@pytest.mark.parametrize("attrs, fragment", [
    ({"strides": [0]}, "strides"), ({"strides": [1, 1]}, "strides"),
    ({"dilations": [0]}, "dilations"), ({"pads": [1, 1, 1]}, "pads"),
    ({"pads": [-1, 0]}, "pads"), ({"pads": [4294967295, 0]}, "shape"), ({"group": 0}, "group"),
    ({"kernel_shape": [5]}, "shape"),
])
def test_error_conv_attributes_out_of_range(tmp_path: Path, attrs: dict, fragment: str) -> None:
    """The checker's shape inference or kiloml's attribute checks: one line naming the node."""
    text = _message(_conv_model(tmp_path, **attrs))
    assert "node 'conv_1' (Conv)" in text and fragment in text, text


def test_attribute_getters_check_type_length_and_range() -> None:
    """kiloml's own checks (onnx_checks.Attributes), behind the checker's."""
    from kiloml.nn.onnx_checks import Attributes

    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", strides=[0, 2], pads=[1, 2, 3],
                            group=0, epsilon=float("nan"), axis=7, auto_pad="SAME_LOWER")
    a = Attributes(node, lambda message: KilomlError(message, where="node 'c'"))
    cases = [
        (lambda: a.ints("strides", None, 2, 1), "strides=[0, 2]", "[1, 2147483647]"),
        (lambda: a.ints("strides", None, 3, 1), "strides=[0, 2]", "3 values are needed"),
        (lambda: a.ints("pads", None, 4, 0), "pads=[1, 2, 3]", "4 values are needed"),
        (lambda: a.int("group", 1, 1), "group=0", "[1, 2147483647]"),
        (lambda: a.float("epsilon", 1e-5, 0.0), "epsilon=nan", "finite"),
        (lambda: a.axis("axis", None, 3), "axis=7", "outside [-3, 2] for rank 3"),
        (lambda: a.string("auto_pad", "NOTSET", ("NOTSET", "VALID")), "auto_pad=SAME_LOWER",
         "use NOTSET, VALID"),
        (lambda: a.int("kernel"), "attribute kernel is required", ""),
        (lambda: a.float("strides"), "strides=[0, 2]", "a number is needed"),
    ]
    for call, *fragments in cases:
        with pytest.raises(KilomlError) as info:
            call()
        assert all(f in str(info.value) for f in fragments), str(info.value)
    assert a.axis("axis", -1, 8) == 7 and Attributes(node, KilomlError).axis("x", -1, 3) == 2
    flat = Attributes(helper.make_node("Flatten", ["x"], ["y"], axis=-3), KilomlError)
    assert flat.axis("axis", 1, 3, inclusive=True) == 0


def test_error_kernel_larger_than_the_padded_input(tmp_path: Path) -> None:
    w = RNG.standard_normal((4, 3, 9)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="wide", pads=[1, 1])
    path = _save(tmp_path, [node], [_vi("x", ["N", 3, 4])], [_vi("y", ["N", 4, 1])],
                 [_init("w", w)])
    text = _message(path)
    assert "node 'wide' (Conv)" in text and ("does not fit" in text or "(-2)" in text), text


@pytest.mark.parametrize("opset, fragment", [
    (6, "opset 6 of ai.onnx is not supported (supported: 7 to 28)"),
    (99, "opset 99 of ai.onnx is not supported (supported: 7 to 28)"),
])
def test_error_opset_outside_the_supported_range(tmp_path: Path, opset: int,
                                                 fragment: str) -> None:
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["N", 4])],
                 [_vi("y", ["N", 4])], opset=opset)
    assert fragment in _message(path)


def _external(tiny: Path, location: str, **keys: str) -> Path:
    """The tiny model with its weight stored as external data at ``location``."""
    tmp_path = tiny.parent
    model = onnx.load(str(tiny))
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    del t.float_data[:]
    t.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, **keys}.items():
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    out = tmp_path / "external.onnx"
    onnx.save(model, str(out))
    return out


def test_external_data_beside_the_model_is_read(tmp_path: Path) -> None:
    # torch.onnx.export's default writes the weights to <model>.onnx.data beside the model
    tiny = _tiny(tmp_path)
    raw = numpy_helper.to_array(onnx.load(str(tiny)).graph.initializer[0]).tobytes()
    (tmp_path / "external.onnx.data").write_bytes(b"\0" * 8 + raw + b"\0" * 4)
    path = _external(tiny, "external.onnx.data", offset="8", length=str(len(raw)))
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    _close(run_graph(read_onnx(path), [x])[0], run_graph(read_onnx(tiny), [x])[0], rtol=0)


def test_error_external_data_outside_the_rules(tmp_path: Path) -> None:
    raw_size = 3 * 4 * 4
    (tmp_path / "w.bin").write_bytes(b"\0" * raw_size)
    os.mkfifo(tmp_path / "fifo.bin")  # would hang a reader that opened it blocking
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"\0" * raw_size)
    (tmp_path / "link.bin").symlink_to(outside / "w.bin")
    cases = [
        ("/etc/passwd", {}, "location '/etc/passwd' is not a file name in the model's folder"),
        ("../w.bin", {}, "is not a file name in the model's folder"),
        ("elsewhere/w.bin", {}, "is not a file name in the model's folder"),
        ("missing.bin", {}, "external data file 'missing.bin' not found beside the model"),
        ("link.bin", {}, "'link.bin' is a link out of the model's folder"),
        ("fifo.bin", {}, "a FIFO"),
        ("w.bin", {"offset": "8"}, "lies past the end of 'w.bin' (48 bytes)"),
        ("w.bin", {"length": "12"}, "external data length 12 bytes; dims [3, 4]"),
        ("w.bin", {"offset": "-1"}, "external data offset '-1' is not a byte count"),
        ("w.bin", {"basepath": "/"}, "external data key 'basepath' is not supported"),
    ]
    tiny = _tiny(tmp_path)
    for location, keys, fragment in cases:
        text = _message(_external(tiny, location, **keys))
        assert fragment in text, (location, keys, text)
        assert "initializer 'w'" in text, text


def test_error_initializer_data_does_not_match_its_dims(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    model = onnx.load(str(path))
    t = model.graph.initializer[0]
    t.raw_data = t.raw_data[:-4]
    onnx.save(model, str(path))
    text = _message(path)
    assert "initializer 'w'" in text and "raw_data has 44 bytes" in text and "need 48" in text
    t.dims[:] = [3, 1 << 40]
    onnx.save(model, str(path))
    assert "more than" in _message(path) or "per tensor" in _message(path)


def test_error_huge_input_shape(tmp_path: Path) -> None:
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])],
                 [_vi("x", ["N", 1 << 30])], [_vi("y", ["N", 1 << 30])])
    assert "more than 16,777,216 elements" in _message(path)


@pytest.mark.parametrize("op, attrs, shapes, fragment", [
    ("Concat", {"axis": 5}, ([3, 4], [3, 4], [3, 8]), "axis=5"),
    ("Softmax", {"axis": -7}, ([3, 4], None, [3, 4]), "axis=-7"),
    ("Flatten", {"axis": 9}, ([3, 4, 2], None, [3, 8]), "axis=9"),
    ("Transpose", {"perm": [0, 0, 1]}, ([3, 4, 2], None, [3, 4, 2]), "perm=[0, 0, 1]"),
    ("Transpose", {"perm": [0, 1]}, ([3, 4, 2], None, [3, 4, 2]), "perm=[0, 1]"),
])
def test_error_axes_and_permutations_out_of_range(tmp_path: Path, op: str, attrs: dict,
                                                  shapes: tuple, fragment: str) -> None:
    a, b, y = shapes
    ins = ["x", "x2"] if b is not None else ["x"]
    vis = [_vi("x", ["N", *a[1:]])] + ([_vi("x2", ["N", *b[1:]])] if b is not None else [])
    path = _save(tmp_path, [helper.make_node(op, ins, ["y"], name="n1", **attrs)], vis,
                 [_vi("y", ["N", *y[1:]])])
    text = _message(path)
    assert "node 'n1'" in text and (fragment in text or fragment.split("=")[0] in text), text


def _batchnorm(tmp_path: Path, variance: np.ndarray, **attrs: object) -> Path:
    c = 3
    inits = [_init("s", np.ones(c, np.float32)), _init("b", np.zeros(c, np.float32)),
             _init("m", np.zeros(c, np.float32)), _init("v", variance.astype(np.float32))]
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn",
                            **attrs)
    return _save(tmp_path, [node], [_vi("x", ["N", c, 8])], [_vi("y", ["N", c, 8])], inits)


def test_error_batchnorm_statistics(tmp_path: Path) -> None:
    text = _message(_batchnorm(tmp_path, np.array([1.0, -0.5, 1.0])))
    assert "bn" in text and "variance of channel 1 is -0.5" in text
    text = _message(_batchnorm(tmp_path, np.array([1.0, np.nan, 1.0])))
    assert "the variance holds NaN or inf" in text
    text = _message(_batchnorm(tmp_path, np.ones(2)))
    assert "node 'bn'" in text and ("[3] is needed" in text or "Dimension mismatch" in text)
    text = _message(_batchnorm(tmp_path, np.ones(3), epsilon=float("nan")))
    assert "epsilon=nan" in text
    text = _message(_batchnorm(tmp_path, np.zeros(3), epsilon=0.0))
    assert "variance + epsilon is 0" in text


def test_error_nan_coefficients_in_attributes(tmp_path: Path) -> None:
    w = RNG.standard_normal((3, 4)).astype(np.float32)
    path = _save(tmp_path, [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1,
                                             alpha=float("nan"), name="g")],
                 [_vi("x", ["N", 4])], [_vi("y", ["N", 3])], [_init("w", w)])
    assert "alpha=nan" in _message(path)
    path = _save(tmp_path, [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1,
                                             alpha=1e30, name="g")],
                 [_vi("x", ["N", 4])], [_vi("y", ["N", 3])], [_init("w", w * 1e10)])
    assert "alpha x weights is not finite in float32" in _message(path)
    path = _save(tmp_path, [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1, name="g")],
                 [_vi("x", ["N", 4])], [_vi("y", ["N", 3])],
                 [_init("w", np.full((3, 4), np.inf, np.float32))])
    assert "not finite" in _message(path)


def test_error_division_by_a_zero_constant(tmp_path: Path) -> None:
    path = _save(tmp_path, [helper.make_node("Div", ["x", "d"], ["y"], name="div")],
                 [_vi("x", ["N", 4])], [_vi("y", ["N", 4])],
                 [_init("d", np.array([1, 0, 2, 3], np.float32))])
    assert "div" in _message(path) and "holds 0" in _message(path)


def test_error_reshape_targets(tmp_path: Path) -> None:
    for target, fragment in (([-1, -1], "-1"), ([1, 0, 0, 0], "0"), ([5, 5], "reshape")):
        path = _save(tmp_path, [helper.make_node("Reshape", ["x", "s"], ["y"], name="r")],
                     [_vi("x", [1, 4])], [_vi("y", [1, 4])],
                     [_init("s", np.array(target, np.int64))], name=f"r{len(target)}")
        assert fragment in _message(path), target


def test_error_axes_from_an_activation(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("ReduceMean", ["x", "r"], ["y"], name="mean")]
    path = _save(tmp_path, nodes, [_vi("x", ["N", 4])], [_vi("y", ["N", 1])], opset=18)
    text = _message(path)
    assert "node 'mean'" in text and "axes" in text, text


def test_error_string_attribute_that_is_not_utf8(tmp_path: Path) -> None:
    path = _conv_model(tmp_path)
    model = onnx.load(str(path))
    model.graph.node[0].attribute.append(helper.make_attribute("auto_pad", b"\xff\xfe"))
    onnx.save(model, str(path))
    assert "auto_pad=" in _message(path)


def test_error_too_many_nodes(tmp_path: Path) -> None:
    nodes = [helper.make_node("Identity", [f"v{i}"], [f"v{i + 1}"]) for i in range(10_001)]
    path = _save(tmp_path, nodes, [_vi("v0", ["N", 4])], [_vi("v10001", ["N", 4])])
    assert "10,001 nodes" in _message(path)


def test_error_auto_pad_and_pads_together(tmp_path: Path) -> None:
    text = _message(_conv_model(tmp_path, auto_pad="VALID", pads=[0, 0]))
    assert "node 'conv_1' (Conv)" in text and "auto_pad and pads" in text


@pytest.mark.parametrize("batch", [0, -3])
def test_error_input_dimension_below_one(tmp_path: Path, batch: int) -> None:
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [batch, 4])],
                 [_vi("y", [batch, 4])])
    assert f"has dimension {batch} at axis 0" in _message(path)
