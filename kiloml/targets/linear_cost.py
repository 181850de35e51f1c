"""The linear stage's cost on a target, analytic: kml_linear's instructions are a linear
function of its work (a float32 multiply-add per coefficient, one per feature for the
error bound, an exp and a division per class), its code and stack are fixed per core
class plus the accumulators of the exact path. The coefficients were measured in QEMU
(the instruction-counting plugin, stack painting, linked sizes) on linear libraries of
1 to 64 features and 2 to 8 classes per core class, and are checked against new
measurements by tests/test_linear.py. The exact path (near ties only) is not in the
instruction count; ``exact_path_instructions`` bounds it.
"""

from __future__ import annotations

import numpy as np

# instructions of kml_run_model for a linear model's fast path: call + mac * S*F +
# feature * F + class * K (multiclass: kml_expf and a division per class) or binary
# (one score: a two-class softmax); fitted (nnls) on 7 linear models per core class,
# 1 to 64 features, 2 to 8 classes, in QEMU: within 3% of every one
LINEAR_INSTRUCTIONS: dict[str, dict[str, float]] = {
    "cortex-m4-fpu-dsp": {"call": 65.6, "mac": 6.09, "feature": 14.6, "class": 133.0,
                          "binary": 156.6},
    "cortex-m7-fpu-dsp": {"call": 71.5, "mac": 6.03, "feature": 15.0, "class": 135.2,
                          "binary": 145.9},
    "cortex-m3": {"call": 0.0, "mac": 95.2, "feature": 134.4, "class": 1586.3,
                  "binary": 2544.8},
    "cortex-m0plus": {"call": 0.0, "mac": 203.1, "feature": 228.8, "class": 3011.9,
                      "binary": 5021.8},
}
# one exact comparison (near ties): base + term * its 2 (F + 1) terms (one score: F + 1)
LINEAR_EXACT: dict[str, dict[str, float]] = {
    "cortex-m4-fpu-dsp": {"base": 200.0, "term": 90.0},
    "cortex-m7-fpu-dsp": {"base": 200.0, "term": 95.0},
    "cortex-m3": {"base": 200.0, "term": 90.0},
    "cortex-m0plus": {"base": 400.0, "term": 280.0},
}
# flash of kml_linear.o's functions beyond its callees in the calibration's function
# table, set so the linked size of those 7 models is matched on average
LINEAR_CODE_BYTES: dict[str, int] = {"cortex-m4-fpu-dsp": 1250, "cortex-m7-fpu-dsp": 1170,
                                     "cortex-m3": 880, "cortex-m0plus": 1880}
# stack of kml_run_model's deepest path (the exact path) beyond its accumulators
LINEAR_STACK_BYTES: dict[str, int] = {"cortex-m4-fpu-dsp": 200, "cortex-m7-fpu-dsp": 200,
                                      "cortex-m3": 200, "cortex-m0plus": 220}
# the runtime and libgcc functions kml_linear calls (those a core class links appear in
# its calibration's function table: soft-float on cores without an FPU)
LINEAR_CALLEES = ("kml_expf", "__aeabi_fadd", "__aeabi_fsub", "__aeabi_fmul", "__aeabi_fdiv",
                  "__aeabi_fcmpgt", "__aeabi_fcmplt", "__aeabi_fcmpge", "__aeabi_fcmple",
                  "__aeabi_fcmpeq", "__aeabi_fcmpun", "__aeabi_lmul", "memcpy", "memset")


def _table(profile, tables: dict):
    from kiloml.targets.core_class import CLOSEST_CLASS, core_class

    cls = core_class(profile)
    if cls not in tables:
        cls = CLOSEST_CLASS.get(cls, "cortex-m4-fpu-dsp" if profile.has_fpu else "cortex-m3")
    return tables.get(cls, tables["cortex-m4-fpu-dsp" if profile.has_fpu else "cortex-m3"])


def linear_instructions(profile, t) -> float:
    c = _table(profile, LINEAR_INSTRUCTIONS)
    per_class = c["binary"] if t.n_scores == 1 else c["class"] * t.n_classes
    return c["call"] + c["mac"] * t.n_scores * t.n_features + c["feature"] * t.n_features \
        + per_class


def exact_path_instructions(profile, t) -> float:
    """The exact path's instructions at most (every comparison it can make: S - 1, one
    for a single score), on top of the fast path's."""
    c = _table(profile, LINEAR_EXACT)
    if t.n_scores == 1:
        return c["base"] + c["term"] * (t.n_features + 1)
    return (t.n_scores - 1) * (c["base"] + c["term"] * 2 * (t.n_features + 1))


def linear_code_bytes(profile) -> int:
    return int(_table(profile, LINEAR_CODE_BYTES))


def linear_stack_bytes(profile, t) -> int:
    return int(_table(profile, LINEAR_STACK_BYTES)) + 8 * t.limbs + 8 * (t.n_scores + 1)


def untrained_linear(config, n_classes: int, n_features: int):
    """A LinearModel of the shape the config trains (random coefficients of a typical
    range): tables, code and instructions are those of the trained model; only the exact
    path's accumulator width depends on the trained coefficients' exponents."""
    from kiloml.models.linear import LinearModel
    from kiloml.models.linear_tables import LinearTables

    scores = 1 if n_classes == 2 else n_classes
    rng = np.random.default_rng(0)
    tables = LinearTables(rng.normal(size=(scores, n_features)), rng.normal(size=scores),
                          n_classes, tie="last" if getattr(config, "multi_class", "") == "ovr"
                          and scores > 1 else "first")
    return LinearModel.from_tables(tables, config, config.kind)
