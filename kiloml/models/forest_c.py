"""C for a flattened forest: node tables walked by ``kml_forest_leaf`` ("table",
least flash) or the trees written out as nested if/else ("inline", fewest
instructions). Both end in ``kml_forest_vote`` and decide identically."""

from __future__ import annotations

import numpy as np

from kiloml.codegen.cwriter import c_array, c_float
from kiloml.models.forest import ForestTables

CTYPES = {np.uint8: "uint8_t", np.uint16: "uint16_t", np.uint32: "uint32_t"}


def _ctype(dtype: type) -> str:
    return CTYPES[np.dtype(dtype).type]


def config_lines(t: ForestTables, *, table_walk: bool) -> list[str]:
    lines = [
        f"#define KML_TREE_HEAD_T {_ctype(t.head_dtype) if table_walk else 'uint16_t'}",
        f"#define KML_TREE_REF_T {_ctype(t.ref_dtype)}",
        f"#define KML_TREE_BASE_T {_ctype(t.base_dtype)}",
        f"#define KML_TREE_CLASS_T {_ctype(t.class_dtype)}",
        f"#define KML_TREE_MAX_CLASSES {t.n_classes}",
        f"#define KML_TREE_MAX_TREES {t.n_trees}",
        f"#define KML_TREE_PROBA {t.score_mode}",
    ]
    if t.score_mode == 1:
        lines.append(f"#define KML_TREE_FRACTION_T {_ctype(t.fraction_dtype)}")
    lines.append(f"#define KML_TREE_SPARSE_LEAVES {int(t.sparse_leaves())}")
    shared = t.threshold_table() if table_walk else None
    lines.append(f"#define KML_TREE_INDEXED_THRESHOLDS {int(shared is not None)}")
    if shared is not None:
        lines.append(f"#define KML_TREE_THRESHOLD_INDEX_T {_ctype(shared[1].dtype)}")
    return lines


def runtime_modules(t: ForestTables) -> list[str]:
    return ["kml_trees", "kml_f64"] if t.score_mode else ["kml_trees"]


def _leaf_arrays(t: ForestTables, p: str) -> tuple[list[str], dict[str, str]]:
    """Mixed-leaf constants and the struct fields pointing at them."""
    arrays: list[str] = []
    fields: dict[str, str] = {}
    if t.score_mode == 0:
        return arrays, fields
    class_t = _ctype(t.class_dtype)
    if t.score_mode == 1 and not t.sparse_leaves():
        frac_t = _ctype(t.fraction_dtype)
        arrays.append(c_array(frac_t, f"{p}entry_num", t.leaf_num.ravel(),
                              per_line=t.n_classes))
        fields.update(entry_num=f"{p}entry_num")
        return arrays, fields
    starts, classes, nums, values = [0], [], [], []
    for m in range(t.n_mixed):
        for k in np.flatnonzero(t.leaf_proba[m]):
            classes.append(int(k))
            if t.score_mode == 1:
                nums.append(int(t.leaf_num[m, k]))
            else:
                values.append(int(t.leaf_proba[m, k:k + 1].view(np.uint64)[0]))
        starts.append(len(classes))
    arrays.append(c_array("uint16_t", f"{p}leaf_start", starts, per_line=16))
    arrays.append(c_array(class_t, f"{p}entry_class", classes, per_line=16))
    fields.update(leaf_start=f"{p}leaf_start", entry_class=f"{p}entry_class")
    if t.score_mode == 1:
        frac_t = _ctype(t.fraction_dtype)
        arrays.append(c_array(frac_t, f"{p}entry_num", nums, per_line=16))
        fields.update(entry_num=f"{p}entry_num")
    else:
        arrays.append(c_array("uint64_t", f"{p}entry_value", values,
                              fmt=lambda v: f"0x{v:016x}ull", per_line=4))
        fields.update(entry_value=f"{p}entry_value")
    return arrays, fields


def _struct(t: ForestTables, p: str, fields: dict[str, str]) -> str:
    head = {
        "n_trees": str(t.n_trees),
        "n_classes": str(t.n_classes),
        "max_depth": str(t.max_depth),
        "margin": c_float(t.margin),
        "inv_trees": c_float(np.float32(1.0) / np.float32(t.n_trees)),
    }
    body = ",\n".join(f"    .{k} = {v}" for k, v in {**head, **fields}.items())
    return f"static const kml_forest_t {p}forest = {{\n{body}\n}};\n"


