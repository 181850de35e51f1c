"""Ahead-of-time C for an int8 graph: constants in flash, one static arena, one call per op.

No interpreter, no flatbuffer, no malloc: the generated function calls the
kml_nn kernels in order with every parameter a compile-time constant and every
activation at an offset the memory planner chose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from kiloml.codegen.cwriter import c_array, c_float
from kiloml.codegen.nn_calls import Arg, CodegenError, KernelCall, kernel_call
from kiloml.codegen.nn_planner import MemoryPlan, plan_memory
from kiloml.nn.analysis import op_macs
from kiloml.nn.graph import Graph
from kiloml.nn.op_params import prepare

_CTYPES = {"int8": "int8_t", "int32": "int32_t", "float32": "float", "int16": "int16_t",
           "uint8": "uint8_t"}
FAST_PATH_KERNELS = ("kml_fc_s8", "kml_conv2d_s8", "kml_dwconv2d_s8")


@dataclass
class NetworkC:
    prefix: str
    source: str            # constants, arena and the invoke function (static)
    invoke: str            # name of the static void (void) function that runs the graph
    input_expr: str        # C expression: pointer to the input tensor in the arena
    output_expr: str       # C expression: pointer to the output tensor
    input_dtype: str
    output_dtype: str
    plan: MemoryPlan
    calls: list[KernelCall]
    constant_bytes: int    # bytes of static const tables and parameter structs
    layers: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    input_exprs: list[str] = field(default_factory=list)   # every graph input, in order
    output_exprs: list[str] = field(default_factory=list)  # every graph output, in order

    def pointer(self, index: int, ctype: str) -> str:
        """C expression: a pointer to tensor ``index`` where the plan put it in the arena
        (an intermediate tensor stays there after the invoke unless a later op reused its
        bytes: kiloml.nn.logits.survive)."""
        return f"({ctype} *)({self.prefix.upper()}ARENA + {self.plan.offsets[index]})"


def _int(v: object) -> str:
    v = int(v)  # type: ignore[arg-type]
    return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)


class _Emitter:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lines: list[str] = []
        self.tables: dict[tuple, str] = {}
        self.constant_bytes = 0

    def table(self, data: np.ndarray, hint: str) -> str:
        data = np.ascontiguousarray(data)
        ctype = _CTYPES[str(data.dtype)]
        key = (ctype, data.tobytes())
        if key not in self.tables:
            name = f"{self.prefix}c{len(self.tables)}"
            fmt = c_float if ctype == "float" else _int
            # hint: a tensor name from the model file, which must not end the comment
            safe = hint.replace("*/", "* /").replace("/*", "/ *")
            self.lines.append(f"/* {safe} */\n" + c_array(ctype, name, data.reshape(-1),
                                                            fmt=fmt, per_line=16))
            self.tables[key] = name
            self.constant_bytes += data.nbytes
        return self.tables[key]

    def struct(self, ctype: str, fields: list[object], n: int) -> str:
        name = f"{self.prefix}p{n}"
        parts = []
        for f in fields:
            parts.append("{" + ", ".join(_int(v) for v in f) + "}" if isinstance(f, list)
                         else _int(f))
        self.lines.append(f"static const {ctype} {name} = {{{', '.join(parts)}}};\n")
        self.constant_bytes += 4 * sum(len(f) if isinstance(f, list) else 1 for f in fields)
        return name


class ParameterPool(Protocol):
    """Where an updatable library's network reads its parameters (kiloml.blob.nn_pool):
    the C expression of an argument it holds (None: the argument is emitted as usual),
    and the invoke function's parameter list."""

    parameters: str

    def argument(self, op_index: int, call: KernelCall, position: int, arg: Arg
                 ) -> str | None: ...


