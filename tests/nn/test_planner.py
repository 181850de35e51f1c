"""The static memory planner: no two live buffers overlap, in-place where legal, bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kiloml.codegen.nn_calls import kernel_call
from kiloml.codegen.nn_planner import STRATEGIES, plan_memory
from kiloml.nn.load import load_model
from kiloml.nn.op_params import prepare

FIXTURES = Path(__file__).parent / "fixtures"


def calls_of(graph):
    return [kernel_call(graph, op, prepare(graph, op)) for op in graph.ops]


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*_int8.tflite")))
def test_live_buffers_never_overlap(name: str) -> None:
    graph = load_model(FIXTURES / name)
    calls = calls_of(graph)
    plan = plan_memory(graph, calls)
    assert set(plan.strategies) == set(STRATEGIES)
    assert plan.arena_bytes == min(plan.strategies.values())
    assert plan.lower_bound_bytes <= plan.arena_bytes or plan.overlapped
    for a in plan.buffers:
        for b in plan.buffers:
            if a is b or a.last < b.first or b.last < a.first:
                continue
            if plan.overlapped.get(a.key) == b.key or plan.overlapped.get(b.key) == a.key:
                continue  # a conv/pool output written over its dying input, by design
            oa = plan.offsets[a.tensors[0]] if a.tensors else plan.scratch_offsets[int(a.key[1:])]
            ob = plan.offsets[b.tensors[0]] if b.tensors else plan.scratch_offsets[int(b.key[1:])]
            assert oa + a.size <= ob or ob + b.size <= oa, (name, a, b)
    for k, offset in plan.offsets.items():
        assert offset % 4 == 0
        assert offset + graph.tensors[k].nbytes <= plan.arena_bytes


def test_reshapes_and_activations_run_in_place() -> None:
    graph = load_model(FIXTURES / "cnn1d_int8.tflite")  # EXPAND_DIMS / RESHAPE around convs
    calls = calls_of(graph)
    plan = plan_memory(graph, calls)
    no_place = plan_memory(graph, calls, in_place=False)
    reshapes = [op.outputs[0] for op in graph.ops if op.kind in ("RESHAPE", "EXPAND_DIMS")]
    assert set(reshapes) <= set(plan.aliased)
    for op in graph.ops:
        if op.kind in ("RESHAPE", "EXPAND_DIMS"):
            assert plan.offsets[op.outputs[0]] == plan.offsets[op.inputs[0]]
    assert plan.arena_bytes < no_place.arena_bytes
    # the arena holds the two largest neighbours of the conv chain at least
    sizes = sorted((graph.tensors[op.outputs[0]].nbytes for op in graph.ops), reverse=True)
    assert plan.arena_bytes >= sizes[0]


def test_lower_bound_is_the_peak_of_live_bytes() -> None:
    graph = load_model(FIXTURES / "dscnn_int8.tflite")
    plan = plan_memory(graph, calls_of(graph))
    live = np.array(plan.live_bytes())
    assert plan.lower_bound_bytes == live.max()
    # a chain of ops: the peak is an op whose input and output are both live
    assert plan.arena_bytes <= 1.1 * plan.lower_bound_bytes
