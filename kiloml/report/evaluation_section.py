"""Report sections on the held-out test: accuracy, the confusion matrix, accuracy per group
(top and bottom N when there are many) and per fold, precision / recall / F1 per class, and
the misclassified windows by recording and time."""

from __future__ import annotations

import html
import os

from kiloml.report.elements import Section, html_table, name_list, png_img
from kiloml.report.figures import ACCURACY_RANGE, bar_figure, confusion_figure

GROUPS_LISTED = 30  # per-group bars: the 15 best and the 15 worst beyond this
RUNS_LISTED = 60  # rows of the misclassified-windows table


def misclassified_runs(listed: list[dict], stride_s: float) -> list[dict]:
    """Consecutive misclassified windows (same recording, true and predicted label, starts
    one stride apart) merged into runs, in the listed order (by recording and time)."""
    runs: list[dict] = []
    for w in listed:
        last = runs[-1] if runs else None
        if (last is not None and last["recording"] == w["recording"]
                and (last["true"], last["predicted"]) == (w["true"], w["predicted"])
                # starts are whole samples, so a quarter stride absorbs their rounding
                and abs(w["start_s"] - last["last_start_s"] - stride_s) <= 0.25 * stride_s):
            last["last_start_s"] = w["start_s"]
            last["scores"].append(w["score"])
            continue
        runs.append({"recording": w["recording"], "start_s": w["start_s"],
                     "last_start_s": w["start_s"], "true": w["true"],
                     "predicted": w["predicted"], "scores": [w["score"]]})
    return runs


def held_out_section(metrics: dict) -> Section:
    ev = metrics["evaluation"]
    names = ev["class_names"]
    s = Section("held-out", "Held-out test")
    s.body.append(html_table([
        ("accuracy", f"{ev['accuracy']:.4f}"),
        ("balanced accuracy", f"{ev['balanced_accuracy']:.4f}"),
        ("macro F1", f"{ev['macro_f1']:.4f}"),
        ("test windows", ev["n_test_windows"]),
        (f"test groups (never seen in training): {len(ev['test_groups'])}",
         name_list(ev["test_groups"])),
        ("training windows", ev["n_train_windows"]),
    ]))
    cv = ev["cross_validation"]
    if cv.get("folds"):
        s.body.append(f"<p>Grouped {cv['folds']}-fold cross-validation on the training groups:"
                      f" accuracy {cv['accuracy_mean']:.4f} &plusmn; "
                      f"{cv['accuracy_std']:.4f}</p>")
    if cv.get("note"):  # why there is no (or less) cross-validation
        s.body.append(f"<p class='warn'>Cross-validation: {html.escape(cv['note'])}</p>")
    groups = ev["per_group_accuracy"]
    figs = [png_img(confusion_figure(ev["confusion_matrix"], names), "confusion matrix"),
            png_img(bar_figure(list(groups), [g["accuracy"] for g in groups.values()],
                               "Accuracy per held-out group", "accuracy",
                               reference=ev["accuracy"], limit=GROUPS_LISTED, what="groups",
                               value_range=ACCURACY_RANGE),
                    "accuracy per held-out group")]
    if cv.get("folds"):
        figs.append(png_img(bar_figure([f"fold {i}" for i in range(cv["folds"])],
                                       cv["accuracy_per_fold"],
                                       "Cross-validation accuracy per fold", "accuracy",
                                       reference=cv["accuracy_mean"], what="folds",
                                       value_range=ACCURACY_RANGE),
                            "cross-validation accuracy per fold"))
    s.body.append("<div class='figs'>" + "".join(figs) + "</div>")
    if len(groups) > GROUPS_LISTED:
        s.body.append(f"<p class='muted'>{len(groups):,} held-out groups: the figure shows the "
                      f"{GROUPS_LISTED // 2} best and the {GROUPS_LISTED // 2} worst; every "
                      f"group's accuracy is in metrics.json under "
                      f"<code>evaluation.per_group_accuracy</code>.</p>")
    return s


