"""An updatable library ([library] updatable = true): the forest (or the network's
parameters, kiloml.codegen.updatable_nn) and the decision parameters are read through
kml_blob_forest() (kml_blob_network()) / kml_blob_decision(), which kml_blob_activate
retargets to a parameter blob's tables (kiloml.blob, docs/blob_format.md). A library
without the setting is generated exactly as before."""

from __future__ import annotations

from kiloml.blob.layout import (
    config_lines,
    feature_code_digest,
    forest_problem,
    layout,
    layout_hash,
    network_config_lines,
    network_layout,
)
from kiloml.decision.layer import SMOOTHING
from kiloml.errors import KilomlError
from kiloml.models.forest import ForestTables
from kiloml.models.forest_c import emit_table, runtime_modules
from kiloml.stage import CStage, EmitContext

BLOB_RUNTIME = ["kml_blob", "kml_sha256"]
SIGNATURE_RUNTIME = ["kml_ed25519", "kml_sha512"]
BUILTIN = """/* ---- parameter blobs: the compiled-in ones, until kml_blob_activate ---- */
const kml_blob_model_t kml_blob_builtin = {&kml_m_forest, &kml_d_params};

"""
NETWORK_BUILTIN = """/* ---- parameter blobs: the compiled-in ones, until kml_blob_activate ---- */
const kml_blob_model_t kml_blob_builtin = {&kml_m_network, &kml_d_params};

"""
_NETWORK_CALL = "kml_blob_network_predict(kml_blob_network(),"
_BUILTIN_BEFORE = "static void kml_run_features("
_FOREST_ARG = "kml_forest_predict(&kml_m_forest,"
_DECISION_ARG = "kml_decision_step(&kml_d_params,"


def is_network(pipeline) -> bool:
    from kiloml.models.neural import NeuralModel

    return type(pipeline.model) is NeuralModel


def network_code_of(pipeline, prefix: str = "kml_m_"):
    """The updatable network's code (kiloml.codegen.updatable_nn.NetworkCode), or a
    one-line KilomlError naming [library] updatable."""
    from kiloml.codegen.updatable_nn import network_code, network_of

    if pipeline.library_prefix != "kml":
        raise KilomlError("[library] updatable = true takes no [library] prefix yet")
    return network_code(network_of(pipeline), prefix, len(pipeline.feature_names()))


def forest_tables_of(pipeline) -> ForestTables | None:
    """The pipeline's forest tables (None for a network that can take parameter blobs),
    or a one-line KilomlError naming [library] updatable when its model cannot."""
    from kiloml.models.trees import TreeModel

    model = pipeline.model
    if is_network(pipeline):
        network_code_of(pipeline)
        return None
    if type(model) is not TreeModel:
        raise KilomlError(f"[library] updatable = true: only forests and networks take "
                          f"parameter blobs so far (this model is a {type(model).__name__})")
    if model.config.c_style != "table":
        raise KilomlError("[library] updatable = true needs [model] c_style = \"table\" "
                          "(inline trees are code, not parameters)")
    if pipeline.library_prefix != "kml":
        raise KilomlError("[library] updatable = true takes no [library] prefix yet")
    tables = model.tables or model.compile(len(pipeline.feature_names()))
    problem = forest_problem(tables)
    if problem:
        raise KilomlError(f"[library] updatable = true: this forest cannot live in a "
                          f"parameter blob: {problem}")
    return tables


def forest_tables(pipeline) -> ForestTables:
    tables = forest_tables_of(pipeline)
    if tables is None:
        raise KilomlError("[library] updatable = true: a network has no forest tables")
    return tables


def feature_parts(emitted: list) -> list[str]:
    """What the layout hash covers of the feature and preprocessing stages' C."""
    parts = []
    for e in emitted:
        c = e.c
        parts += [e.kind, e.title, *c.runtime, *c.config, c.constants, c.call, c.state,
                  c.reset, str(c.scratch_floats)]
    return parts


def _feature_code(pipeline, emitted: list) -> str:
    geometry = [str(pipeline.window_samples), str(pipeline.stride_samples),
                repr(float(pipeline.sample_rate_hz)), ",".join(pipeline.channels)]
    return feature_code_digest([*geometry, *feature_parts(emitted)])


def describe_layout(pipeline, tables: ForestTables, emitted: list) -> dict:
    """The layout (kiloml.blob.layout) of ``pipeline``'s updatable library; ``emitted``:
    its feature and preprocessing stages (codegen.library.emit_feature_stages)."""
    d = pipeline.decision_params
    return layout(tables, smoothing=SMOOTHING[d.smoothing],
                  smoothing_windows=d.smoothing_windows,
                  feature_code=_feature_code(pipeline, emitted))


def describe_network_layout(pipeline, graph_code: str, emitted: list) -> dict:
    """The layout of ``pipeline``'s updatable network library (``graph_code``:
    NetworkCode.graph_code)."""
    d = pipeline.decision_params
    return network_layout(graph_code=graph_code, classes=pipeline.model.n_classes,
                          features=len(pipeline.feature_names()),
                          smoothing=SMOOTHING[d.smoothing],
                          smoothing_windows=d.smoothing_windows,
                          feature_code=_feature_code(pipeline, emitted))


