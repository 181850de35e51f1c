"""Trees on the MCU, side by side: kiloml against emlearn and m2cgen.

The same scikit-learn RandomForestClassifier(n_estimators=10, max_depth=8,
random_state=0) on (a) sklearn's digits and (b) the watch example's features,
converted by each tool, compiled with the same flags for Cortex-M4F
(arm-none-eabi-gcc -O2, hard float) and run in QEMU (mps2-an386) in the same
harness. Instructions come from kiloml's QEMU plugin (exact, repeatable); flash
and RAM are what the model adds to a minimal firmware (linked with
--gc-sections, runtime support from libgcc/newlib included); stack by painting.

Writes bench/results/trees.json and bench/results/trees.md.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent / "trees"
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))
TARGET = "cortex-m4f"
OPTIMIZE = "-O2"


@dataclass
class Variant:
    tool: str
    variant: str
    directory: Path  # holds bench_model.h and the C sources
    reference: np.ndarray | None = None  # a compacted model's own labels (its reference)


def header(directory: Path, n_features: int) -> None:
    (directory / "bench_model.h").write_text(
        f"#include <stdint.h>\n#define BENCH_FEATURES {n_features}\n"
        f"int32_t bench_predict(const float *features);\n")


def kiloml_variants(model, n_classes: int, n_features: int, work: Path,
                    x_test: np.ndarray) -> list[Variant]:
    from kiloml.codegen.library import RUNTIME_DIR
    from kiloml.models.trees import TreeModel
    from kiloml.project import TreeModelConfig
    from kiloml.stage import EmitContext

    out = []
    # the exact forms, and the compacted table (int16 thresholds, uint8 leaves: its own
    # reference, so its agreement with scikit-learn may drop below 1)
    forms = [(style, style, {}) for style in TreeModel.C_STYLES] + \
        [("table-compact", "table int16+uint8", {"thresholds": "int16", "leaves": "uint8"})]
    for slug, variant, compact in forms:
        style = variant.split()[0]
        d = work / f"kiloml-{slug}"
        d.mkdir(parents=True)
        tree = TreeModel(TreeModelConfig(kind="random_forest", c_style=style, **compact),
                         n_classes)
        tree.estimator = model
        ctx = EmitContext(prefix="kml_m_", window="", start_row="", input="features",
                          output="(&result)", window_rows=1, channels=1, n_inputs=n_features)
        c = tree.emit_c(ctx)
        (d / "kml_config.h").write_text("#ifndef KML_CONFIG_H\n#define KML_CONFIG_H\n"
                                        "#include <stdint.h>\n" + "\n".join(c.config)
                                        + "\n#endif\n")
        for name in c.runtime:
            for ext in (".c", ".h"):
                shutil.copyfile(RUNTIME_DIR / f"{name}{ext}", d / f"{name}{ext}")
        shutil.copyfile(RUNTIME_DIR / "kml_fp.h", d / "kml_fp.h")
        includes = "".join(f'#include "{name}.h"\n' for name in c.runtime)
        (d / "kiloml_adapter.c").write_text(
            f'#include <stddef.h>\n#include "bench_model.h"\n{includes}\n'
            f"typedef struct {{ int32_t label; float scores[{n_classes}]; }} result_t;\n"
            f"{c.constants}\n"
            f"int32_t bench_predict(const float *features)\n{{\n    result_t result;\n"
            f"    {c.call}\n    return result.label;\n}}\n")
        header(d, n_features)
        out.append(Variant("kiloml", variant, d, tree.predict(x_test) if compact else None))
    return out


def emlearn_variants(model, n_features: int, work: Path) -> list[Variant]:
    import emlearn

    np.seterr(all="warn")  # emlearn sets numpy to raise on import
    out = []
    d = work / "emlearn-inline"
    d.mkdir(parents=True)
    emlearn.convert(model, method="inline", dtype="float").save(file=str(d / "eml_model.h"),
                                                                 name="eml_model")
    (d / "emlearn_adapter.c").write_text(
        '#include "bench_model.h"\n#include "eml_model.h"\n'
        "int32_t bench_predict(const float *features)\n{\n"
        "    return eml_model_predict(features, BENCH_FEATURES);\n}\n")
    header(d, n_features)
    out.append(Variant("emlearn", "inline float", d))

    d = work / "emlearn-loadable"
    d.mkdir(parents=True)
    emlearn.convert(model, method="loadable", dtype="int16_t").save(
        file=str(d / "eml_model.h"), name="eml_model")
    shutil.copyfile(Path(emlearn.__file__).parent / "eml_trees.h", d / "eml_trees.h")
    for name in ("eml_common.h", "eml_log.h"):
        src = Path(emlearn.__file__).parent / name
        if src.exists():
            shutil.copyfile(src, d / name)
    (d / "emlearn_adapter.c").write_text(
        '#include "bench_model.h"\n#include "eml_model.h"\n'
        "int32_t bench_predict(const float *features)\n{\n"
        "    int16_t values[BENCH_FEATURES];\n    int i;\n"
        "    for (i = 0; i < BENCH_FEATURES; ++i) {\n"
        "        values[i] = (int16_t)features[i]; /* as emlearn's own float wrapper */\n"
        "    }\n    return eml_model_predict(values, BENCH_FEATURES);\n}\n")
    header(d, n_features)
    out.append(Variant("emlearn", "loadable int16", d))
    return out


def m2cgen_variant(model, n_classes: int, n_features: int, work: Path) -> Variant:
    import m2cgen

    d = work / "m2cgen"
    d.mkdir(parents=True)
    (d / "m2cgen_model.c").write_text(m2cgen.export_to_c(model))
    (d / "m2cgen_adapter.c").write_text(
        '#include "bench_model.h"\n'
        "void score(double *input, double *output);\n"
        "int32_t bench_predict(const float *features)\n{\n"
        f"    double in[BENCH_FEATURES], out[{n_classes}];\n    int32_t i, best = 0;\n"
        "    for (i = 0; i < BENCH_FEATURES; ++i) {\n        in[i] = features[i];\n    }\n"
        "    score(in, out);\n"
        f"    for (i = 1; i < {n_classes}; ++i) {{\n"
        "        if (out[i] > out[best]) {\n            best = i;\n        }\n    }\n"
        "    return best;\n}\n")
    header(d, n_features)
    return Variant("m2cgen", "double", d)


def measure(v: Variant, x_test: np.ndarray, expected: np.ndarray, work: Path) -> dict:
    from kiloml.codegen.library import FirmwareLibrary
    from kiloml.targets.profiles import load_profile
    from kiloml.verify.mcu import build, qemu
    from kiloml.verify.mcu.toolchain import find_toolchain

    toolchain = find_toolchain()
    profile = load_profile(TARGET)
    sources = sorted(v.directory.glob("*.c"))
    library = FirmwareLibrary(v.directory, sources, [], int(x_test.shape[1]))
    objects = build.compile_objects(toolchain, sources, [v.directory], profile, OPTIMIZE,
                                    work / "obj", strict=False)
    probe = build.budget_probe(toolchain, library, objects, profile, OPTIMIZE, work / "probe",
                               probe_source=BENCH_DIR / "bench_probe.c")
    elf = build.build_harness(toolchain, library, objects, profile, profile.qemu_machine,
                              OPTIMIZE, work / "harness",
                              harness_source=BENCH_DIR / "bench_main.c")
    plugin = qemu.build_plugin(toolchain, work / "plugin")
    x = np.ascontiguousarray(x_test, dtype="<f4")
    payload = np.int32(len(x)).astype("<i4").tobytes() + x.tobytes()
    run = qemu.run_harness(toolchain, elf, profile.qemu_machine, payload, plugin, work / "run",
                           timeout_s=600)
    out = np.frombuffer(run.output, dtype=[("label", "<i4"), ("stack", "<u4")])
    reference = expected if v.reference is None else v.reference
    return {
        "agreement_with_sklearn": float(np.mean(out["label"] == expected)),
        "agreement_with_reference": float(np.mean(out["label"] == reference)),
        "instructions_mean": float(run.instructions.mean()),
        "instructions_max": int(run.instructions.max()),
        "flash_bytes": probe.flash_bytes,
        "ram_bytes": probe.ram_bytes,
        "stack_bytes": int(out["stack"].max()),
    }


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x.astype(np.float32), y, test_size=0.3,
                                              random_state=0, stratify=y)
    sets = {"digits": (x_tr, y_tr, x_te, y_te)}

    from kiloml.data.sources import load_recordings
    from kiloml.data.splits import make_split
    from kiloml.data.windows import make_windows
    from kiloml.pipeline import make_feature_stages
    from kiloml.project import load_project

    project = load_project(ROOT / "examples" / "watch" / "kiloml.toml")
    cfg = project.config
    w = make_windows(load_recordings(project), cfg.window.window_ms, cfg.window.stride_ms)
    split = make_split(w, cfg.evaluation)
    f = make_feature_stages(project, w.sample_rate_hz, w.window_samples,
                            w.channels)[0].transform(w.x)
    sets["watch features"] = (f[split.train], w.y[split.train], f[split.test], w.y[split.test])
    return sets


def main() -> int:
    from sklearn.ensemble import RandomForestClassifier

    from kiloml.progress import track

    rows = []
    work_root = Path(tempfile.mkdtemp(prefix="kiloml-bench-trees-"))
    try:
        for name, (x_tr, y_tr, x_te, _y_te) in datasets().items():
            model = RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0)
            model.fit(x_tr, y_tr)
            expected = model.predict(x_te)
            n_classes, n_features = len(model.classes_), x_tr.shape[1]
            work = work_root / name.replace(" ", "-")
            variants = (kiloml_variants(model, n_classes, n_features, work, x_te)
                        + emlearn_variants(model, n_features, work)
                        + [m2cgen_variant(model, n_classes, n_features, work)])
            for v in track(variants, f"{name}: tools"):
                figures = measure(v, x_te, expected, v.directory / "work")
                rows.append({"dataset": name, "tool": v.tool, "variant": v.variant,
                             "n_test": len(x_te), **figures})
    finally:
        shutil.rmtree(work_root, ignore_errors=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "trees.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["# Trees on Cortex-M4F: kiloml, emlearn, m2cgen", "",
             "RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0); "
             f"arm-none-eabi-gcc {OPTIMIZE} -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 "
             "-mfloat-abi=hard for every tool; run in QEMU mps2-an386. Instructions per "
             "prediction from kiloml's QEMU plugin (exact); flash and RAM are what the model "
             "adds to a minimal firmware (gc-sections, libgcc/newlib helpers included); "
             "stack by painting. Agreement = share of test rows where the C label equals "
             "scikit-learn's predict. kiloml's compacted table (int16 thresholds, uint8 "
             "leaves) is its own Python reference: its C labels equal that reference on "
             "every row (agreement_with_reference in trees.json); see "
             "tree_compaction.md.", "",
             "| dataset | tool | variant | agreement | instructions mean | instructions max "
             "| flash B | RAM B | stack B |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['tool']} | {r['variant']} | "
                     f"{r['agreement_with_sklearn']:.4f} | {r['instructions_mean']:,.0f} | "
                     f"{r['instructions_max']:,} | {r['flash_bytes']:,} | {r['ram_bytes']:,} | "
                     f"{r['stack_bytes']:,} |")
    (RESULTS / "trees.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