def per_class_section(metrics: dict) -> Section | None:
    per_class = metrics["evaluation"].get("per_class")
    if not per_class:
        return None
    s = Section("per-class", "Precision, recall and F1 per class")
    rows = []
    for name, c in per_class.items():
        weak = c["recall"] < 0.5 or c["precision"] < 0.5
        mark = " class='warn'" if weak else ""
        rows.append((f"<span{mark}>{html.escape(name)}</span>", f"{c['precision']:.3f}",
                     f"{c['recall']:.3f}", f"{c['f1']:.3f}", f"{c['support']:,}",
                     f"{c['predicted']:,}"))
    s.body.append(html_table(rows, header=("class", "precision", "recall", "F1",
                                           "true windows", "predicted windows")))
    s.body.append("<p class='muted'>Held-out test windows, the model's arg-max (before the "
                  "decision layer). Precision: of the windows predicted as the class, the share "
                  "that are; recall: of the class's windows, the share found. Classes under 0.5 "
                  "on either are marked.</p>")
    return s


def common_folder(sources: list[str]) -> str:
    """The folder every source path lies in ("" when they share none)."""
    if not sources or any("/" not in s for s in sources):
        return ""
    folders = {os.path.dirname(s) for s in sources}
    absolute = {os.path.isabs(f) for f in folders}
    if len(absolute) != 1:
        return ""
    folder = os.path.commonpath(sorted(folders))
    return folder if folder not in ("", "/") else ""


def misclassified_section(metrics: dict) -> Section | None:
    mis = metrics["evaluation"].get("misclassified")
    if mis is None:
        return None
    s = Section("misclassified", "Misclassified windows")
    if not mis["n"]:
        s.body.append(f"<p class='ok'>None of the {mis['n_windows']:,} held-out windows is "
                      f"misclassified.</p>")
        return s
    listed = mis["listed"]
    sources = [w["recording"] for w in listed] + [r["recording"] for r in mis["by_recording"]]
    folder = common_folder(sources)

    def where(source: str) -> str:
        return html.escape(os.path.relpath(source, folder) if folder else source)

    s.body.append(f"<p>{mis['n']:,} of {mis['n_windows']:,} held-out windows "
                  f"({mis['n'] / mis['n_windows']:.1%}) are misclassified, in "
                  f"{mis['recordings_with_errors']:,} recordings"
                  + (f" (paths below are relative to <code>{html.escape(folder)}</code>)"
                     if folder else "") + ".</p>")
    if len(mis["by_recording"]) > 1:
        s.body.append("<h3>Recordings with the most misclassified windows</h3>")
        s.body.append(html_table([(where(r["recording"]), f"{r['misclassified']:,}",
                                   f"{r['windows']:,}", f"{r['misclassified'] / r['windows']:.0%}")
                                  for r in mis["by_recording"]],
                                 header=("recording", "misclassified", "held-out windows",
                                         "share")))
        more = mis["recordings_with_errors"] - len(mis["by_recording"])
        if more > 0:
            s.body.append(f"<p class='muted'>and {more:,} more recordings with misclassified "
                          f"windows.</p>")
    stride_s = metrics["data"]["stride_ms"] / 1000.0
    runs = misclassified_runs(listed, stride_s)
    s.body.append("<h3>By recording and time</h3>")
    s.body.append(f"<p class='muted'>Consecutive windows (every {stride_s:g} s) with the same "
                  f"error are one row; score: the model's score of the predicted class.</p>")

    def starts(r: dict) -> str:
        if r["last_start_s"] == r["start_s"]:
            return f"{r['start_s']:.3f}"
        return f"{r['start_s']:.3f} &ndash; {r['last_start_s']:.3f}"

    def score(r: dict) -> str:
        lo, hi = min(r["scores"]), max(r["scores"])
        return f"{lo:.3f}" if lo == hi else f"{lo:.3f} &ndash; {hi:.3f}"

    s.body.append(html_table([(where(r["recording"]), starts(r), len(r["scores"]),
                               html.escape(r["true"]), html.escape(r["predicted"]), score(r))
                              for r in runs[:RUNS_LISTED]],
                             header=("recording", "window start (s)", "windows", "true label",
                                     "predicted label", "score")))
    if len(runs) > RUNS_LISTED:
        rest = sum(len(r["scores"]) for r in runs[RUNS_LISTED:])
        s.body.append(f"<p class='muted'>and {len(runs) - RUNS_LISTED:,} more runs "
                      f"({rest:,} windows) of the listed ones.</p>")
    if mis["not_listed"]:
        s.body.append(f"<p class='muted'>and {mis['not_listed']:,} more misclassified windows "
                      f"not listed: the first {mis['limit']:,} by recording and time are, here "
                      f"and in metrics.json under <code>evaluation.misclassified</code>.</p>")
    return s
