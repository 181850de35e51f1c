"""A network's logits: the tensor the monitor's energy score reads. That is the input of
the SOFTMAX that makes the output (through reshapes and (de)quantization), or the output
itself when the network ends in no softmax. The generated C reads it where the network
left it in the arena (no copy, no RAM): this module finds it, says whether the arena
still holds it when the network has run, and computes its values with the reference
interpreter (bit-exact with the C kernels), together with the scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiloml.nn.graph import Graph

F32 = np.float32
# ops that pass the softmax's values on unchanged in meaning (shape or number format)
PASS_THROUGH = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "QUANTIZE", "DEQUANTIZE")
BATCH = 512


class LogitsError(ValueError):
    """The network's logits cannot be read as the monitor needs them."""


@dataclass(frozen=True)
class Logits:
    index: int        # the tensor
    dtype: str        # "int8" (dequantized as scale x (q - zero_point)) or "float32"
    scale: float      # float32 value (int8)
    zero_point: int
    size: int         # values (the classes)
    softmax: bool     # the input of a SOFTMAX (else the graph's output)

    @property
    def ctype(self) -> str:
        return "int8_t" if self.dtype == "int8" else "float"


def find_logits(graph: Graph, n_classes: int) -> Logits:
    t = graph.tensors
    producer = graph.producers()
    k = graph.outputs[0]
    index, softmax = k, False
    while k in producer:
        op = graph.ops[producer[k]]
        if op.kind == "SOFTMAX":
            index, softmax = op.inputs[0], True
            break
        if op.kind not in PASS_THROUGH:
            break
        k = op.inputs[0]
    tensor = t[index]
    if tensor.dtype not in ("int8", "float32"):
        raise LogitsError(f"the logits ({tensor.name!r}) are {tensor.dtype}, not int8 or "
                          "float32")
    if tensor.size != n_classes:
        raise LogitsError(f"the logits ({tensor.name!r}, shape {list(tensor.shape)}) are not "
                          f"one value per class ({n_classes})")
    if tensor.dtype == "int8" and (tensor.quant is None or tensor.quant.per_channel):
        raise LogitsError(f"the int8 logits ({tensor.name!r}) have no per-tensor scale")
    scale = tensor.quant.s if tensor.dtype == "int8" and tensor.quant else 1.0
    zp = tensor.quant.zp if tensor.dtype == "int8" and tensor.quant else 0
    return Logits(index, tensor.dtype, scale, zp, tensor.size, softmax)


def survive(plan, index: int) -> bool:
    """Whether the arena still holds tensor ``index`` after the last op: no buffer live
    after its last reader is laid over its bytes (kiloml.codegen.nn_planner.MemoryPlan)."""
    own = next(b for b in plan.buffers if index in b.tensors)
    lo = plan.offsets[index]
    hi = lo + own.size
    for b in plan.buffers:
        if b is own or b.last <= own.last:
            continue
        start = plan.scratch_offsets[int(b.key[1:])] if b.key.startswith("s") else \
            plan.offsets[b.tensors[0]]
        if start < hi and lo < start + b.size:
            return False
    return True


def check_logits(graph: Graph, n_classes: int) -> Logits:
    """find_logits, and the arena must still hold them after the network (a graph whose ops
    after the SOFTMAX reuse the logits' bytes cannot give the monitor its energy score)."""
    from kiloml.codegen.nn_calls import kernel_call
    from kiloml.codegen.nn_planner import plan_memory
    from kiloml.nn.op_params import prepare

    logits = find_logits(graph, n_classes)
    calls = [kernel_call(graph, op, prepare(graph, op)) for op in graph.ops]
    if not survive(plan_memory(graph, calls), logits.index):
        raise LogitsError(f"the arena reuses the logits ({graph.tensors[logits.index].name!r})"
                          " after the SOFTMAX, so they are gone when the network has run")
    return logits


def dequantize(values: np.ndarray, logits: Logits) -> np.ndarray:
    """float32 logits as the C computes them: scale x (float)(q - zero_point) in float32."""
    if logits.dtype == "float32":
        return np.asarray(values, F32)
    q = np.asarray(values).astype(np.int32) - np.int32(logits.zero_point)
    return (F32(logits.scale) * q.astype(F32)).astype(F32)


def scores_and_logits(model, x: np.ndarray, logits: Logits) -> tuple[np.ndarray, np.ndarray]:
    """A NeuralModel on inputs ``x``: (its scores, float32 [N, K], exactly predict_proba's
    as the device computes them; its float32 logits [N, K]), from one interpreter run."""
    from kiloml.nn.quantize import dequantize_output
    from kiloml.nn.reference import Interpreter

    graph = model.graph
    out_tensor = graph.tensors[graph.outputs[0]]
    n = len(x)
    if n == 0:
        return np.zeros((0, model.n_classes), F32), np.zeros((0, logits.size), F32)
    xq = model.quantized_input(x)
    interpreter = Interpreter(graph)
    raw, found = [], []
    for s in range(0, n, BATCH):
        trace: dict[int, np.ndarray] = {}
        raw.append(interpreter.run([xq[s:s + BATCH]], trace)[0])
        found.append(trace[logits.index])
    y = np.concatenate(raw).reshape(n, -1)
    scores = dequantize_output(y, out_tensor) if out_tensor.dtype == "int8" else \
        y.astype(F32)
    return np.asarray(scores, F32), dequantize(np.concatenate(found).reshape(n, -1), logits)
