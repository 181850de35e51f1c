"""The HTML report: one self-contained file with the figures people look at."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from kiloml.pipeline import Pipeline

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.3em .7em;
text-align:right}th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
.ok{color:#1a7f37;font-weight:600}.warn{color:#9a6700;font-weight:600}
.fail{color:#cf222e;font-weight:600}.figs{display:flex;flex-wrap:wrap;gap:1em}
.muted{color:#666}img{max-width:100%}
"""


def png_img(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def confusion_figure(cm: list[list[int]], names: list[str]) -> str:
    m = np.asarray(cm, dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = max(4.0, 0.6 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                    color="white" if frac[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (held-out test windows)")
    return png_img(fig)


def bar_figure(labels: list[str], values: list[float], title: str, xlabel: str,
               reference: float | None = None, fmt: str = "{:.2f}") -> str:
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(labels) + 1.2))
    y = np.arange(len(labels))
    ax.barh(y, values, color="#4c72b0")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, " " + fmt.format(v), va="center", fontsize=8)
    if reference is not None:
        ax.axvline(reference, color="#cf222e", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return png_img(fig)


def budget_figure(resources: dict) -> str:
    fig, ax = plt.subplots(figsize=(6, 2.2))
    labels, used = [], []
    for target, r in resources.items():
        labels += [f"{target} flash", f"{target} RAM" + (" + stack" if "stack_bytes" in r
                                                           else "")]
        used += [100 * r["flash_fraction"], 100 * r["ram_fraction"]]
    y = np.arange(len(labels))
    colors = ["#cf222e" if u > 100 else "#d4a72c" if u > 70 else "#1a7f37" for u in used]
    ax.barh(y, used, color=colors)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.axvline(100, color="#cf222e", lw=1)
    ax.axvline(70, color="#d4a72c", lw=1, ls="--")
    for yi, u in zip(y, used, strict=True):
        ax.text(u, yi, f" {u:.1f}%", va="center", fontsize=8)
    ax.set_xlim(0, max(110, max(used) * 1.15))
    ax.set_xlabel("% of budget")
    ax.set_title("Library size against the target budget")
    return png_img(fig)


def latency_figure(resources: dict) -> str:
    """Latency per inference on each target (max over the held-out set; mean marked)."""
    names = [t for t, r in resources.items() if "latency_us" in r]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.2))
    y = np.arange(len(names))
    worst = [resources[t]["latency_us"] / 1000 for t in names]
    colors = ["#9a9a9a" if resources[t].get("estimated") else "#4c72b0" for t in names]
    ax.barh(y, worst, color=colors)
    for yi, t in zip(y, names, strict=True):
        r = resources[t]
        if "instructions_mean" in r and r["instructions_per_inference"]:
            mean_ms = r["latency_us"] * r["instructions_mean"] / r["instructions_per_inference"]
            ax.plot([mean_ms / 1000], [yi], "k|", markersize=14)
        label = f" {r['latency_us'] / 1000:.2f} ms" + (" (est.)" if r.get("estimated") else "")
        ax.text(r["latency_us"] / 1000, yi, label, va="center", fontsize=8)
        if r.get("latency_budget_us"):
            ax.plot([r["latency_budget_us"] / 1000], [yi], "r|", markersize=16)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms per inference at the target clock (log scale; | = mean)")
    ax.set_title("Inference latency (worst held-out window)")
    return png_img(fig)


def status_cell(ok: bool | str) -> str:
    if ok is True or ok == "ok":
        return '<span class="ok">ok</span>'
    if ok == "warn":
        return '<span class="warn">warn</span>'
    return '<span class="fail">FAIL</span>'


