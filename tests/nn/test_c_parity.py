"""Parity of the generated C with the reference interpreter (and so with TFLM) on the
conformance models and the converter-made fixtures: on the host, and on the emulated
Cortex-M4 with the DSP fast paths and with the portable kernels.

The suite runs a sample of the conformance cases per operator; `bench/nn_parity.py` runs
all of them (every operator x 40 cases) on every platform and path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kiloml.codegen.nn_c import emit_network
from kiloml.nn.c_parity import ParityRunner
from kiloml.nn.conformance import GENERATORS, random_case, random_chain
from kiloml.nn.load import load_model
from kiloml.nn.reference import Interpreter

FIXTURES = Path(__file__).parent / "fixtures"
INT8_FIXTURES = sorted(p.name for p in FIXTURES.glob("*_int8.tflite"))
WEIGHTED = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")  # the ops with fast paths
PLATFORMS = [("host", False), ("cortex-m4f", False), ("cortex-m4f", True)]


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return {}


def _runner(runners: dict, tmp_path_factory, target: str, portable: bool) -> ParityRunner:
    key = (target, portable)
    if key not in runners:
        runners[key] = ParityRunner(tmp_path_factory.mktemp(f"{target}_{portable}"), target,
                                    portable=portable)
    return runners[key]


def _check(runner: ParityRunner, kind: str, seeds: range) -> None:
    for seed in seeds:
        graph, inputs = random_case(kind, seed)
        want = Interpreter(graph).run(inputs)
        got = runner.run(graph, [x[None] for x in inputs])
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g.reshape(w.shape), w,
                                          err_msg=f"{kind} seed {seed} on {runner.target}")


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_every_operator_on_host_and_m4(kind: str, runners: dict, tmp_path_factory) -> None:
    seeds = range(12) if kind in WEIGHTED else range(6)
    _check(_runner(runners, tmp_path_factory, "host", False), kind, seeds)
    _check(_runner(runners, tmp_path_factory, "cortex-m4f", False), kind, range(3))


@pytest.mark.parametrize("kind", WEIGHTED)
@pytest.mark.parametrize("portable", [False, True])
def test_fast_path_ops_on_m4_both_kernel_paths(kind: str, portable: bool, runners: dict,
                                               tmp_path_factory) -> None:
    _check(_runner(runners, tmp_path_factory, "cortex-m4f", portable), kind, range(3, 40, 3))


@pytest.mark.parametrize("name", INT8_FIXTURES)
@pytest.mark.parametrize(("target", "portable"), PLATFORMS)
def test_converter_fixtures(name: str, target: str, portable: bool, runners: dict,
                            tmp_path_factory) -> None:
    graph = load_model(FIXTURES / name)
    shape = graph.input_tensors[0].shape
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, size=(20, *shape[1:]) if shape[0] == 1 else (1, *shape)
                     ).astype(np.int8)
    runner = _runner(runners, tmp_path_factory, target, portable)
    got = runner.run(graph, [x])[0]
    reference = Interpreter(graph)
    for i in range(len(x)):
        want = reference.run([x[i:i + 1] if shape[0] == 1 else x[i]])[0]
        np.testing.assert_array_equal(got[i].reshape(want.shape), want, err_msg=f"{name} #{i}")


def _check_chains(runner: ParityRunner, seeds: range) -> int:
    overlapped = 0
    for seed in seeds:
        graph, inputs = random_chain(seed)
        want = Interpreter(graph).run(inputs)[0]
        got = runner.run(graph, [x[None] for x in inputs])[0]
        np.testing.assert_array_equal(got.reshape(want.shape), want,
                                      err_msg=f"chain {seed} on {runner.target}")
        overlapped += bool(emit_network(graph).plan.overlapped)
    return overlapped


@pytest.mark.parametrize(("target", "portable"), PLATFORMS)
def test_chains_with_outputs_over_dying_inputs(target: str, portable: bool, runners: dict,
                                               tmp_path_factory) -> None:
    """Conv / depthwise / pooling chains where the planner writes outputs over the
    inputs they consume: bit-exact on every platform and kernel path."""
    overlapped = _check_chains(_runner(runners, tmp_path_factory, target, portable),
                               range(16))
    assert overlapped >= 12  # the generator really exercises the overlap


def test_overlap_bound_is_tight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four bytes more overlap than overlap_shift allows corrupts some chains: the
    parity above can fail, and the bound is not loose."""
    import kiloml.codegen.nn_calls as calls

    real = calls.overlap_shift
    monkeypatch.setattr(calls, "overlap_shift", lambda *a: real(*a) + 4)
    runner = ParityRunner(tmp_path, "host")
    broken = 0
    for seed in range(16):
        graph, inputs = random_chain(seed)
        want = Interpreter(graph).run(inputs)[0]
        broken += not np.array_equal(runner.run(graph, [x[None] for x in inputs])[0]
                                     .reshape(-1), want.reshape(-1))
    assert broken >= 1


@pytest.mark.parametrize("kind", ["LOGISTIC", "TANH"])
@pytest.mark.parametrize(("target", "portable"), PLATFORMS[:2])
def test_large_logistic_and_tanh_use_the_table(kind: str, target: str, portable: bool,
                                               runners: dict, tmp_path_factory) -> None:
    """From LUT_MIN_ELEMENTS elements the activation is a 256-entry table made by the
    reference interpreter: every int8 input value, for 12 random quantizations."""
    from kiloml.codegen.nn_calls import LUT_MIN_ELEMENTS
    from kiloml.nn.conformance import act_tensor, new_graph

    runner = _runner(runners, tmp_path_factory, target, portable)
    every = np.tile(np.arange(-128, 128, dtype=np.int8), 2).reshape(1, 2, 256)
    for seed in range(12):
        small, _ = random_case(kind, seed)
        qx, qy = small.input_tensors[0].quant, small.output_tensors[0].quant
        g = new_graph(kind.lower())
        x, y = act_tensor(g, "x", every.shape, qx), act_tensor(g, "y", every.shape, qy)
        g.add_op(kind, [x], [y])
        g.inputs, g.outputs = [x], [y]
        assert emit_network(g).calls[0].kernel == "kml_lut_s8" and every.size >= LUT_MIN_ELEMENTS
        want = Interpreter(g).run([every])[0]
        got = runner.run(g, [every])[0]
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=f"{kind} {seed}")
        # and the table is what the per-element kernel computes: the small case in C
        small_want = Interpreter(small).run(random_case(kind, seed)[1])[0]
        small_got = runner.run(small, [a[None] for a in random_case(kind, seed)[1]])[0]
        np.testing.assert_array_equal(small_got.reshape(small_want.shape), small_want)