def network_stage(pipeline, ctx: EmitContext, emitted: list, interface_hash: int
                  ) -> CStage:
    if ctx.prefix != "kml_m_":
        raise AssertionError("the model stage's prefix is not kml_m_")
    code = network_code_of(pipeline, ctx.prefix)
    # where the arena holds the logits, for the monitor and the estimator (as emit_c does)
    pipeline.model.network_c = code.net
    described = describe_network_layout(pipeline, code.graph_code, emitted)
    d = pipeline.decision_params
    key = pipeline.library_update_key
    config = network_config_lines(
        interface_hash=interface_hash, layout_hash_value=layout_hash(described),
        classes=pipeline.model.n_classes, features=len(pipeline.feature_names()),
        smoothing=SMOOTHING[d.smoothing], smoothing_windows=d.smoothing_windows,
        int8_bytes=len(code.pool.w8), words=len(code.pool.words),
        ranges=len(code.pool.segments()), public_key=key)
    call = (f"{ctx.output}->label = {_NETWORK_CALL} {ctx.input}, "
            f"{ctx.output}->scores);")
    runtime = ["kml_nn", *BLOB_RUNTIME, *(SIGNATURE_RUNTIME if key is not None else [])]
    return CStage(runtime=runtime, config=config, constants=code.constants, call=call)


def model_stage(pipeline, ctx: EmitContext, emitted: list, interface_hash: int) -> CStage:
    if is_network(pipeline):
        return network_stage(pipeline, ctx, emitted, interface_hash)
    tables = forest_tables(pipeline)
    config, constants, call = emit_table(tables, ctx.prefix, ctx.input, ctx.output,
                                         updatable=True)
    if ctx.prefix != "kml_m_" or _FOREST_ARG not in call:
        raise AssertionError("the model stage's call does not read kml_m_forest")
    call = call.replace(_FOREST_ARG, "kml_forest_predict(kml_blob_forest(),")
    described = describe_layout(pipeline, tables, emitted)
    d = pipeline.decision_params
    key = pipeline.library_update_key
    config = config_lines(tables, interface_hash=interface_hash,
                          layout_hash_value=layout_hash(described),
                          smoothing=SMOOTHING[d.smoothing],
                          smoothing_windows=d.smoothing_windows, public_key=key)
    runtime = [*runtime_modules(tables), *BLOB_RUNTIME,
               *(SIGNATURE_RUNTIME if key is not None else [])]
    return CStage(runtime=runtime, config=config, constants=constants, call=call)


_SNAPSHOT = "    kml_mo_start();\n    kml_monitor_write_snapshot(&kml_mo_params, &kml_mo_state, id,"
_ACTIVE_ID = """    if (kml_blob_active_model_id() != NULL) { /* the active blob's model */
        for (i = 0; i < 8; ++i) {
            id[i] = kml_blob_active_model_id()[i];
        }
    }
"""


def retarget(source: str) -> str:
    """kiloml_model.c of an updatable library: the decision layer reads the active
    parameters, the compiled-in ones are kml_blob_builtin, and telemetry records carry
    the active blob's model id."""
    if source.count(_BUILTIN_BEFORE) != 1 or _DECISION_ARG not in source:
        raise AssertionError("kiloml_model.c is not shaped as codegen.updatable expects")
    source = source.replace(_DECISION_ARG, "kml_decision_step(kml_blob_decision(),")
    if "kml_monitor_write_snapshot(" in source:
        if source.count(_SNAPSHOT) != 1:
            raise AssertionError("the monitor's snapshot is not shaped as expected")
        source = source.replace(_SNAPSHOT, _ACTIVE_ID + _SNAPSHOT)
    builtin = NETWORK_BUILTIN if _NETWORK_CALL in source else BUILTIN
    return source.replace(_BUILTIN_BEFORE, builtin + _BUILTIN_BEFORE)


def check_settings(cfg) -> None:
    """[library] updatable with a model that cannot take blobs: one line, before
    training (the project's settings; the tables are checked again when emitted)."""
    if not cfg.library.updatable:
        return
    from kiloml.project import NeuralModelConfig, TreeModelConfig

    model = cfg.model
    if isinstance(model, NeuralModelConfig):
        if cfg.library.prefix != "kml":
            raise KilomlError("[library] updatable = true takes no [library] prefix yet")
        return  # the graph's kernels are checked when the library is emitted
    if not isinstance(model, TreeModelConfig):
        raise KilomlError(f"[library] updatable = true: only forests and networks take "
                          f"parameter blobs so far ([model] kind = \"{model.kind}\")")
    if model.c_style != "table":
        raise KilomlError("[library] updatable = true needs [model] c_style = \"table\" "
                          "(inline trees are code, not parameters)")
    if model.thresholds != "float32" or model.leaves != "exact":
        raise KilomlError("[library] updatable = true takes float32 thresholds and exact "
                          "leaves so far ([model] thresholds / leaves)")
    if cfg.library.prefix != "kml":
        raise KilomlError("[library] updatable = true takes no [library] prefix yet")