def html_table(rows: list[tuple], header: tuple | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def training_figure(training: dict) -> str:
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    epochs = np.arange(1, len(training["train_loss"]) + 1)
    ax.plot(epochs, training["train_loss"], label="training loss")
    if training["val_loss"]:
        ax.plot(epochs, training["val_loss"], label="validation loss")
    ax.axvline(training["best_epoch"], color="0.6", ls="--", lw=1, label="best epoch (kept)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title("Training (early stopping on held-out training groups)")
    ax.legend(fontsize=8)
    return png_img(fig)


def neural_section(metrics: dict) -> list[str]:
    n, model = metrics["neural"], metrics["model"]
    parts = ["<h2>Neural network</h2>"]
    rows = [("model", html.escape(f"{model['kind']} reading {model['reads']} "
                                  f"{model['input_shape']}")),
            ("operators / MACs / weights", f"{model['operators']} / {model['macs']:,} / "
                                           f"{model['weight_bytes']:,} B"),
            ("quantization", html.escape(model["quantization"])),
            ("input", "per channel (x &minus; mean) / std in float32, then int8 (model.tflite "
                      "reads the standardized values; mean and std in metrics.json)"
             if "input_standardization" in model else "as the pipeline gives it"),
            ("calibration", html.escape(str(model["calibration"])))]
    if n["float_accuracy"] is not None:
        rows += [("float32 test accuracy", f"{n['float_accuracy']:.4f}"),
                 ("int8 test accuracy (deployed)", f"{n['int8_accuracy']:.4f} "
                  f"({n['int8_minus_float_points']:+.2f} points)"),
                 ("int8 and float agree on", f"{n['int8_float_agreement']:.1%} of windows")]
    else:
        rows.append(("int8 test accuracy (deployed)", f"{n['int8_accuracy']:.4f}"))
    t = n["tflm_parity"]
    rows.append(("TFLM interpreter", f"{t['bit_exact']} / {t['n']} held-out windows bit-exact "
                 f"{status_cell(t['all_bit_exact'])}" if t.get("checked")
                 else html.escape(t.get("note", "not checked"))))
    parts.append(html_table(rows))
    figs = []
    if "training" in n:
        figs.append(training_figure(n["training"]))
    if n["float_accuracy"] is not None:
        figs.append(bar_figure(["float32", "int8"], [n["float_accuracy"], n["int8_accuracy"]],
                               "Held-out accuracy: float against int8", "accuracy"))
    if figs:
        parts.append("<div class='figs'>" + "".join(figs) + "</div>")
    parts.append("<h3>Layers (int8)</h3>")
    measured = any("instructions" in r for r in n["layers"])

    def instr(r: dict) -> tuple:
        if not measured:
            return ()
        if "instructions" not in r:
            return ("&ndash;", "&ndash;")
        per_mac = r.get("instructions_per_mac")
        return (f"{r['instructions']:,.0f}", "&ndash;" if per_mac is None else f"{per_mac:.2f}")

    header = ("#", "operator", "kernel", "output shape", "MACs", "weight bytes",
              *(("instructions", "instructions / MAC") if measured else ()))
    parts.append(html_table([(i, html.escape(r["op"]), html.escape(r.get("kernel", "")),
                          html.escape(str(r["output_shape"])), f"{r['macs']:,}",
                          f"{r['weight_bytes']:,}", *instr(r))
                         for i, r in enumerate(n["layers"])], header=header))
    if "arena_bytes" in n:
        parts.append(f"<p class='muted'>Arena {n['arena_bytes']:,} B for every activation "
                     f"and scratch buffer (lower bound for this operator order "
                     f"{n['arena_lower_bound_bytes']:,} B; {html.escape(n['planner']['strategy'])}"
                     f", {n['planner']['in_place_tensors']} tensors in place, "
                     f"{n['planner'].get('outputs_over_inputs', 0)} conv/pool outputs written "
                     f"over their dying inputs, which can take the arena below the bound). "
                     + ("Instructions per layer measured in "
                        f"{html.escape(n['layers_measured_on'])}."
                        if "layers_measured_on" in n else "") + "</p>")
    for note in n.get("notes", []):
        parts.append(f"<p class='warn'>{html.escape(note)}</p>")
    return parts


def render_report(metrics: dict, pipeline: Pipeline) -> str:
    ev = metrics["evaluation"]
    data = metrics["data"]
    names = ev["class_names"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>kiloml: "
             f"{html.escape(metrics['project'])}</title><style>{STYLE}</style></head><body>",
             f"<h1>kiloml report: {html.escape(metrics['project'])}</h1>",
             f"<p class='muted'>kiloml {metrics['kiloml_version']} &middot; "
             f"{data['n_recordings']} recordings, {data['n_windows']} windows of "
             f"{data['window_ms']:g} ms every {data['stride_ms']:g} ms at "
             f"{data['sample_rate_hz']:g} Hz, {len(data['channels'])} channels, "
             f"{len(names)} classes</p>"]

    parts.append("<h2>Held-out test</h2>")
    parts.append(html_table([
        ("accuracy", f"{ev['accuracy']:.4f}"),
        ("balanced accuracy", f"{ev['balanced_accuracy']:.4f}"),
        ("macro F1", f"{ev['macro_f1']:.4f}"),
        ("test windows", ev["n_test_windows"]),
        ("test groups (never seen in training)", html.escape(", ".join(ev["test_groups"]))),
        ("training windows", ev["n_train_windows"]),
    ]))
    cv = ev["cross_validation"]
    if cv.get("folds"):
        parts.append(f"<p>Grouped {cv['folds']}-fold cross-validation on the training groups: "
                     f"accuracy {cv['accuracy_mean']:.4f} &plusmn; {cv['accuracy_std']:.4f}</p>")
    if cv.get("note"):  # why there is no (or less) cross-validation
        parts.append(f"<p class='warn'>Cross-validation: {html.escape(cv['note'])}</p>")
    groups = ev["per_group_accuracy"]
    figs = [confusion_figure(ev["confusion_matrix"], names),
            bar_figure(list(groups), [g["accuracy"] for g in groups.values()],
                       "Accuracy per held-out group", "accuracy", reference=ev["accuracy"])]
    if cv.get("folds"):
        figs.append(bar_figure([f"fold {i}" for i in range(cv["folds"])],
                               cv["accuracy_per_fold"], "Cross-validation accuracy per fold",
                               "accuracy", reference=cv["accuracy_mean"]))
    parts.append("<div class='figs'>" + "".join(figs) + "</div>")

    if "neural" in metrics:
        parts.extend(neural_section(metrics))

    # imported here: decision_section imports this module
    from kiloml.report.decision_section import decision_section, rule_section

    parts.extend(decision_section(metrics))
    parts.extend(rule_section(metrics))
    from kiloml.report.stress_section import stress_section  # imports this module

    parts.append(stress_section(metrics))

    if metrics["parity"]:
        parts.append("<h2>Parity: C library against Python</h2>")
        parts.append("<p class='muted'>Every held-out window through <code>kml_classify</code>, "
                     "and every held-out recording fed sample by sample through "
                     "<code>kml_push_sample</code>, compared with the Python reference.</p>")
    rows = []
    for where, p in metrics["parity"].items():
        if where != "host" and not p.get("emulated", False):
            rows.append((html.escape(where), html.escape(p.get("note", "not checked")), "", "",
                         "<span class='warn'>not run</span>"))
            continue
        st = p["streaming"]
        label = "host (gcc)" if where == "host" else f"{where} (QEMU {p.get('machine', '')})"
        rows.append((
            html.escape(label),
            f"{p['decisions_equal']} / {p['n']} decisions equal",
            ("features bit-exact" if p["features_bit_exact"]
             else f"features differ (max {p['max_abs_feature_diff']:.1e})")
            + f", max |score diff| {p['max_abs_score_diff']:.1e}",
            f"streaming {st['decisions_equal']} / {st['n_windows']} on {st['n_recordings']} "
            f"recordings" + ("" if st["windows_equal"] else ", windows differ"),
            status_cell(p["all_decisions_equal"] and st["all_decisions_equal"])))
    if rows:
        parts.append(html_table(rows, header=("where", "kml_classify", "detail", "kml_push_sample",
                                          "status")))
    stage_rows = []
    for where, p in metrics["parity"].items():
        for stage, st in p.get("features_by_stage", {}).items():
            stage_rows.append((html.escape(where), html.escape(stage), st["n_features"],
                               f"{st['max_abs_error']:.1e}", f"{st['max_rel_error']:.1e}",
                               "yes" if st["bit_exact"] else "no"))
    if stage_rows:
        parts.append("<h3>Features by stage</h3>")
        parts.append(html_table(stage_rows, header=("where", "stage", "features", "max abs error",
                                                "max rel error", "bit-exact")))

    if metrics["resources"]:
        parts.append("<h2>Resources against the budget</h2>")
    rows = []
    for target, r in metrics["resources"].items():
        est = set(r.get("estimated", []))

        def fig(key: str, fmt: str, r=r, est=est) -> str:
            if key not in r or r[key] is None:
                return "&ndash;"
            text = fmt.format(r[key])
            return f"{text} <span class='muted'>(est.)</span>" if key in est else text

        rows.append((html.escape(target),
                     f"{r['flash_bytes']:,} / {r['flash_budget_bytes']:,} B",
                     f"{r['ram_bytes']:,} + stack {fig('stack_bytes', '{:,}')} / "
                     f"{r['ram_budget_bytes']:,} B",
                     fig("instructions_per_inference", "{:,}"),
                     fig("latency_us", "{:,.1f} &micro;s"),
                     fig("energy_uj", "{:.3f} &micro;J"),
                     html.escape(r["measured_on"]), status_cell(r["status"])))
    if rows:
        parts.append(html_table(rows, header=("target", "flash / budget", "RAM / budget",
                                          "instructions per inference (max)", "latency",
                                          "energy", "measured on", "status")))
    for target, r in metrics["resources"].items():
        if "cycles_per_instruction" in r:
            parts.append(f"<p class='muted'>{html.escape(target)}: latency and energy assume "
                         f"{r['cycles_per_instruction']:g} cycles per instruction at "
                         f"{r['clock_hz'] / 1e6:g} MHz and {html.escape(r['power_source'])}. "
                         f"Flash includes the runtime support the library pulls from libgcc "
                         f"and newlib ({r['runtime_support_flash_bytes']:,} B). Built with "
                         f"{html.escape(r['compiler'])}.</p>")
        for note in r["notes"]:
            parts.append(f"<p class='warn'>{html.escape(target)}: {html.escape(note)}</p>")
    for target, res in metrics["resources"].items():
        if not res.get("stages"):
            continue
        rows = [(html.escape(st["stage"]), f"{st['flash_bytes']:,} B", f"{st['ram_bytes']:,} B",
                 "&ndash;" if st["instructions"] is None else f"{st['instructions']:,.0f}")
                for st in res["stages"]]
        parts.append(f"<h3>{html.escape(target)}: by stage</h3>")
        parts.append(html_table(rows, header=("stage", "flash", "static RAM",
                                          "instructions per window")))
        parts.append(f"<p class='muted'>Measured in QEMU: flash and RAM from the symbols of "
                     f"the linked firmware (helpers from libgcc/newlib are not attributed), "
                     f"instructions from a build with a marker between stages (mean of the "
                     f"first windows). Each pushed sample costs "
                     f"{res.get('push_sample_instructions_mean', 0):,.1f} instructions on "
                     f"average (max {res.get('push_sample_instructions_max', 0):,}), "
                     f"preprocessing included.</p>")
    if metrics["resources"]:
        figs = [budget_figure(metrics["resources"])]
        if any("latency_us" in r for r in metrics["resources"].values()):
            figs.append(latency_figure(metrics["resources"]))
        parts.append("<div class='figs'>" + "".join(figs) + "</div>")

    from kiloml.report.power_section import power_section  # imports this module

    parts.extend(power_section(metrics))
    from kiloml.report.search_section import search_section  # imports this module

    parts.extend(search_section(metrics))
    parts.append("<h2>Model and features</h2>")
    model = metrics["model"]
    parts.append(html_table([(html.escape(k), html.escape(str(v))) for k, v in model.items()]))
    est = getattr(pipeline.model, "estimator", None)
    if hasattr(est, "feature_importances_"):
        feature_names = pipeline.feature_names()
        imp = np.asarray(est.feature_importances_)
        top = np.argsort(imp)[::-1][:15]
        parts.append(bar_figure([feature_names[i] for i in top], [float(imp[i]) for i in top],
                                "Most important features", "impurity importance",
                                fmt="{:.3f}"))
    parts.append("<h2>Data</h2>")
    parts.append(bar_figure(names, [float(v) for v in data["windows_per_class"]],
                            "Windows per class (all data)", "windows", fmt="{:.0f}"))
    from kiloml.report.data_checks_section import data_checks_section  # imports this module

    parts.append(data_checks_section(metrics))
    parts.append("</body></html>")
    return "\n".join(parts)
