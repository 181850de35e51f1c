"""Static memory planning for an int8 graph: one arena, an offset per buffer.

Buffers are the activation tensors (graph inputs and outputs included) and each
operator's scratch. A buffer lives from the operator that writes it to the last
one that reads it (graph inputs from the start, outputs to the end, scratch for
its operator only). Reshapes alias their input (same bytes); element-wise
operators whose input dies with them write over it; a convolution, depthwise
convolution or pooling whose input dies with it may write its output over the
input, starting as far before it as its kernel needs (``overlap_shift``: the
output never overwrites an input pixel still to be read); first fit takes that
position when it is free. Several placement orders are
tried, each placing a buffer at the lowest offset where it overlaps no
time-overlapping buffer (first fit); the smallest arena wins. The lower bound for
the operator order is the largest sum of live buffer bytes at any step; overlapped
outputs can take the arena below it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kiloml.codegen.nn_calls import KernelCall
from kiloml.nn.graph import Graph

ALIGN = 4  # word alignment: the DSP kernels load int8 data 32 bits at a time


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    key: str                 # "t<index>" for tensors (alias groups use the root) or "s<op>"
    size: int
    first: int               # first step it is live (-1: before the first operator)
    last: int                # last step it is live
    tensors: list[int] = field(default_factory=list)


@dataclass
class MemoryPlan:
    offsets: dict[int, int]          # tensor index -> byte offset in the arena
    scratch_offsets: dict[int, int]  # op index -> byte offset of its scratch
    arena_bytes: int
    lower_bound_bytes: int
    strategy: str
    strategies: dict[str, int]       # every strategy tried -> its arena bytes
    aliased: list[int]               # tensors that share their input's memory
    buffers: list[Buffer]
    # output buffer key -> the input buffer key it overlaps (conv/pool outputs written over
    # their dying input); the arena can then be below lower_bound_bytes
    overlapped: dict[str, str] = field(default_factory=dict)

    def live_bytes(self) -> list[int]:
        """Bytes live at each step (what the lower bound is the maximum of)."""
        return live_bytes(self.buffers)


class _Groups:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            a = self.parent[a]
        return a

    def union(self, child: int, root: int) -> None:
        self.parent[self.find(child)] = self.find(root)


def _buffers(graph: Graph, calls: list[KernelCall], in_place: bool) -> tuple[list[Buffer],
                                                                              list[int]]:
    t = graph.tensors
    n_ops = len(graph.ops)
    producer = graph.producers()
    last_use: dict[int, int] = {}
    for i, op in enumerate(graph.ops):
        for k in op.inputs:
            if k >= 0 and not t[k].is_constant:
                last_use[k] = i
    for k in graph.outputs:
        last_use[k] = n_ops
    groups = _Groups()
    aliased: list[int] = []
    for i, (op, call) in enumerate(zip(graph.ops, calls, strict=True)):
        if not (call.in_place and in_place):
            continue
        src, dst = op.inputs[0], op.outputs[0]
        if t[src].is_constant or (t[src].nbytes != t[dst].nbytes and not call.no_op):
            continue
        if call.no_op:
            ok = True  # a reshape: same bytes; the group lives as long as either name
        else:
            ok = last_use.get(src) == i and src not in graph.outputs and \
                src not in graph.inputs and t[src].nbytes >= t[dst].nbytes
            root = groups.find(src)
            # the whole alias group must die here, not just this name
            members = [m for m in groups.parent if groups.find(m) == root] or [src]
            ok = ok and all(last_use.get(m, -1) <= i for m in members)
        if ok:
            groups.union(dst, src)
            aliased.append(dst)
    by_root: dict[int, Buffer] = {}
    for k, tensor in enumerate(t):
        if tensor.is_constant or (k not in producer and k not in graph.inputs):
            continue
        root = groups.find(k)
        first = -1 if k in graph.inputs else producer[k]
        last = last_use.get(k, first)
        b = by_root.setdefault(root, Buffer(f"t{root}", 0, first, last))
        b.size = max(b.size, _align(tensor.nbytes))
        b.first, b.last = min(b.first, first), max(b.last, last)
        b.tensors.append(k)
    buffers = list(by_root.values())
    for i, call in enumerate(calls):
        if call.scratch_bytes:
            buffers.append(Buffer(f"s{i}", _align(call.scratch_bytes), i, i))
    return buffers, aliased


def _pairs(graph: Graph, calls: list[KernelCall], buffers: list[Buffer]
           ) -> dict[str, tuple[str, int]]:
    """Overlap candidates: for a windowed op whose input's buffer dies there, the output
    buffer may start ``shift`` bytes after the input buffer (shift <= 0, aligned) and
    overlap it. Maps the output buffer's key to (input buffer key, shift)."""
    of = {k: b for b in buffers for k in b.tensors}
    pairs: dict[str, tuple[str, int]] = {}
    for i, (op, call) in enumerate(zip(graph.ops, calls, strict=True)):
        if call.overlap_shift is None:
            continue
        src, dst = op.inputs[0], op.outputs[0]
        bs, bd = of.get(src), of.get(dst)
        if bs is None or bd is None or bs is bd or bd.key in pairs:
            continue
        if bs.last != i or bd.first != i or src in graph.inputs or src in graph.outputs:
            continue
        shift = -((-min(call.overlap_shift, 0) + ALIGN - 1) // ALIGN * ALIGN)
        if -shift >= bs.size:
            continue  # the output would start before the input ends: no bytes shared
        pairs[bd.key] = (bs.key, shift)
    return pairs


def _first_fit(buffers: list[Buffer], order: list[Buffer],
               pairs: dict[str, tuple[str, int]] | None = None) -> tuple[dict[str, int], int]:
    """Lowest free offset for each buffer in turn. A buffer paired with an already
    placed input buffer takes the overlapping position (input offset + shift) when that
    is free of every other live buffer; otherwise it is placed apart like any other."""
    pairs = pairs or {}
    placed: list[tuple[int, int, Buffer]] = []  # (offset, end, buffer)
    offsets: dict[str, int] = {}

    def free(b: Buffer, offset: int, allowed: str | None) -> bool:
        return offset >= 0 and all(
            e <= offset or offset + b.size <= o or other.last < b.first
            or b.last < other.first or other.key == allowed for o, e, other in placed)

    for b in order:
        offset = None
        pair = pairs.get(b.key)
        if pair and pair[0] in offsets and free(b, offsets[pair[0]] + pair[1], pair[0]):
            offset = offsets[pair[0]] + pair[1]
        for out_key, (in_key, shift) in pairs.items():
            if offset is None and in_key == b.key and out_key in offsets and \
                    free(b, offsets[out_key] - shift, out_key):
                offset = offsets[out_key] - shift
        if offset is None:
            clashes = sorted((o, e) for o, e, other in placed
                             if not (other.last < b.first or b.last < other.first))
            offset = 0
            for o, e in clashes:
                if offset + b.size <= o:
                    break
                offset = max(offset, e)
        offsets[b.key] = offset
        placed.append((offset, offset + b.size, b))
    return offsets, max((e for _, e, _ in placed), default=0)


STRATEGIES: dict[str, Callable[[Buffer], tuple]] = {
    "greedy by size": lambda b: (-b.size, b.first),
    "greedy by lifetime start": lambda b: (b.first, -b.size),
    "greedy by size x lifetime": lambda b: (-b.size * (b.last - b.first + 1), b.first),
    "greedy by longest lifetime": lambda b: (-(b.last - b.first), -b.size),
}


def live_bytes(buffers: list[Buffer]) -> list[int]:
    steps = max((b.last for b in buffers), default=0) + 2
    out = [0] * steps
    for b in buffers:
        for s in range(b.first + 1, b.last + 2):
            out[s] += b.size
    return out


def plan_memory(graph: Graph, calls: list[KernelCall], in_place: bool = True) -> MemoryPlan:
    buffers, aliased = _buffers(graph, calls, in_place)
    pairs = _pairs(graph, calls, buffers) if in_place else {}
    results = {name: _first_fit(buffers, sorted(buffers, key=key), pairs)
               for name, key in STRATEGIES.items()}
    best = min(results, key=lambda name: (results[name][1], list(STRATEGIES).index(name)))
    offsets_by_key, arena = results[best]
    overlapped = sorted(out_key for out_key, (in_key, shift) in pairs.items()
                        if offsets_by_key[out_key] == offsets_by_key[in_key] + shift)
    offsets: dict[int, int] = {}
    scratch: dict[int, int] = {}
    for b in buffers:
        if b.key.startswith("s"):
            scratch[int(b.key[1:])] = offsets_by_key[b.key]
        else:
            for k in b.tensors:
                offsets[k] = offsets_by_key[b.key]
    plan = MemoryPlan(offsets, scratch, arena, 0, best,
                      {name: r[1] for name, r in results.items()}, aliased, buffers,
                      {k: pairs[k][0] for k in overlapped})
    plan.lower_bound_bytes = max(live_bytes(buffers), default=0)
    return plan