def emit_network(graph: Graph, prefix: str = "kml_nn_", in_place: bool = True,
                 pool: ParameterPool | None = None) -> NetworkC:
    if not graph.ops:
        raise CodegenError("the model has no operators")
    params = [prepare(graph, op) for op in graph.ops]
    calls = [kernel_call(graph, op, p) for op, p in zip(graph.ops, params, strict=True)]
    plan = plan_memory(graph, calls, in_place=in_place)
    e = _Emitter(prefix)
    arena = f"{prefix.upper()}ARENA"
    t = graph.tensors

    def ptr(index: int, ctype: str = "") -> str:
        ctype = ctype or _CTYPES[t[index].dtype]  # a copy kernel takes any data as bytes
        return f"({ctype} *)({arena} + {plan.offsets[index]})"

    body: list[str] = []
    layers: list[dict] = []
    for i, (op, call) in enumerate(zip(graph.ops, calls, strict=True)):
        layers.append({"index": i, "op": op.kind, "kernel": call.kernel,
                       "output_shape": list(t[op.outputs[0]].shape),
                       "macs": op_macs(graph, op),
                       "weight_bytes": sum(t[k].nbytes for k in op.inputs
                                           if k >= 0 and t[k].is_constant),
                       "scratch_bytes": call.scratch_bytes,
                       "fast_path": call.kernel in FAST_PATH_KERNELS
                                    and not call.portable_reason})
        if call.no_op and op.outputs[0] in plan.aliased:
            body.append(f"    KML_NN_LAYER({i}); /* {op.kind}: in place, the same bytes */")
            continue
        args = []
        for position, a in enumerate(call.args):
            held = None if pool is None else pool.argument(i, call, position, a)
            if held is not None:
                args.append(held)
            elif a.kind in ("i32", "u32", "i8"):
                args.append(_int(a.value) + ("u" if a.kind == "u32" else ""))
            elif a.kind == "f32":
                args.append(c_float(a.value))
            elif a.kind == "in" and t[int(a.value)].is_constant:  # type: ignore[arg-type]
                # an op on a constant (a recurrent layer's folded zero state): flash data
                k = int(a.value)  # type: ignore[arg-type]
                args.append(e.table(t[k].data, t[k].name))  # type: ignore[arg-type]
            elif a.kind in ("in", "out"):
                args.append(ptr(int(a.value), a.ctype))  # type: ignore[arg-type]
            elif a.kind == "const":
                args.append(e.table(np.asarray(a.value), a.name or f"op {i}"))
            elif a.kind == "null":
                args.append("NULL")
            elif a.kind == "struct":
                args.append("&" + e.struct(a.ctype, list(a.value), i))  # type: ignore[arg-type]
            elif a.kind in ("ins", "outs"):
                qual = "const int8_t *const" if a.kind == "ins" else "int8_t *const"
                name = f"{prefix}l{i}_{a.kind}"
                items = ", ".join(e.table(t[k].data, t[k].name) if t[k].is_constant
                                  else f"{arena} + {plan.offsets[k]}"
                                  for k in a.value)  # type: ignore[attr-defined]
                e.lines.append(f"static {qual} {name}[{len(a.value)}] = {{{items}}};\n")  # type: ignore[arg-type]
                args.append(name)
            elif a.kind == "scratch":
                args.append(f"(int16_t *)({arena} + {plan.scratch_offsets[i]})"
                            if call.scratch_bytes else "NULL")
            elif a.kind == "acc":
                args.append(f"(int32_t *)({arena} + {plan.scratch_offsets[i]})")
            else:
                raise CodegenError(f"unknown argument kind {a.kind}")
        body.append(f"    KML_NN_LAYER({i}); /* {op.kind} -> {list(t[op.outputs[0]].shape)} */")
        body.append(f"    {call.kernel}({', '.join(args)});")
    body.append(f"    KML_NN_LAYER({len(graph.ops)});")
    words = (plan.arena_bytes + 3) // 4
    invoke = f"{prefix}invoke"
    source = (
        "/* Verification builds define KML_NN_LAYER_MARKS to count instructions per layer. */\n"
        "#ifdef KML_NN_LAYER_MARKS\nvoid kml_mark_stage(int32_t stage);\n"
        "#define KML_NN_LAYER(i) kml_mark_stage(1000 + (i))\n#else\n"
        "#define KML_NN_LAYER(i)\n#endif\n\n"
        + f"/* The arena: every activation and scratch buffer at a planned offset "
          f"({plan.arena_bytes} bytes, {plan.strategy}; lower bound {plan.lower_bound_bytes}). */\n"
          f"static int32_t {prefix}arena[{max(words, 1)}];\n"
          f"#define {arena} ((int8_t *){prefix}arena)\n\n"
        + "".join(e.lines)
        + f"\nstatic void {invoke}({'void' if pool is None else pool.parameters})\n{{\n"
        + "\n".join(body) + "\n}\n")
    notes = []
    slow = sorted({c.kernel for c in calls} - set(FAST_PATH_KERNELS) - {"kml_copy_s8"})
    if slow:
        notes.append("portable C kernels (no DSP fast path) for: " + ", ".join(slow))
    for op, call in zip(graph.ops, calls, strict=True):
        if call.portable_reason:
            notes.append(f"{op.name} ({op.kind}) falls back to the portable kernel: "
                         f"{call.portable_reason}")
    x, y = graph.inputs[0], graph.outputs[0]
    return NetworkC(prefix, source, invoke, ptr(x), ptr(y), t[x].dtype, t[y].dtype, plan,
                    calls, e.constant_bytes, layers, notes,
                    [ptr(k) for k in graph.inputs], [ptr(k) for k in graph.outputs])
