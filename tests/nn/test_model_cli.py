"""`kiloml model info|run`: bring-your-own-model commands and their bad-input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kiloml.nn.load import load_model
from tests.conftest import assert_user_error, run_cli

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

FIXTURES = Path(__file__).parent / "fixtures"
MLP = FIXTURES / "mlp_int8.tflite"


def test_info_lists_operators_shapes_quantization_macs(tmp_path: Path) -> None:
    result = run_cli("model", "info", str(FIXTURES / "dscnn_int8.tflite"), "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    kinds = [op["op"] for op in info["operators"]]
    assert kinds[:3] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D"]
    assert info["quantized"] is True
    conv = info["operators"][0]
    # Conv2D(16, (5,3), strides 2, same) on 49x10x1: 25 x 5 x 16 outputs x 15 taps
    assert conv["output_shape"] == [1, 25, 5, 16]
    assert conv["macs"] == 25 * 5 * 16 * 5 * 3 * 1
    assert info["total_macs"] == sum(op["macs"] for op in info["operators"])
    assert info["weight_bytes"] > 0
    assert info["inputs"][0]["quantization"]["zero_point"] in range(-128, 128)
    text = run_cli("model", "info", str(MLP))
    assert text.exit_code == 0
    assert "FULLY_CONNECTED" in text.stdout and "MACs" in text.stdout


def test_run_writes_tflm_identical_outputs(tmp_path: Path) -> None:
    graph = load_model(MLP)
    x = np.random.default_rng(0).integers(-128, 128, size=(64, 24)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    result = run_cli("model", "run", str(MLP), "--inputs", str(tmp_path / "x.npy"),
                     "--output", str(tmp_path / "y.npy"))
    assert result.exit_code == 0, result.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (64, *graph.output_tensors[0].shape[1:]) and y.dtype == np.int8
    interpreter = runtime.Interpreter.from_file(str(MLP), arena_size=64 * 1024)
    for i in range(len(x)):
        interpreter.set_input(x[i:i + 1], 0)
        interpreter.invoke()
        np.testing.assert_array_equal(y[i:i + 1], interpreter.get_output(0))


def test_run_as_a_subprocess_has_exit_code_2_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(MLP.read_bytes()[:300])
    proc = subprocess.run([sys.executable, "-m", "kiloml", "model", "info", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "broken.tflite" in proc.stderr and "not a valid .tflite file" in proc.stderr


@pytest.mark.parametrize("fixture, fragments", [
    ("float16_quant.tflite", ["float16"]),
    ("dynamic_range.tflite", ["dynamic-range (hybrid) quantization"]),
    ("int16x8.tflite", ["16x8 quantization"]),
    ("multi_subgraph.tflite", ["subgraphs", "single-subgraph"]),
])
def test_unsupported_models_are_rejected(fixture: str, fragments: list[str],
                                         tmp_path: Path) -> None:
    result = run_cli("model", "run", str(FIXTURES / fixture), "--inputs",
                     str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"))
    assert_user_error(result, fixture, *fragments)
    assert not (tmp_path / "y.npy").exists()


def test_truncated_and_corrupt_models(tmp_path: Path) -> None:
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(MLP.read_bytes()[: len(MLP.read_bytes()) // 2])
    assert_user_error(run_cli("model", "info", str(truncated)), "cut.tflite",
                      "not a valid .tflite file")
    garbage = tmp_path / "noise.tflite"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4000).astype(np.uint8)
                        .tobytes())
    assert_user_error(run_cli("model", "info", str(garbage)), "noise.tflite",
                      "not a valid .tflite file")
    onnx_bad = tmp_path / "cut.onnx"
    onnx_bad.write_bytes((FIXTURES / "cnn1d_torch.onnx").read_bytes()[:500])
    assert_user_error(run_cli("model", "info", str(onnx_bad)), "cut.onnx",
                      "not a valid .onnx file")
    other = tmp_path / "model.h5"
    other.write_bytes(b"\x89HDF")
    assert_user_error(run_cli("model", "info", str(other)), "model.h5",
                      "unknown model format .h5")
    assert_user_error(run_cli("model", "info", str(tmp_path / "missing.tflite")),
                      "missing.tflite", "model file not found")


def test_unsupported_operator_names_op_node_and_supported_list(tmp_path: Path) -> None:
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(MLP.read_bytes()), 0)
    code = model.operatorCodes[model.subgraphs[0].operators[-1].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.LOG_SOFTMAX
    model.subgraphs[0].operators[-1].builtinOptionsType = 0
    model.subgraphs[0].operators[-1].builtinOptions = None
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "logsoftmax.tflite"
    path.write_bytes(bytes(builder.Output()))
    line = assert_user_error(run_cli("model", "info", str(path)), "logsoftmax.tflite",
                             "unsupported operator LOG_SOFTMAX", "operator 3")
    assert "FULLY_CONNECTED" in line and "SOFTMAX" in line  # the supported list


def test_inputs_that_do_not_match_the_model(tmp_path: Path) -> None:
    out = tmp_path / "y.npy"
    np.save(tmp_path / "shape.npy", np.zeros((5, 23), np.int8))
    assert_user_error(run_cli("model", "run", str(MLP), "--inputs", str(tmp_path / "shape.npy"),
                              "--output", str(out)),
                      "shape.npy", "shape [5, 23]", "[N, 24]")
    np.save(tmp_path / "float.npy", np.zeros((5, 24), np.float32))
    assert_user_error(run_cli("model", "run", str(MLP), "--inputs", str(tmp_path / "float.npy"),
                              "--output", str(out)),
                      "float.npy", "dtype float32", "int8", "zero point")
    (tmp_path / "text.npy").write_text("not numpy")
    assert_user_error(run_cli("model", "run", str(MLP), "--inputs", str(tmp_path / "text.npy"),
                              "--output", str(out)),
                      "text.npy", "not a valid .npy file", "magic string")
    assert not out.exists()


def _run_inputs(tmp_path: Path, inputs: Path, *fragments: str, model: Path = MLP) -> str:
    out = tmp_path / "y.npy"
    line = assert_user_error(run_cli("model", "run", str(model), "--inputs", str(inputs),
                                     "--output", str(out)), inputs.name, *fragments)
    assert not out.exists()
    return line


def test_empty_input_batch_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 24), np.int8))
    _run_inputs(tmp_path, tmp_path / "empty.npy", "the inputs hold no samples", "[0, 24]")


class _Payload:
    """Unpickling this would create a file: the proof that a loader ran pickle."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_and_object_inputs_are_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = np.empty((1, 24), dtype=object)
    payload[0, 0] = _Payload(str(marker))
    np.save(tmp_path / "objects.npy", payload, allow_pickle=True)
    _run_inputs(tmp_path, tmp_path / "objects.npy", "Python objects", "pickle")
    assert not marker.exists()
    import pickle

    (tmp_path / "pickle.npy").write_bytes(pickle.dumps(_Payload(str(marker))))
    _run_inputs(tmp_path, tmp_path / "pickle.npy", "not a valid .npy file")
    assert not marker.exists()


