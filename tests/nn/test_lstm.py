"""Recurrent networks converted by TensorFlow (issue 13, item 3).

Keras ``LSTM(..., unroll=True)`` / ``GRU(..., unroll=True)`` become hundreds of int8
operators: the input made time-major ([1, T, C] -> [T, 1, C] by a RESHAPE, whose
leading axis is time, not the batch), cut into steps (UNPACK), FULLY_CONNECTED gates,
SPLIT, LOGISTIC / TANH, MUL / ADD (SUB for a GRU's 1 - z), PACK for return_sequences.
The reference interpreter used to give that RESHAPE the batch's leading axis ("cannot
reshape array of size 60 into shape (1,1,3)"). Here every such fixture (made by
tests/nn/fixtures/make_fixtures.py, group rnn) must be bit-exact: reference vs the TFLM
interpreter, the generated C on the host and on the emulated Cortex-M4F vs the
reference; and a fused UNIDIRECTIONAL_SEQUENCE_LSTM, which kiloml does not have, is one
line naming the operator.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from kiloml.codegen.nn_c import emit_network
from kiloml.errors import KilomlError
from kiloml.nn.c_parity import ParityRunner
from kiloml.nn.conformance import random_sequence, random_strided_slice
from kiloml.nn.load import load_model
from kiloml.nn.reference import Interpreter
from tests.conftest import assert_user_error, run_cli

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

FIXTURES = Path(__file__).parent / "fixtures"
# file -> operator kinds it must contain beyond the common cell (converter's layout)
RNN_FIXTURES = {
    "lstm_int8.tflite": set(),
    "lstm_seq_int8.tflite": {"PACK"},
    "gru_int8.tflite": {"SUB", "STRIDED_SLICE"},
    "lstm_stacked_int8.tflite": {"PACK"},
    "gru_bidirectional_int8.tflite": {"SUB", "CONCATENATION"},
}
CELL_OPS = {"RESHAPE", "UNPACK", "FULLY_CONNECTED", "SPLIT", "LOGISTIC", "TANH", "MUL", "ADD",
            "SOFTMAX"}
# Random int8 inputs per fixture, reference vs TFLM and vs the host C (the reference runs
# ~100 samples a second on these graphs; KILOML_RNN_INPUTS=1000 for a longer check).
N_INPUTS = int(os.environ.get("KILOML_RNN_INPUTS", "200"))
N_M4 = 12  # of them, reference vs the emulated Cortex-M4F (one QEMU run)


@functools.cache
def _graph(name: str):
    return load_model(FIXTURES / name)


@functools.cache
def _reference(name: str) -> tuple[np.ndarray, np.ndarray]:
    """N_INPUTS random int8 inputs of a fixture and the reference's outputs (once per
    process: the TFLM, host and M4 tests compare against the same values)."""
    graph = _graph(name)
    x = _inputs(graph, N_INPUTS, 13)
    return x, Interpreter(graph).run([x])[0]


def _inputs(graph, n: int, seed: int) -> np.ndarray:
    shape = graph.input_tensors[0].shape
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, size=(n, *shape[1:])).astype(np.int8)


@pytest.fixture(scope="module")
def graphs() -> dict:
    return {name: _graph(name) for name in RNN_FIXTURES}


@pytest.mark.parametrize("name", RNN_FIXTURES)
def test_fixture_is_an_unrolled_recurrent_network(name: str, graphs: dict) -> None:
    graph = graphs[name]
    kinds = {op.kind for op in graph.ops}
    assert CELL_OPS | RNN_FIXTURES[name] <= kinds, kinds
    assert len(graph.ops) > 100  # hundreds of operators
    assert (FIXTURES / name).stat().st_size < 150 * 1024
    # the time-major tensors whose leading axis is not the batch
    assert any(graph.tensors[op.outputs[0]].shape[0] > 1 for op in graph.ops
               if op.kind in ("RESHAPE", "PACK"))


def test_the_reported_model_runs(graphs: dict) -> None:
    """The issue's shape: [1, 20, 3] made time-major by a RESHAPE into [20, 1, 3], then a
    RESHAPE of 60 elements... the reference used to give the first one shape (1, 1, 3)."""
    graph = graphs["lstm_int8.tflite"]
    first = graph.ops[0]
    assert first.kind == "RESHAPE"
    assert graph.tensors[first.inputs[0]].shape == (1, 20, 3)
    assert graph.tensors[first.outputs[0]].shape == (20, 1, 3)
    trace: dict = {}
    out = Interpreter(graph).run([_inputs(graph, 1, 0)], trace)[0]
    assert out.shape == (1, 3)
    assert trace[first.outputs[0]].shape == (20, 1, 3)


@pytest.mark.parametrize("name", RNN_FIXTURES)
def test_reference_bit_exact_with_tflm(name: str) -> None:
    x, got = _reference(name)
    interpreter = runtime.Interpreter.from_file(str(FIXTURES / name), arena_size=1 << 20)
    exact = 0
    for i in range(len(x)):
        interpreter.set_input(x[i:i + 1], 0)
        interpreter.invoke()
        want = interpreter.get_output(0)
        exact += bool(np.array_equal(got[i:i + 1].reshape(want.shape), want))
    assert exact == N_INPUTS, f"{name}: {exact}/{N_INPUTS} bit-exact with TFLM"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> ParityRunner:
    return ParityRunner(tmp_path_factory.mktemp("rnn_host"), "host")


@pytest.mark.parametrize("name", RNN_FIXTURES)
def test_host_c_bit_exact(name: str, graphs: dict, host: ParityRunner) -> None:
    x, want = _reference(name)
    got = host.run(graphs[name], [x])[0]
    exact = sum(np.array_equal(got[i], want[i]) for i in range(N_INPUTS))
    assert exact == N_INPUTS, f"{name}: {exact}/{N_INPUTS} host C bit-exact"


def test_cortex_m4_bit_exact(graphs: dict, tmp_path_factory: pytest.TempPathFactory) -> None:
    """One QEMU run (mps2-an386) of the GRU, the largest fixture, with the DSP kernels."""
    name = "gru_int8.tflite"
    x, want = _reference(name)
    runner = ParityRunner(tmp_path_factory.mktemp("rnn_m4"), "cortex-m4f")
    got = runner.run(graphs[name], [x[:N_M4]])[0]
    exact = sum(np.array_equal(got[i], want[i]) for i in range(N_M4))
    assert exact == N_M4, f"{name}: {exact}/{N_M4} Cortex-M4F bit-exact"


def test_memory_plan_and_codegen_scale(graphs: dict) -> None:
    """Hundreds of operators: the planner's arena stays within 64 bytes of its lower
    bound (what is alive at once), far below all activations together, and the C is
    generated in seconds."""
    for name, graph in graphs.items():
        start = time.perf_counter()
        net = emit_network(graph)
        elapsed = time.perf_counter() - start
        plan = net.plan
        assert elapsed < 5.0, (name, elapsed)
        assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.lower_bound_bytes + 64, name
        activations = sum(t.nbytes for t in graph.tensors if not t.is_constant)
        assert plan.arena_bytes * 4 < activations, name  # buffers reused across time steps


def test_dynamic_batch_lstm_folds_its_zero_state(tmp_path: Path) -> None:
    """With a dynamic batch the converter builds the zero initial states at run time
    (SHAPE -> STRIDED_SLICE -> PACK -> FILL; TFLM refuses FILL with non-constant dims).
    kiloml folds them into constants; a FULLY_CONNECTED on the constant state stays and
    its input is a flash table in the C."""
    path = FIXTURES / "lstm_dynamic_batch.tflite"
    graph = load_model(path)
    kinds = {op.kind for op in graph.ops}
    assert not kinds & {"SHAPE", "FILL"} and "TRANSPOSE" in kinds
    on_constants = [op for op in graph.ops if op.kind == "FULLY_CONNECTED"
                    and graph.tensors[op.inputs[0]].is_constant]
    assert on_constants
    zeros = graph.tensors[on_constants[0].inputs[0]]
    assert np.all(zeros.data == zeros.quant.zp)  # real 0 in that tensor's quantization
    with pytest.raises(RuntimeError):
        runtime.Interpreter.from_file(str(path), arena_size=1 << 20)
    x = _inputs(graph, 40, 3)
    want = Interpreter(graph).run([x])[0]
    got = ParityRunner(tmp_path / "host", "host").run(graph, [x])[0]
    np.testing.assert_array_equal(got, want)


def test_fused_lstm_is_refused_naming_the_operator() -> None:
    path = FIXTURES / "lstm_fused_unsupported.tflite"
    with pytest.raises(KilomlError, match="unsupported operator UNIDIRECTIONAL_SEQUENCE_LSTM"):
        load_model(path)
    result = run_cli("model", "info", str(path))
    assert_user_error(result, "lstm_fused_unsupported.tflite", "UNIDIRECTIONAL_SEQUENCE_LSTM",
                      "operator 0")


def test_model_commands_end_to_end(tmp_path: Path) -> None:
    """info, run, compile and verify on the reported LSTM (host target)."""
    model = FIXTURES / "lstm_int8.tflite"
    graph = load_model(model)
    info = run_cli("model", "info", str(model), "--json")
    assert info.exit_code == 0, info.stderr
    assert len(json.loads(info.stdout)["operators"]) == len(graph.ops)
    x = _inputs(graph, 16, 21)
    np.save(tmp_path / "x.npy", x)
    ran = run_cli("model", "run", str(model), "--inputs", str(tmp_path / "x.npy"),
                  "--output", str(tmp_path / "y.npy"))
    assert ran.exit_code == 0, ran.stderr
    want = Interpreter(graph).run([x])[0]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    compiled = run_cli("model", "compile", str(model), "--target", "host", "--out",
                       str(tmp_path / "lib"))
    assert compiled.exit_code == 0, compiled.stderr
    resources = json.loads((tmp_path / "lib" / "resources.json").read_text())
    assert resources["parity"]["host"]["bit_exact"] == resources["parity"]["host"]["n"] > 0
    verified = run_cli("model", "verify", str(model), "--inputs", str(tmp_path / "x.npy"),
                       "--target", "host", "--output", str(tmp_path / "c.npy"))
    assert verified.exit_code == 0, verified.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), want)


def test_sequence_graphs_and_slices_in_c(host: ParityRunner) -> None:
    """The random unrolled networks and STRIDED_SLICE mask cases (bit-exact with TFLM in
    test_conformance.py) give the reference's outputs in the host C too."""
    rng = np.random.default_rng(8)
    for seed in range(12):
        for make in (random_sequence, random_strided_slice):
            graph, inputs = make(seed)
            x = rng.integers(-128, 128, (4, *inputs[0].shape)).astype(np.int8)  # 4 runs
            got = host.run(graph, [x])[0]
            reference = Interpreter(graph)
            for i in range(4):
                want = reference.run([x[i]])[0]
                np.testing.assert_array_equal(got[i].reshape(want.shape), want,
                                              err_msg=f"{make.__name__} seed {seed} #{i}")
