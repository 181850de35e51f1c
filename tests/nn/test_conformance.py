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

from kiloml.nn.conformance import GENERATORS, random_case
from kiloml.nn.graph import SUPPORTED_OPS
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