@pytest.mark.parametrize("header, fragments", [
    ("{'descr': '<i1', 'fortran_order': False, 'shape': (2147483647, 24), }",
     ["declares shape [2147483647, 24]", "the file holds"]),
    ("{'descr': '<i1', 'fortran_order': False, 'shape': (-1, 24), }", ["negative dimension"]),
    ("{'descr': '<U8', 'fortran_order': False, 'shape': (1, 24), }", ["dtype <U8"]),
    ("{'descr': [('a', '<i1')], 'fortran_order': False, 'shape': (1, 24), }", ["dtype"]),
    ("{'descr': '<i1', 'fortran_order': False, 'shape': (1, 24", ["not a valid .npy file"]),
])
def test_npy_headers_are_checked_before_reading(tmp_path: Path, header: str,
                                                fragments: list[str]) -> None:
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    path = tmp_path / "hostile.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text
                     + bytes(24))
    _run_inputs(tmp_path, path, *fragments)


def test_truncated_npy_and_fifo_inputs(tmp_path: Path) -> None:
    np.save(tmp_path / "full.npy", np.zeros((10, 24), np.int8))
    data = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-7])
    _run_inputs(tmp_path, tmp_path / "cut.npy", "the file holds 233")
    import os

    os.mkfifo(tmp_path / "fifo.npy")  # would block a reader forever
    _run_inputs(tmp_path, tmp_path / "fifo.npy", "not a regular file")
    os.mkfifo(tmp_path / "fifo.tflite")
    assert_user_error(run_cli("model", "info", str(tmp_path / "fifo.tflite")),
                      "fifo.tflite", "not a regular file")


def test_float_inputs_a_quantize_cannot_represent(tmp_path: Path) -> None:
    from kiloml.nn.tflite_io import write_tflite
    from tests.nn.test_tflite_io import g_boundary

    model = tmp_path / "boundary.tflite"
    write_tflite(g_boundary(), model)
    x = np.zeros((3, 8), np.float32)
    x[2, 5] = np.nan
    np.save(tmp_path / "nan.npy", x)
    _run_inputs(tmp_path, tmp_path / "nan.npy", "input value nan at index [2, 5]",
                "cannot be quantized", model=model)
    x[2, 5] = 1e30
    np.save(tmp_path / "huge.npy", x)
    _run_inputs(tmp_path, tmp_path / "huge.npy", "input value 1e+30", model=model)
    x[2, 5] = 3.0
    np.save(tmp_path / "fine.npy", x)
    result = run_cli("model", "run", str(model), "--inputs", str(tmp_path / "fine.npy"),
                     "--output", str(tmp_path / "y.npy"))
    assert result.exit_code == 0, result.stderr


def test_run_onnx_in_its_own_layout_matches_onnxruntime(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = FIXTURES / "cnn1d_torch.onnx"
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 5 for d in session.get_inputs()[0].shape]
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)  # the ONNX layout [N, C, W]
    result = run_cli("model", "run", str(model), "--inputs", str(tmp_path / "x.npy"),
                     "--output", str(tmp_path / "y.npy"))
    assert result.exit_code == 0, result.stderr
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-4, atol=1e-5)
