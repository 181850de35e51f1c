"""Report sections on the held-out test: accuracy, the confusion matrix, accuracy per group
(top and bottom N when there are many) and per fold, precision / recall / F1 per class, and
the misclassified windows by recording and time."""

from __future__ import annotations

import html
import os

from kiloml.report.elements import Section, html_table, name_list, png_img
from kiloml.report.figures import bar_figure, confusion_figure

GROUPS_LISTED = 30  # per-group bars: the 15 best and the 15 worst beyond this


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
                               reference=ev["accuracy"], limit=GROUPS_LISTED, what="groups"),
                    "accuracy per held-out group")]
    if cv.get("folds"):
        figs.append(png_img(bar_figure([f"fold {i}" for i in range(cv["folds"])],
                                       cv["accuracy_per_fold"],
                                       "Cross-validation accuracy per fold", "accuracy",
                                       reference=cv["accuracy_mean"], what="folds"),
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
    paths = [s for s in sources if "/" in s]
    if len(paths) != len(sources) or not paths:
        return ""
    folder = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
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
    s.body.append("<h3>By recording and time</h3>")
    s.body.append(html_table([(where(w["recording"]), f"{w['start_s']:.3f}",
                               html.escape(w["true"]), html.escape(w["predicted"]),
                               f"{w['score']:.3f}", f"{w['true_score']:.3f}") for w in listed],
                             header=("recording", "start (s)", "true label", "predicted label",
                                     "score (predicted)", "score (true)")))
    if mis["not_listed"]:
        s.body.append(f"<p class='muted'>and {mis['not_listed']:,} more misclassified windows "
                      f"(the first {mis['limit']:,} by recording and time are listed here and "
                      f"in metrics.json under <code>evaluation.misclassified</code>).</p>")
    return s
