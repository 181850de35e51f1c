"""Report section: the neural network (model, quantization, float against int8, TFLM
parity, training curve, layers with their measured instructions, arena)."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from kiloml.report.elements import Section, html_table, png_img, status_cell
from kiloml.report.figures import ACCURACY_RANGE, bar_figure


def training_figure(training: dict) -> Figure:
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    epochs = np.arange(1, len(training["train_loss"]) + 1)
    ax.plot(epochs, training["train_loss"], label="training loss")
    if training["val_loss"]:
        ax.plot(epochs, training["val_loss"], label="validation loss")
    ax.axvline(training["best_epoch"], color="0.6", ls="--", lw=1, label="best epoch (kept)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title("Training (early stopping on held-out training groups)", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def neural_section(metrics: dict) -> Section | None:
    if "neural" not in metrics:
        return None
    n, model = metrics["neural"], metrics["model"]
    section = Section("neural", "Neural network")
    parts = section.body
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
        figs.append(png_img(training_figure(n["training"]), "training curve"))
    if n["float_accuracy"] is not None:
        figs.append(png_img(bar_figure(["float32", "int8"],
                                       [n["float_accuracy"], n["int8_accuracy"]],
                                       "Held-out accuracy: float against int8", "accuracy",
                                       fmt="{:.4f}", value_range=ACCURACY_RANGE),
                            "float against int8 accuracy"))
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
    return section
