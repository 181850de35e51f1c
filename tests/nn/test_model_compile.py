"""`kiloml model compile|verify`: ahead-of-time C for a user's int8 network, proved on the
host and the emulated Cortex-M4, and the bad inputs those commands must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kiloml.nn.conformance import act_tensor, new_graph
from kiloml.nn.graph import Quantization, Tensor
from kiloml.nn.load import load_model
from kiloml.nn.reference import Interpreter
from kiloml.nn.tflite_io import write_tflite
from tests.conftest import assert_user_error, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
MLP = FIXTURES / "mlp_int8.tflite"
CNN = FIXTURES / "cnn1d_int8.tflite"


def _conv_model(path: Path, h: int, w: int, cin: int, cout: int, *, depthwise: bool = False,
                multiplier: int = 1) -> Path:
    """A one-layer conv (or depthwise) int8 model written by kiloml's .tflite writer."""
    rng = np.random.default_rng(3)
    g = new_graph("conv")
    qx = Quantization.per_tensor(0.05, 3)
    x = act_tensor(g, "x", (1, h, w, cin), qx)
    cout = cin * multiplier if depthwise else cout
    w_shape = (1, 3, 3, cout) if depthwise else (cout, 3, 3, cin)
    scales = np.full(cout, 0.01, np.float32)
    wq = Quantization(scales, np.zeros(cout, np.int64), 3 if depthwise else 0)
    wi = g.add_tensor(Tensor("w", w_shape, "int8", wq,
                             rng.integers(-127, 128, size=w_shape).astype(np.int8)))
    bq = Quantization((scales * 0.05).astype(np.float32), np.zeros(cout, np.int64), 0)
    bi = g.add_tensor(Tensor("b", (cout,), "int32", bq, rng.integers(-500, 500, cout)
                             .astype(np.int32)))
    y = act_tensor(g, "y", (1, h, w, cout), Quantization.per_tensor(0.1, -5))
    options = {"padding": "SAME", "stride_h": 1, "stride_w": 1, "dilation_h": 1,
               "dilation_w": 1, "fused_activation": "RELU"}
    if depthwise:
        options["depth_multiplier"] = multiplier
    g.add_op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, wi, bi], [y], **options)
    g.inputs, g.outputs = [x], [y]
    path.write_bytes(write_tflite(g))
    return path


