"""The model stage of an updatable network library ([library] updatable = true with a
network, docs/blob_format.md "Networks"): the graph's kernel calls are fixed code, every
parameter (weights, biases, multipliers, shifts, zero points, the input standardization
and the output scale) is read from the byte and word pools kml_blob_network() points to.
kml_blob_network_predict runs one feature vector: the same float32 operations as
kiloml.models.neural's emit_c, so host, QEMU and Python agree bit for bit."""

from __future__ import annotations

from dataclasses import dataclass

from kiloml.blob.nn_pool import ZP, Pool
from kiloml.codegen.cwriter import c_array
from kiloml.codegen.nn_c import NetworkC, emit_network
from kiloml.errors import KilomlError

PREDICT = "kml_blob_network_predict"
BUILTIN_NAME = "kml_m_network"


@dataclass(frozen=True)
class NetworkCode:
    pool: Pool
    net: NetworkC
    constants: str  # the network, its pools, the range table and the predict function
    graph_code: str  # what the layout hash covers: the code that does not come from a blob


def network_of(pipeline):
    """The pipeline's NeuralModel, or a one-line KilomlError naming [library] updatable."""
    from kiloml.models.neural import NeuralModel

    model = pipeline.model
    if type(model) is not NeuralModel or model.graph is None:
        raise KilomlError(f"[library] updatable = true: only forests and networks take "
                          f"parameter blobs so far (this model is a {type(model).__name__})")
    t_in, t_out = model.graph.input_tensors[0], model.graph.output_tensors[0]
    if t_in.dtype != "int8" or t_out.dtype != "int8" or len(model.graph.inputs) != 1:
        raise KilomlError("[library] updatable = true takes a network with one int8 input "
                          "and an int8 output")
    return model


def network_code(model, prefix: str, n_inputs: int) -> NetworkCode:
    """The updatable C of ``model`` (its parameters in a :class:`Pool`)."""
    graph = model.graph
    pool = Pool(graph, prefix)
    p = prefix
    pw = "net->words"
    t_in, t_out = graph.input_tensors[0], graph.output_tensors[0]
    # the head of the word pool: standardization, input and output quantization
    k = 0 if model.input_mean is None or model.input_std is None else int(model.input_mean.size)
    for v in (model.input_mean.reshape(-1) if k else []):
        pool.float_word(float(v))
    for v in (model.input_std.reshape(-1) if k else []):
        pool.float_word(float(v))
    in_scale = pool.float_word(float(t_in.quant.s))
    in_zp = pool.word(t_in.quant.zp, ZP)
    out_scale = pool.double_words(float(t_out.quant.scale[0]))
    out_zp = pool.word(t_out.quant.zp, ZP)
    net = emit_network(graph, prefix=prefix, pool=pool)
    if k:
        at = "" if k == 1 else f" % {k}"
        index = "0" if k == 1 else f"{p}i{at}"
        value = (f"(features[{p}i] - {p}f32({pw} + {index})) / "
                 f"{p}f32({pw} + {k} + {index})")
    else:
        value = f"features[{p}i]"
    predict = f"""
static float {p}f32(const int32_t *w)
{{
    union {{
        uint32_t u;
        float f;
    }} v;
    v.u = (uint32_t)w[0];
    return v.f;
}}

static double {p}f64(const int32_t *w)
{{
    union {{
        uint64_t u;
        double d;
    }} v;
    v.u = (uint64_t)(uint32_t)w[0] | ((uint64_t)(uint32_t)w[1] << 32);
    return v.d;
}}

/* One feature vector through the network `net` (kml_blob_network() or a candidate):
 * standardize, quantize, invoke, arg-max (the first maximum) and dequantized scores. */
int32_t {PREDICT}(const kml_blob_network_t *net, const float *features, float *scores)
{{
    int8_t *{p}x = {net.input_expr};
    const int8_t *{p}y = {net.output_expr};
    const float {p}scale = {p}f32({pw} + {in_scale});
    const double {p}out_scale = {p}f64({pw} + {out_scale});
    int32_t {p}i, {p}k, {p}best = 0;
    for ({p}i = 0; {p}i < {n_inputs}; ++{p}i) {{
        float {p}q = ({value}) / {p}scale;
        int32_t {p}r;
        {p}q = {p}q > 1000.0f ? 1000.0f : ({p}q >= -1000.0f ? {p}q : -1000.0f);
        {p}r = (int32_t)roundf({p}q) + {pw}[{in_zp}];
        {p}x[{p}i] = (int8_t)({p}r > 127 ? 127 : ({p}r < -128 ? -128 : {p}r));
    }}
    {net.invoke}(net->w8, {pw});
    for ({p}k = 0; {p}k < {model.n_classes}; ++{p}k) {{
        if ({p}y[{p}k] > {p}y[{p}best]) {{
            {p}best = {p}k;
        }}
        scores[{p}k] = (float)({p}out_scale * (double)({p}y[{p}k] - {pw}[{out_zp}]));
    }}
    return {p}best;
}}
"""
    if len(pool.w8) == 0:
        pool.w8 += b"\0" * 4
    segments = pool.segments()
    w8 = c_array("int8_t", f"{p}w8_builtin", list(memoryview(bytes(pool.w8)).cast("b")),
                 per_line=16)
    words = c_array("int32_t", f"{p}pw_builtin", pool.words, per_line=8)
    rows = ",\n    ".join(f"{{{c}, {_i32(lo)}, {_i32(hi)}}}" for c, lo, hi in segments)
    constants = (f"{net.source}\n/* ---- the network's parameters (compiled in; a blob's "
                 f"after kml_blob_activate) ---- */\n{w8}\n{words}\n"
                 f"static const kml_blob_network_t {BUILTIN_NAME} = {{{p}w8_builtin, "
                 f"{p}pw_builtin}};\n\n/* the range of each parameter word a blob may "
                 f"hold: {{count, lo, hi}}; lo > hi: the compiled-in word */\n"
                 f"const int32_t kml_blob_nn_ranges[{len(segments)}][3] = {{\n    {rows}\n}};\n"
                 f"{predict}")
    graph_code = "\n".join([net.source, predict, repr(segments), repr(pool.fixed_words()),
                            str(len(pool.w8)), str(len(pool.words))])
    return NetworkCode(pool, net, constants, graph_code)


def _i32(v: int) -> str:
    return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)