def emit_table(t: ForestTables, p: str, input_expr: str, output_expr: str
               ) -> tuple[list[str], str, str]:
    """(config lines, constants, call) for the table-walking kernel."""
    ref_t = _ctype(t.ref_dtype)
    arrays = [
        c_array(_ctype(t.base_dtype), f"{p}tree_base", t.tree_base, per_line=12),
        c_array(_ctype(t.head_dtype), f"{p}head", t.heads(), per_line=16),
    ]
    fields = {"tree_base": f"{p}tree_base", "head": f"{p}head"}
    shared = t.threshold_table()
    if shared is None:
        arrays.append(c_array("float", f"{p}threshold", t.threshold, fmt=c_float, per_line=6))
    else:
        table, index = shared
        arrays.append(c_array("float", f"{p}threshold", table, fmt=c_float, per_line=6))
        arrays.append(c_array(_ctype(index.dtype), f"{p}threshold_index", index, per_line=16))
        fields["threshold_index"] = f"{p}threshold_index"
    fields["threshold"] = f"{p}threshold"
    for name, values in (("left", t.left), ("right", t.right)):
        arrays.append(c_array(ref_t, f"{p}{name}", values, per_line=16))
        fields[name] = f"{p}{name}"
    arrays.append(c_array("uint8_t", f"{p}nan_left",
                          np.packbits(t.nan_left, bitorder="little"), per_line=16))
    fields["nan_left"] = f"{p}nan_left"
    leaf_arrays, leaf_fields = _leaf_arrays(t, p)
    constants = "\n".join([*arrays, *leaf_arrays, _struct(t, p, {**fields, **leaf_fields})])
    call = f"{output_expr}->label = kml_forest_predict(&{p}forest, {input_expr}, " \
           f"{output_expr}->scores);"
    return config_lines(t, table_walk=True), constants, call


def emit_inline(t: ForestTables, p: str, input_expr: str, output_expr: str
                ) -> tuple[list[str], str, str]:
    """(config lines, constants, call) with every tree written out as if/else code.

    All leaves pure: the leaves count votes in registers. Otherwise they record their
    payload (for the exact path) and add their float32 terms to register sums; the
    decision is then the one kml_forest_vote makes, written out on those registers."""
    k_range = range(t.n_classes)
    votes = t.score_mode == 0
    inv = c_float(np.float32(1.0) / np.float32(t.n_trees))
    lines = [f"static int32_t {p}predict(const float *x, float *scores)", "{"]
    if votes:
        lines.append("    int32_t " + ", ".join(f"v{k} = 0" for k in k_range) + ";")
    else:
        lines.append(f"    uint16_t payloads[{t.n_trees}];")
        lines.append("    float " + ", ".join(f"s{k} = 0.0f" for k in k_range) + ";")
    for tree in range(t.n_trees):
        lines.append(f"    /* tree {tree} */")
        _emit_node(t, tree, 0, 1, lines, votes)
    acc = "v" if votes else "s"
    lines.append("    {")
    lines.append(f"        {'int32_t' if votes else 'float'} lead = {acc}0;")
    if not votes:
        lines.append("        float second = 0.0f;")
    lines.append("        int32_t best = 0;")
    for k in k_range[1:]:
        if votes:
            lines.append(f"        if ({acc}{k} > lead) {{ lead = {acc}{k}; best = {k}; }}")
        else:
            lines.append(f"        if ({acc}{k} > lead) {{ second = lead; lead = {acc}{k}; "
                         f"best = {k}; }} else if ({acc}{k} > second) {{ second = {acc}{k}; }}")
    if not votes:
        lines.append(f"        if (!(lead - second > {c_float(t.margin)})) {{")
        lines.append(f"            return kml_forest_exact_vote(&{p}forest, payloads, scores);")
        lines.append("        }")
    for k in k_range:
        value = f"(float){acc}{k}" if votes else f"{acc}{k}"
        lines.append(f"        scores[{k}] = {value} * {inv};")
    lines.append("        return best;")
    lines.append("    }")
    lines.append("}")
    parts = []
    if not votes:
        leaf_arrays, leaf_fields = _leaf_arrays(t, p)
        parts = [*leaf_arrays, _struct(t, p, leaf_fields)]
    constants = "\n".join([*parts, "\n".join(lines) + "\n"])
    call = f"{output_expr}->label = {p}predict({input_expr}, {output_expr}->scores);"
    return config_lines(t, table_walk=False), constants, call


def _emit_node(t: ForestTables, tree: int, node: int, depth: int, lines: list[str],
               votes: bool) -> None:
    pad = "    " * depth
    i = int(t.tree_base[tree]) + node
    x = f"x[{int(t.feature[i])}]"
    threshold = c_float(t.threshold[i])
    cond = f"!({x} > {threshold})" if t.nan_left[i] else f"{x} <= {threshold}"
    lines.append(f"{pad}if ({cond}) {{")
    for side, (ref, is_leaf) in enumerate(((t.left[i], t.left_is_leaf[i]),
                                           (t.right[i], t.right_is_leaf[i]))):
        if side == 1:
            lines.append(f"{pad}}} else {{")
        if not is_leaf:
            _emit_node(t, tree, int(ref), depth + 1, lines, votes)
        elif votes:
            lines.append(f"{pad}    v{int(ref)} += 1;")
        else:
            lines.append(f"{pad}    payloads[{tree}] = {int(ref)};")
            for k, term in t.fast_terms(int(ref)):
                lines.append(f"{pad}    s{k} += {c_float(term)};")
    lines.append(f"{pad}}}")
