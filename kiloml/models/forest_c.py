"""C for a flattened forest: node tables walked by ``kml_forest_leaf`` ("table",
least flash) or the trees written out as nested if/else ("inline", fewest
instructions). Both end in ``kml_forest_vote`` and decide identically."""

from __future__ import annotations

import numpy as np

from kiloml.codegen.cwriter import c_array, c_float
from kiloml.models.forest import ForestTables

CTYPES = {np.uint8: "uint8_t", np.uint16: "uint16_t", np.uint32: "uint32_t"}
# An updatable library ([library] updatable, kiloml.blob): fixed table types, so that
# another version's forest fits the same compiled code (its limits: 16384 features,
# 65535 nodes per forest, 256 classes, uint16 leaf fractions).
UPDATABLE_TYPES = {"head": np.uint16, "ref": np.uint16, "base": np.uint16,
                   "class": np.uint8, "fraction": np.uint16}
UPDATABLE_MIN_TREES = 64  # KML_TREE_MAX_TREES of an updatable library: at least this


def _ctype(dtype: type) -> str:
    return CTYPES[np.dtype(dtype).type]


def config_lines(t: ForestTables, *, table_walk: bool, updatable: bool = False
                 ) -> list[str]:
    if updatable:
        return updatable_config_lines(t)
    lines = [
        f"#define KML_TREE_HEAD_T {_ctype(t.head_dtype) if table_walk else 'uint16_t'}",
        f"#define KML_TREE_REF_T {_ctype(t.ref_dtype)}",
        f"#define KML_TREE_BASE_T {_ctype(t.base_dtype)}",
        f"#define KML_TREE_CLASS_T {_ctype(t.class_dtype)}",
        f"#define KML_TREE_MAX_CLASSES {t.n_classes}",
        f"#define KML_TREE_MAX_TREES {t.n_trees}",
        f"#define KML_TREE_PROBA {t.score_mode}",
    ]
    if t.score_mode in (1, 3):
        lines.append(f"#define KML_TREE_FRACTION_T {_ctype(t.fraction_dtype)}")
    lines.append(f"#define KML_TREE_SPARSE_LEAVES {int(t.sparse_leaves())}")
    shared = t.threshold_table() if table_walk else None
    lines.append(f"#define KML_TREE_INDEXED_THRESHOLDS {int(shared is not None)}")
    if shared is not None:
        lines.append(f"#define KML_TREE_THRESHOLD_INDEX_T {_ctype(shared[1].dtype)}")
    if t.quantized:
        lines += ["#define KML_TREE_INT16_THRESHOLDS 1",
                  f"#define KML_TREE_MAX_INPUTS {t.n_inputs}",
                  f"#define KML_TREE_INPUT_INDEX_T {t.feature_ctype}"]
    return lines


def updatable_config_lines(t: ForestTables) -> list[str]:
    u = {k: _ctype(v) for k, v in UPDATABLE_TYPES.items()}
    lines = [f"#define KML_TREE_HEAD_T {u['head']}", f"#define KML_TREE_REF_T {u['ref']}",
             f"#define KML_TREE_BASE_T {u['base']}", f"#define KML_TREE_CLASS_T {u['class']}",
             f"#define KML_TREE_MAX_CLASSES {t.n_classes}",
             f"#define KML_TREE_MAX_TREES {max(t.n_trees, UPDATABLE_MIN_TREES)}",
             f"#define KML_TREE_PROBA {t.score_mode}"]
    if t.score_mode == 1:
        lines.append(f"#define KML_TREE_FRACTION_T {u['fraction']}")
    return [*lines, "#define KML_TREE_SPARSE_LEAVES 1", "#define KML_TREE_INDEXED_THRESHOLDS 0"]


def heads_as(t: ForestTables, dtype: type) -> np.ndarray:
    """The node heads (feature index, left/right-is-leaf in the two top bits) in ``dtype``."""
    bits = 8 * np.dtype(dtype).itemsize
    head = (t.feature.astype(np.uint32) | (t.left_is_leaf.astype(np.uint32) << (bits - 1))
            | (t.right_is_leaf.astype(np.uint32) << (bits - 2)))
    return head.astype(dtype)


