"""The parameters of an updatable network library (docs/blob_format.md, "Networks"): every
int8 weight table in one byte pool, every other number a kernel call takes (biases,
multipliers, shifts, zero points, activation ranges, and the shapes) in one int32 word
pool. The generated code reads both through the pointers kml_blob_activate retargets;
each word carries the range the loader accepts (a shape: exactly its compiled value), so
a hostile blob cannot make a kernel index or shift out of bounds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kiloml.codegen.nn_calls import Arg, KernelCall
from kiloml.errors import KilomlError
from kiloml.nn.graph import Graph

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
# A role: the (lo, hi) the loader accepts for a word, or one of the names below.
FIXED = "fixed"   # a shape or flag: exactly the compiled value
W8 = "w8"         # an int8 table (any bytes)
BIAS = "bias"     # int32 biases, bounded so no accumulator can overflow
PTR = "ptr"       # an arena pointer, NULL or scratch: code, not a parameter
OFFSET = (-128, 128)   # -zero point (input offsets) or zero point
ZP = (-128, 127)
ACT = (-128, 127)
MULT = (0, I32_MAX)
SHIFT = (-31, 31)
LEFT_SHIFT = (0, 31)
DIFF_MIN = (I32_MIN, 0)
ANY = (I32_MIN, I32_MAX)
_CONV = [FIXED] * 17 + [OFFSET, ZP, ACT, ACT]
# kernel -> the role of each argument (a struct's: one per field)
ROLES: dict[str, list] = {
    "kml_fc_s8": [FIXED, FIXED, FIXED, PTR, W8, BIAS, OFFSET, FIXED, ZP, MULT, SHIFT, FIXED,
                  ACT, ACT, PTR, PTR],
    "kml_conv2d_s8": [_CONV, PTR, W8, BIAS, MULT, SHIFT, PTR, PTR],
    "kml_dwconv2d_s8": [_CONV, PTR, W8, BIAS, MULT, SHIFT, PTR, PTR],
    "kml_avgpool_s8": [[FIXED] * 12 + [ACT, ACT], PTR, PTR],
    "kml_maxpool_s8": [[FIXED] * 12 + [ACT, ACT], PTR, PTR],
    "kml_mean_s8": [PTR, FIXED, FIXED, ZP, FIXED, MULT, SHIFT, ZP, PTR, PTR],
    "kml_reduce_max_s8": [PTR, FIXED, FIXED, PTR],
    "kml_softmax_s8": [PTR, FIXED, FIXED, MULT, LEFT_SHIFT, DIFF_MIN, PTR],
    "kml_relu_s8": [PTR, FIXED, ZP, MULT, SHIFT, ZP, ACT, ACT, PTR],
    "kml_clamp_s8": [PTR, FIXED, ACT, ACT, PTR],
    "kml_copy_s8": [PTR, FIXED, PTR],
}
_STRUCT_WORDS = {"kml_conv_params": 21, "kml_pool_params": 14}
MIN_BIAS_BOUND = 1 << 20
SAME = (1, 0)  # the range of a FIXED word: lo > hi, "equal to the compiled-in word"


def _depth(call: KernelCall) -> int:
    """Terms per accumulator of a conv or FC call (for its bias bound)."""
    if call.kernel == "kml_fc_s8":
        return int(call.args[1].value)  # type: ignore[arg-type]
    p = list(call.args[0].value)  # type: ignore[arg-type]
    return int(p[7]) * int(p[8]) * int(p[15])


def bias_bound(call: KernelCall) -> int:
    """|bias| the loader accepts: with |x + in_offset| <= 256 and |w| <= 128 per term (and
    as much again for a fast path's split sums) the accumulator stays in int32."""
    return I32_MAX - 2 * 32768 * _depth(call)


@dataclass
class Pool:
    """The parameters of one network, in the order the generated code reads them."""

    graph: Graph
    prefix: str
    w8: bytearray = field(default_factory=bytearray)
    words: list[int] = field(default_factory=list)
    ranges: list[tuple[int, int]] = field(default_factory=list)  # per word: (lo, hi)

    @property
    def parameters(self) -> str:
        return f"const int8_t *{self.prefix}w8, const int32_t *{self.prefix}pw"

    def word(self, value: int, role) -> int:
        """Append one word; its index."""
        value = int(value)
        lo, hi = SAME if role == FIXED else role
        if role != FIXED and not lo <= value <= hi:
            raise KilomlError(f"[library] updatable = true: a network parameter {value} is "
                              f"outside the range a blob may hold ({lo}..{hi})")
        self.words.append(value)
        self.ranges.append((lo, hi))
        return len(self.words) - 1

    def float_word(self, value: float) -> int:
        return self.word(int(np.array([value], "<f4").view("<i4")[0]), ANY)

    def double_words(self, value: float) -> int:
        lo, hi = np.array([value], "<f8").view("<i4").tolist()
        at = self.word(lo, ANY)
        self.word(hi, ANY)
        return at

    def _table(self, data: np.ndarray, role) -> str:
        data = np.asarray(data)
        if role == W8:
            if data.dtype != np.int8:
                raise KilomlError("[library] updatable = true: a weight table is not int8")
            at = len(self.w8)
            self.w8 += data.reshape(-1).tobytes()
            self.w8 += b"\0" * ((-len(self.w8)) % 4)  # every table 4-byte aligned
            return f"({self.prefix}w8 + {at})"
        if data.dtype != np.int32:
            raise KilomlError(f"[library] updatable = true: a {data.dtype} table cannot "
                              "live in a blob")
        values = data.reshape(-1).tolist()
        if not values:
            return "NULL"
        at = len(self.words)
        for v in values:
            self.word(v, role)
        return f"({self.prefix}pw + {at})"

    def argument(self, op_index: int, call: KernelCall, position: int, arg: Arg
                 ) -> str | None:
        roles = ROLES.get(call.kernel)
        if roles is None or len(roles) != len(call.args):
            raise KilomlError(f"[library] updatable = true: the network's layer {op_index} "
                              f"({call.kernel}) cannot take its parameters from a blob yet")
        role = roles[position]
        if arg.kind in ("in", "out") and self.graph.tensors[int(arg.value)].is_constant:  # type: ignore[arg-type]
            raise KilomlError(f"[library] updatable = true: the network's layer {op_index} "
                              "reads a constant tensor, which cannot live in a blob yet")
        if arg.kind in ("in", "out", "scratch", "acc", "null"):
            return None
        if role == PTR:
            raise AssertionError(f"{call.kernel} argument {position}: {arg.kind}")
        if role == BIAS:
            bound = bias_bound(call)
            if bound < MIN_BIAS_BOUND:
                raise KilomlError(f"[library] updatable = true: layer {op_index} is too deep "
                                  "for a blob's bias bound")
            role = (-bound, bound)
        if arg.kind == "const":
            return self._table(np.asarray(arg.value), role)
        if arg.kind == "struct":
            fields = list(arg.value)  # type: ignore[arg-type]
            if _STRUCT_WORDS.get(arg.ctype) != len(fields) or len(role) != len(fields) or \
                    any(isinstance(f, list) for f in fields):
                raise KilomlError(f"[library] updatable = true: {arg.ctype} cannot live in "
                                  "a blob yet")
            at = len(self.words)
            for value, r in zip(fields, role, strict=True):
                self.word(value, r)
            return f"(const {arg.ctype} *)(const void *)({self.prefix}pw + {at})"
        if arg.kind in ("i32", "u32", "i8"):
            at = self.word(int(arg.value), role)  # type: ignore[arg-type]
            cast = {"i32": "", "u32": "(uint32_t)", "i8": "(int8_t)"}[arg.kind]
            return f"{cast}{self.prefix}pw[{at}]"
        raise KilomlError(f"[library] updatable = true: the network's layer {op_index} "
                          f"({call.kernel}) takes a {arg.kind} argument a blob cannot hold")

    def fixed_words(self) -> list[int]:
        """The words that are code (shapes, flags): the layout hash covers them."""
        return [w for w, r in zip(self.words, self.ranges, strict=True) if r == SAME]

    def segments(self) -> list[tuple[int, int, int]]:
        """(count, lo, hi): runs of words with the same accepted range (lo > hi: each
        equal to the compiled-in word)."""
        out: list[list[int]] = []
        for lo, hi in self.ranges:
            if out and out[-1][1:] == [lo, hi]:
                out[-1][0] += 1
            else:
                out.append([1, lo, hi])
        return [(c, lo, hi) for c, lo, hi in out]
