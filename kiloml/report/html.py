"""The HTML report: one self-contained file, the summary first, then a section per part of
the run with a table of contents."""

from __future__ import annotations

import html

import numpy as np

from kiloml.pipeline import Pipeline
from kiloml.report.data_checks_section import data_checks_section
from kiloml.report.decision_section import decision_section, rule_section
from kiloml.report.elements import STYLE, Section, html_table, png_img
from kiloml.report.evaluation_section import (
    held_out_section,
    misclassified_section,
    per_class_section,
)
from kiloml.report.figures import bar_figure
from kiloml.report.monitor_section import monitor_section
from kiloml.report.neural_section import neural_section
from kiloml.report.power_section import power_section
from kiloml.report.recording_section import recording_section
from kiloml.report.resources_section import parity_section, resources_section
from kiloml.report.search_section import search_section
from kiloml.report.stress_section import stress_section
from kiloml.report.summary_section import summary_section

FEATURES_SHOWN = 15  # most important features in the figure


def model_section(metrics: dict, pipeline: Pipeline) -> Section:
    s = Section("model", "Model and features")
    s.body.append(html_table([(html.escape(k), html.escape(str(v)))
                              for k, v in metrics["model"].items()]))
    est = getattr(pipeline.model, "estimator", None)
    if hasattr(est, "feature_importances_"):
        feature_names = pipeline.feature_names()
        imp = np.asarray(est.feature_importances_)
        top = np.argsort(imp)[::-1][:FEATURES_SHOWN]
        s.body.append(png_img(bar_figure([feature_names[i] for i in top],
                                         [float(imp[i]) for i in top],
                                         f"Most important features (top {len(top)} of "
                                         f"{len(imp)})", "impurity importance", fmt="{:.3f}"),
                              "most important features"))
    return s


def data_section(metrics: dict) -> Section:
    data = metrics["data"]
    s = Section("data", "Data")
    s.body.append(png_img(bar_figure(data["class_names"],
                                     [float(v) for v in data["windows_per_class"]],
                                     "Windows per class (all data)", "windows", fmt="{:.0f}",
                                     what="classes"), "windows per class"))
    return s


def table_of_contents(sections: list[Section]) -> str:
    items = "".join(f"<li><a href='#{s.id}'>{html.escape(s.title)}</a></li>" for s in sections)
    return f"<nav class='toc' id='contents'><b>Contents</b><ol>{items}</ol></nav>"


def report_sections(metrics: dict, pipeline: Pipeline) -> list[Section]:
    """The sections of a run's report in reading order (those with nothing to show left
    out)."""
    sections = [summary_section(metrics), held_out_section(metrics),
                per_class_section(metrics), misclassified_section(metrics),
                recording_section(metrics), neural_section(metrics), decision_section(metrics),
                monitor_section(metrics), rule_section(metrics),
                stress_section(metrics), parity_section(metrics), resources_section(metrics),
                power_section(metrics), search_section(metrics),
                model_section(metrics, pipeline), data_section(metrics),
                data_checks_section(metrics)]
    return [s for s in sections if s is not None]


def render_report(metrics: dict, pipeline: Pipeline) -> str:
    data = metrics["data"]
    names = metrics["evaluation"]["class_names"]
    sections = report_sections(metrics, pipeline)
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>kiloml: "
             f"{html.escape(metrics['project'])}</title><style>{STYLE}</style></head><body>",
             f"<h1>kiloml report: {html.escape(metrics['project'])}</h1>",
             f"<p class='muted'>kiloml {metrics['kiloml_version']} &middot; "
             f"{data['n_recordings']} recordings, {_examples(data)} at "
             f"{data['sample_rate_hz']:g} Hz, {len(data['channels'])} channels, "
             f"{len(names)} classes</p>",
             table_of_contents(sections)]
    parts.extend(s.html() for s in sections)
    parts.append("</body></html>")
    return "\n".join(parts)


def _examples(data: dict) -> str:
    """What one example is: a window every stride, or (mode = "recording") a whole
    recording fitted to one length."""
    fit = data.get("recording_fit")
    if fit is None:
        return (f"{data['n_windows']} windows of {data['window_ms']:g} ms every "
                f"{data['stride_ms']:g} ms")
    return (f"one example per recording, fitted to {fit['length_ms']:g} ms "
            f"(pad = {fit['pad']}, crop = {fit['crop']}: {fit['padded']} padded, "
            f"{fit['cropped']} cropped)")