def sparse_entries(t: ForestTables) -> tuple[list[int], list[int], list[int], list[int]]:
    """The mixed leaves as sparse rows: (starts, classes, numerators (modes 1, 3), float64
    bit patterns (mode 2))."""
    integer = t.score_mode in (1, 3)
    starts, classes, nums, values = [0], [], [], []
    for m in range(t.n_mixed):
        for k in np.flatnonzero(t.leaf_proba[m]):
            classes.append(int(k))
            if integer:
                nums.append(int(t.leaf_num[m, k]))
            else:
                values.append(int(t.leaf_proba[m, k:k + 1].view(np.uint64)[0]))
        starts.append(len(classes))
    return starts, classes, nums, values


def runtime_modules(t: ForestTables) -> list[str]:
    return ["kml_trees", "kml_f64"] if t.score_mode in (1, 2) else ["kml_trees"]


def _leaf_arrays(t: ForestTables, p: str, updatable: bool = False
                 ) -> tuple[list[str], dict[str, str]]:
    """Mixed-leaf constants and the struct fields pointing at them."""
    arrays: list[str] = []
    fields: dict[str, str] = {}
    if t.score_mode == 0:
        return arrays, fields
    class_t = _ctype(UPDATABLE_TYPES["class"] if updatable else t.class_dtype)
    integer = t.score_mode in (1, 3)
    if integer and not updatable and not t.sparse_leaves():
        frac_t = _ctype(t.fraction_dtype)
        arrays.append(c_array(frac_t, f"{p}entry_num", t.leaf_num.ravel(),
                              per_line=t.n_classes))
        fields.update(entry_num=f"{p}entry_num")
        return arrays, fields
    starts, classes, nums, values = sparse_entries(t)
    arrays.append(c_array("uint16_t", f"{p}leaf_start", starts, per_line=16))
    arrays.append(c_array(class_t, f"{p}entry_class", classes, per_line=16))
    fields.update(leaf_start=f"{p}leaf_start", entry_class=f"{p}entry_class")
    if integer:
        frac_t = _ctype(UPDATABLE_TYPES["fraction"] if updatable else t.fraction_dtype)
        arrays.append(c_array(frac_t, f"{p}entry_num", nums, per_line=16))
        fields.update(entry_num=f"{p}entry_num")
    else:
        arrays.append(c_array("uint64_t", f"{p}entry_value", values,
                              fmt=lambda v: f"0x{v:016x}ull", per_line=4))
        fields.update(entry_value=f"{p}entry_value")
    return arrays, fields


def inv_total(t: ForestTables) -> np.float32:
    """The float32 factor from integer sums (or float32 sums) to scores."""
    if t.float32_sums:  # another engine's float32 sums are its scores as they are
        return np.float32(1.0)
    total = t.n_trees * (t.leaf_total if t.score_mode == 3 else 1)
    return np.float32(1.0) / np.float32(total)


def _input_arrays(t: ForestTables, p: str) -> tuple[list[str], dict[str, str]]:
    """int16 thresholds: the quantized inputs' features, offsets and scales."""
    if not t.quantized:
        return [], {}
    arrays = [c_array(t.feature_ctype, f"{p}input_feature", t.inputs, per_line=16),
              c_array("float", f"{p}input_offset", t.input_offset, fmt=c_float, per_line=6),
              c_array("float", f"{p}input_scale", t.input_scale, fmt=c_float, per_line=6)]
    fields = {"n_inputs": str(t.n_inputs), "input_feature": f"{p}input_feature",
              "input_offset": f"{p}input_offset", "input_scale": f"{p}input_scale"}
    return arrays, fields


