"""Conformance: kiloml's int8 reference interpreter is bit-exact with the TFLM interpreter.

(a) every operator, on random shapes, options and quantization, exported by kiloml's
    .tflite writer and run by TFLM (PyPI ``tflite-micro``);
(b) every converter-made int8 fixture under tests/nn/fixtures (made by make_fixtures.py
    with the TensorFlow converter and litert-torch; see the README there).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kiloml.errors import KilomlError
from kiloml.nn.conformance import GENERATORS, random_case, random_sequence, random_strided_slice
from kiloml.nn.graph import SUPPORTED_OPS, Graph, Quantization, Tensor
from kiloml.nn.load import load_model
from kiloml.nn.reference import Interpreter
from kiloml.nn.tflite_io import write_tflite

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

CASES_PER_OP = 40
FIXTURES = Path(__file__).parent / "fixtures"
INT8_FIXTURES = sorted(p.name for p in FIXTURES.glob("*_int8.tflite"))
RESULTS: dict[str, list[int]] = {}


def tflm_run(model: bytes, inputs: list[np.ndarray], n_outputs: int) -> list[np.ndarray]:
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=256 * 1024)
    for i, x in enumerate(inputs):
        interpreter.set_input(x, i)
    interpreter.invoke()
    return [interpreter.get_output(i) for i in range(n_outputs)]


def test_every_supported_operator_has_a_generator() -> None:
    assert set(GENERATORS) == set(SUPPORTED_OPS)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_operator_bit_exact_with_tflm(kind: str) -> None:
    exact = 0
    for seed in range(CASES_PER_OP):
        graph, inputs = random_case(kind, seed)
        want = tflm_run(write_tflite(graph), inputs, len(graph.outputs))
        got = Interpreter(graph).run(inputs)
        for w, o in zip(want, got, strict=True):
            assert w.dtype == o.dtype, (kind, seed)
            np.testing.assert_array_equal(o.reshape(w.shape), w, err_msg=f"{kind} seed {seed}")
            assert o.size == w.size
        exact += 1
    assert exact == CASES_PER_OP


@pytest.mark.parametrize("name", INT8_FIXTURES)
def test_converter_fixture_bit_exact_with_tflm(name: str) -> None:
    path = FIXTURES / name
    graph = load_model(path)
    interpreter = runtime.Interpreter.from_file(str(path), arena_size=256 * 1024)
    reference = Interpreter(graph)
    rng = np.random.default_rng(1)
    shape = graph.input_tensors[0].shape
    n = 100
    for _ in range(n):
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        interpreter.set_input(x, 0)
        interpreter.invoke()
        want = interpreter.get_output(0)
        got = reference.run([x])[0]
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=name)


def test_fixture_manifest_lists_the_converter() -> None:
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    text = json.dumps(manifest).lower()
    assert "tensorflow" in text
    assert len(INT8_FIXTURES) >= 5


def test_quantize_rounds_half_away_from_zero_like_tflm() -> None:
    """Values just below x.5 steps: floor(|q| + 0.5) in float32 would round them up."""
    graph = next(g for g, _ in (random_case("QUANTIZE", s) for s in range(100))
                 if g.tensors[g.inputs[0]].dtype == "float32")
    y = graph.tensors[graph.outputs[0]]
    scale = np.float32(y.quant.s)
    halves = np.array([0.5, 1.5, -0.5, -2.5, 40.5], np.float32)
    near = np.concatenate([np.nextafter(halves, np.float32(0)), halves,
                           np.nextafter(halves, np.float32(100) * np.sign(halves))])
    x = (near * scale).astype(np.float32)
    shape = graph.tensors[graph.inputs[0]].shape
    x = np.resize(x, int(np.prod(shape))).reshape(shape).astype(np.float32)
    want = tflm_run(write_tflite(graph), [x], 1)[0]
    np.testing.assert_array_equal(Interpreter(graph).run([x])[0].reshape(want.shape), want)


# ---- slicing as TFLM computes it, and tensors whose leading axis is not the batch ----

def test_strided_slice_every_mask_combination_bit_exact_with_tflm() -> None:
    """Random ranks 1-4, strides -3..3, indices in and beyond range, every begin / end /
    shrink mask: TFLM's Prepare checks kiloml's output shape, its Eval the values."""
    masks_seen = set()
    for seed in range(300):
        graph, inputs = random_strided_slice(seed)
        op = graph.ops[0]
        masks_seen.update(k for k in ("begin_mask", "end_mask", "shrink_axis_mask")
                          if op.options[k])
        want = tflm_run(write_tflite(graph), inputs, 1)[0]
        got = Interpreter(graph).run(inputs)[0]
        assert got.shape == want.shape, seed
        np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}")
    assert masks_seen == {"begin_mask", "end_mask", "shrink_axis_mask"}


def _slice_graph(shape, begin, end, strides, out_shape, **options):
    g = Graph([], [], [], [], name="ss")
    q = Quantization.per_tensor(0.05, 3)
    x = g.add_tensor(Tensor("x", shape, "int8", q))
    consts = [g.add_tensor(Tensor(n, (len(v),), "int32", data=np.array(v, np.int32)))
              for n, v in (("begin", begin), ("end", end), ("strides", strides))]
    y = g.add_tensor(Tensor("y", out_shape, "int8", q))
    g.add_op("STRIDED_SLICE", [x, *consts], [y], **options)
    g.inputs, g.outputs = [x], [y]
    return g


@pytest.mark.parametrize(("args", "options", "message"), [
    (((1, 6), [0, 1], [1, 2], [1, 1], (1, 1)), {"offset": True}, "offset = true"),
    (((1, 6), [0, 1], [1, 3], [1, 1], (1, 2)), {"ellipsis_mask": 1}, "ellipsis_mask = 1"),
    (((1, 6), [0, 1], [1, 3], [1, 1], (1, 2)), {"new_axis_mask": 2}, "new_axis_mask = 2"),
    (((1, 6), [0, 2], [1, 3], [1, -1], (1,)), {"shrink_axis_mask": 2}, "stride -1"),
    (((1, 6), [0, 6], [1, 7], [1, 1], (1,)), {"shrink_axis_mask": 2}, "index 6 out of range"),
    (((1, 6), [0, -7], [1, 7], [1, 1], (1,)), {"shrink_axis_mask": 2}, "index -7 out of"),
    (((1, 6), [0], [1], [1], (1, 6)), {}, "one per input dimension|for an input of rank 2"),
    (((1, 6), [0, 0], [1, 6], [1, 0], (1, 6)), {}, "stride 0"),
])
def test_strided_slice_tflm_would_get_wrong_is_refused(tmp_path: Path, args, options,
                                                       message: str) -> None:
    """What TFLM ignores (offset, ellipsis / new-axis masks) or computes garbage for
    (a shrunk axis with a negative stride or an index out of range, fewer bounds than
    dimensions) is one KilomlError naming the operator."""
    path = tmp_path / "slice.tflite"
    path.write_bytes(write_tflite(_slice_graph(*args, **options)))
    with pytest.raises(KilomlError, match=message) as info:
        load_model(path)
    assert "STRIDED_SLICE" in str(info.value) and "\n" not in str(info.value)


def test_sequence_networks_bit_exact_with_tflm() -> None:
    """Unrolled recurrent networks as the converter lays them out: time-major tensors
    ([T, 1, C]) from RESHAPE or TRANSPOSE, time reversed, UNPACK / SPLIT on axis 0, gates,
    a gate SPLIT in float32 between DEQUANTIZE and QUANTIZE, SUB, PACK / CONCATENATION on
    axis 0, MEAN / REDUCE_MAX over time."""
    rng = np.random.default_rng(5)
    kinds = set()
    for seed in range(60):
        graph, inputs = random_sequence(seed)
        kinds.update(op.kind for op in graph.ops)
        reference = Interpreter(graph)
        model = write_tflite(graph)
        for k in range(3):
            xs = inputs if k == 0 else [rng.integers(-128, 128, x.shape).astype(np.int8)
                                        for x in inputs]
            want = tflm_run(model, xs, 1)[0]
            got = reference.run(xs)[0]
            assert got.shape == want.shape, seed
            np.testing.assert_array_equal(got, want, err_msg=f"sequence seed {seed}")
    assert {"RESHAPE", "TRANSPOSE", "STRIDED_SLICE", "UNPACK", "SPLIT", "PACK",
            "CONCATENATION", "SUB", "MEAN", "REDUCE_MAX", "DEQUANTIZE", "QUANTIZE"} <= kinds


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_a_batch_runs_as_its_samples_one_by_one(kind: str) -> None:
    """The reference runs N samples at once when no op touches the batch axis, else one
    at a time: both must give every sample what a run of that sample alone gives."""
    rng = np.random.default_rng(sum(map(ord, kind)))
    for seed in range(8):
        graph, inputs = random_case(kind, seed)
        if any(graph.tensors[i].shape[:1] != (1,) for i in graph.inputs):
            continue  # no batch axis to stack samples on
        batch = [rng.integers(-128, 128, (4, *x.shape[1:])).astype(x.dtype)
                 if x.dtype == np.int8 else
                 rng.normal(size=(4, *x.shape[1:])).astype(x.dtype) for x in inputs]
        reference = Interpreter(graph)
        together = reference.run(batch)
        for i in range(4):
            alone = reference.run([b[i:i + 1] for b in batch])
            for t, a in zip(together, alone, strict=True):
                n = len(a)  # the output's leading axis: 1, or time steps stacked on it
                np.testing.assert_array_equal(t[i * n:(i + 1) * n], a,
                                              err_msg=f"{kind} seed {seed}")