def test_compile_writes_library_and_measured_resources(tmp_path: Path) -> None:
    out = tmp_path / "mlp_c"
    result = run_cli("model", "compile", str(MLP), "--target", "cortex-m4f", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    for name in ("kiloml_nn.h", "kiloml_nn.c", "kml_nn.c", "kml_nn.h", "kml_nn_dsp.c",
                 "kml_nn_internal.h", "resources.json"):
        assert (out / name).is_file(), name
    source = (out / "kiloml_nn.c").read_text()
    assert "malloc" not in source and "static const int8_t" in source
    r = json.loads((out / "resources.json").read_text())
    assert r["parity"]["host"] == {"n": 8, "bit_exact": 8}
    assert r["parity"]["cortex-m4f"] == {"n": 8, "bit_exact": 8}
    assert r["arena_bytes"] >= r["arena_lower_bound_bytes"] > 0
    assert r["arena_bytes"] <= r["ram_bytes"]  # the arena is the library's only RAM
    assert r["flash_bytes"] > r["weights_bytes"] > 0
    assert 0 < r["code_flash_bytes"] < r["flash_bytes"]
    assert 0 < r["stack_bytes"] < 1024
    fc = [la for la in r["layers"] if la["op"] == "FULLY_CONNECTED"]
    assert len(fc) == 3 and all(la["fast_path"] for la in fc)
    assert all(la["instructions"] > la["macs"] * 0.5 for la in fc)  # SMLAD's floor
    assert sum(la["instructions"] for la in r["layers"]) <= r["instructions_per_inference"]
    assert "kml_softmax_s8" in " ".join(r["notes"])  # no fast path: said so
    assert "arena" in result.stdout and "8/8" in result.stdout


def test_dsp_path_runs_fewer_instructions_than_portable(tmp_path: Path) -> None:
    """QEMU's instruction counts are deterministic: the fast path must really be faster on
    every conv and FC layer, and give the same outputs (compile checks parity)."""
    dsp = json.loads(json.dumps(_compile(CNN, tmp_path / "dsp")))
    portable = _compile(CNN, tmp_path / "portable", "--portable")
    assert portable["kernels"] == "portable"
    pairs = [(a, b) for a, b in zip(dsp["layers"], portable["layers"], strict=True)
             if a["op"] in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(pairs) == 3
    for a, b in pairs:
        assert a["instructions"] < b["instructions"], (a, b)
    again = _compile(CNN, tmp_path / "dsp2")
    assert again["instructions_per_inference"] == dsp["instructions_per_inference"]


def _compile(model: Path, out: Path, *extra: str) -> dict:
    result = run_cli("model", "compile", str(model), "--target", "cortex-m4f", "--out",
                     str(out), *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads((out / "resources.json").read_text())


@pytest.mark.parametrize("target", ["host", "cortex-m4f"])
@pytest.mark.parametrize("portable", [False, True])
def test_verify_writes_reference_identical_outputs(tmp_path: Path, target: str,
                                                   portable: bool) -> None:
    graph = load_model(CNN)
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, size=(12, *graph.input_tensors[0].shape[1:])).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    result = run_cli("model", "verify", str(CNN), "--inputs", str(tmp_path / "x.npy"),
                     "--target", target, "--output", str(out),
                     *(["--portable"] if portable else []))
    assert result.exit_code == 0, result.stderr
    got = np.load(out)
    want = Interpreter(graph).run([x])[0]
    np.testing.assert_array_equal(got, want)
    assert "12/12" in result.stdout


def test_depthwise_multiplier_two_falls_back_with_a_note(tmp_path: Path) -> None:
    model = _conv_model(tmp_path / "dw2.tflite", 6, 7, 3, 0, depthwise=True, multiplier=2)
    out = tmp_path / "dw2_c"
    result = run_cli("model", "compile", str(model), "--target", "cortex-m4f", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    r = json.loads((out / "resources.json").read_text())
    assert r["parity"]["cortex-m4f"]["bit_exact"] == r["parity"]["cortex-m4f"]["n"]
    assert not r["layers"][0]["fast_path"]
    assert any("depth multiplier 2" in n and "portable" in n for n in r["notes"]), r["notes"]
    assert "depth multiplier 2" in result.stdout


# ---- bad input ----------------------------------------------------------------------------


def test_arena_larger_than_ram_names_the_largest_layers(tmp_path: Path) -> None:
    model = _conv_model(tmp_path / "big.tflite", 64, 64, 8, 16)  # 32 KiB in, 64 KiB out
    out = tmp_path / "big_c"
    line = assert_user_error(
        run_cli("model", "compile", str(model), "--target", "cortex-m4f", "--out", str(out)),
        "big.tflite", "more than cortex-m4f's 65,536 B of RAM", "op 0 CONV_2D output "
        "[1, 64, 64, 16] (65,536 B)", "Fewer channels")
    assert "arena needs" in line
    assert not out.exists()
    np.save(tmp_path / "x.npy", np.zeros((1, 64, 64, 8), np.int8))
    assert_user_error(run_cli("model", "verify", str(model), "--inputs",
                              str(tmp_path / "x.npy"), "--target", "cortex-m4f", "--output",
                              str(tmp_path / "y.npy")), "big.tflite", "arena needs")
    assert not (tmp_path / "y.npy").exists()


def test_model_with_no_operators(tmp_path: Path) -> None:
    g = new_graph("empty")
    x = act_tensor(g, "x", (1, 4), Quantization.per_tensor(0.1, 0))
    g.inputs, g.outputs = [x], [x]
    path = tmp_path / "empty.tflite"
    path.write_bytes(write_tflite(g))
    out = tmp_path / "empty_c"
    assert_user_error(run_cli("model", "compile", str(path), "--target", "host", "--out",
                              str(out)), "empty.tflite", "no operators")
    assert not out.exists()


def test_verify_inputs_that_do_not_match_the_model(tmp_path: Path) -> None:
    out = tmp_path / "y.npy"
    np.save(tmp_path / "shape.npy", np.zeros((5, 23), np.int8))
    assert_user_error(run_cli("model", "verify", str(MLP), "--inputs",
                              str(tmp_path / "shape.npy"), "--target", "host", "--output",
                              str(out)), "shape.npy", "shape [5, 23]", "[N, 24]")
    np.save(tmp_path / "float.npy", np.zeros((5, 24), np.float32))
    assert_user_error(run_cli("model", "verify", str(MLP), "--inputs",
                              str(tmp_path / "float.npy"), "--target", "cortex-m4f",
                              "--output", str(out)), "float.npy", "dtype float32", "int8")
    assert not out.exists()


def test_float_model_and_unknown_target_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert_user_error(run_cli("model", "compile", str(FIXTURES / "mlp_float.tflite"),
                              "--target", "host", "--out", str(out)),
                      "mlp_float.tflite", "the model is float32", "--calibration X.npy",
                      "[N, 24]")
    line = assert_user_error(run_cli("model", "compile", str(MLP), "--target", "cortex-m99",
                                     "--out", str(out)), "cortex-m99")
    assert "cortex-m4f" in line  # says which targets exist
    assert not out.exists()