def _struct(t: ForestTables, p: str, fields: dict[str, str]) -> str:
    head = {
        "n_trees": str(t.n_trees),
        "n_classes": str(t.n_classes),
        "max_depth": str(t.max_depth),
        "margin": c_float(t.margin),
        "inv_trees": c_float(inv_total(t)),
    }
    if t.score_mode == 3:
        head["leaf_total"] = str(t.leaf_total)
    body = ",\n".join(f"    .{k} = {v}" for k, v in {**head, **fields}.items())
    return f"static const kml_forest_t {p}forest = {{\n{body}\n}};\n"


def emit_table(t: ForestTables, p: str, input_expr: str, output_expr: str, *,
               updatable: bool = False) -> tuple[list[str], str, str]:
    """(config lines, constants, call) for the table-walking kernel. ``updatable``: the
    fixed types of UPDATABLE_TYPES, one float32 threshold per node, sparse leaves (what
    a parameter blob carries; float thresholds, leaf modes 0-2 only)."""
    if updatable and (t.quantized or t.score_mode == 3):
        raise ValueError("an updatable forest has float32 thresholds and leaf modes 0-2")
    types = UPDATABLE_TYPES if updatable else {"ref": t.ref_dtype, "base": t.base_dtype,
                                               "head": t.head_dtype}
    ref_t = _ctype(types["ref"])
    arrays = [
        c_array(_ctype(types["base"]), f"{p}tree_base", t.tree_base, per_line=12),
        c_array(_ctype(types["head"]), f"{p}head",
                heads_as(t, types["head"]) if updatable else t.heads(), per_line=16),
    ]
    fields = {"tree_base": f"{p}tree_base", "head": f"{p}head"}
    shared = None if updatable else t.threshold_table()
    if t.quantized:
        def thresholds(name: str, values: np.ndarray) -> str:
            return c_array("int16_t", name, values, per_line=12)
    else:
        def thresholds(name: str, values: np.ndarray) -> str:
            return c_array("float", name, values, fmt=c_float, per_line=6)
    if shared is None:
        arrays.append(thresholds(f"{p}threshold", t.qthreshold if t.quantized else t.threshold))
    else:
        table, index = shared
        arrays.append(thresholds(f"{p}threshold", table))
        arrays.append(c_array(_ctype(index.dtype), f"{p}threshold_index", index, per_line=16))
        fields["threshold_index"] = f"{p}threshold_index"
    fields["threshold"] = f"{p}threshold"
    for name, values in (("left", t.left), ("right", t.right)):
        arrays.append(c_array(ref_t, f"{p}{name}", values, per_line=16))
        fields[name] = f"{p}{name}"
    arrays.append(c_array("uint8_t", f"{p}nan_left",
                          np.packbits(t.nan_left, bitorder="little"), per_line=16))
    fields["nan_left"] = f"{p}nan_left"
    leaf_arrays, leaf_fields = _leaf_arrays(t, p, updatable)
    input_arrays, input_fields = _input_arrays(t, p)
    constants = "\n".join([*arrays, *leaf_arrays, *input_arrays,
                           _struct(t, p, {**fields, **leaf_fields, **input_fields})])
    call = f"{output_expr}->label = kml_forest_predict(&{p}forest, {input_expr}, " \
           f"{output_expr}->scores);"
    return config_lines(t, table_walk=True, updatable=updatable), constants, call


def emit_inline(t: ForestTables, p: str, input_expr: str, output_expr: str
                ) -> tuple[list[str], str, str]:
    """(config lines, constants, call) with every tree written out as if/else code.

    Integer votes or integer leaf weights (modes 0, 3): the leaves add to int32
    registers. Otherwise they record their payload (for the exact path) and add their
    float32 terms to register sums; the decision is then the one kml_forest_vote makes,
    written out on those registers. With int16 thresholds the features are quantized
    first (kml_forest_quantize) and the nodes compare integers."""
    k_range = range(t.n_classes)
    ints = t.score_mode in (0, 3)
    inv = c_float(inv_total(t))
    lines = [f"static int32_t {p}predict(const float *x, float *scores)", "{"]
    if t.quantized:
        lines.append(f"    int16_t q[{t.n_inputs}];")
    if ints:
        lines.append("    int32_t " + ", ".join(f"v{k} = 0" for k in k_range) + ";")
    else:
        lines.append(f"    uint16_t payloads[{t.n_trees}];")
        lines.append("    float " + ", ".join(f"s{k} = 0.0f" for k in k_range) + ";")
    if t.quantized:
        lines.append(f"    kml_forest_quantize(&{p}forest, x, q);")
    for tree in range(t.n_trees):
        lines.append(f"    /* tree {tree} */")
        _emit_node(t, tree, 0, 1, lines)
    acc = "v" if ints else "s"
    lines.append("    {")
    lines.append(f"        {'int32_t' if ints else 'float'} lead = {acc}0;")
    if not ints:
        lines.append("        float second = 0.0f;")
    lines.append("        int32_t best = 0;")
    for k in k_range[1:]:
        if ints:
            lines.append(f"        if ({acc}{k} > lead) {{ lead = {acc}{k}; best = {k}; }}")
        else:
            lines.append(f"        if ({acc}{k} > lead) {{ second = lead; lead = {acc}{k}; "
                         f"best = {k}; }} else if ({acc}{k} > second) {{ second = {acc}{k}; }}")
    if not ints:
        lines.append(f"        if (!(lead - second > {c_float(t.margin)})) {{")
        lines.append(f"            return kml_forest_exact_vote(&{p}forest, payloads, scores);")
        lines.append("        }")
    for k in k_range:
        value = f"(float){acc}{k}" if ints else f"{acc}{k}"
        lines.append(f"        scores[{k}] = {value} * {inv};")
    lines.append("        return best;")
    lines.append("    }")
    lines.append("}")
    parts: list[str] = []
    if not ints or t.quantized:  # the exact vote's leaves, the quantizer's grid
        leaf_arrays, leaf_fields = _leaf_arrays(t, p) if not ints else ([], {})
        input_arrays, input_fields = _input_arrays(t, p)
        parts = [*leaf_arrays, *input_arrays,
                 _struct(t, p, {**leaf_fields, **input_fields})]
    constants = "\n".join([*parts, "\n".join(lines) + "\n"])
    call = f"{output_expr}->label = {p}predict({input_expr}, {output_expr}->scores);"
    return config_lines(t, table_walk=False), constants, call


def _emit_node(t: ForestTables, tree: int, node: int, depth: int, lines: list[str]) -> None:
    pad = "    " * depth
    i = int(t.tree_base[tree]) + node
    if t.quantized:
        v, threshold = f"q[{int(t.node_input[i])}]", str(int(t.qthreshold[i]))
        # NaN (KML_TREE_QNAN) is below every threshold: it goes left unless told not to
        cond = f"{v} <= {threshold}" if t.nan_left[i] else \
            f"{v} <= {threshold} && {v} != KML_TREE_QNAN"
    else:
        v, threshold = f"x[{int(t.feature[i])}]", c_float(t.threshold[i])
        cond = f"!({v} > {threshold})" if t.nan_left[i] else f"{v} <= {threshold}"
    lines.append(f"{pad}if ({cond}) {{")
    for side, (ref, is_leaf) in enumerate(((t.left[i], t.left_is_leaf[i]),
                                           (t.right[i], t.right_is_leaf[i]))):
        if side == 1:
            lines.append(f"{pad}}} else {{")
        if not is_leaf:
            _emit_node(t, tree, int(ref), depth + 1, lines)
        elif t.score_mode == 0:
            lines.append(f"{pad}    v{int(ref)} += 1;")
        elif t.score_mode == 3:
            if ref < t.n_classes:
                lines.append(f"{pad}    v{int(ref)} += {t.leaf_total};")
            else:
                row = t.leaf_num[int(ref) - t.n_classes]
                for k in np.flatnonzero(row):
                    lines.append(f"{pad}    v{k} += {int(row[k])};")
        else:
            lines.append(f"{pad}    payloads[{tree}] = {int(ref)};")
            for k, term in t.fast_terms(int(ref)):
                lines.append(f"{pad}    s{k} += {c_float(term)};")
    lines.append(f"{pad}}}")
