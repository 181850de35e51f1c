"""The report's whole-recording part: per-recording votes of a windowed project
(``evaluation.per_recording``), or how ``[window] mode = "recording"`` fitted the
recordings and what kml_classify_recording's parity found."""

from __future__ import annotations

import html

from kiloml.report.elements import Section, html_table, status_cell


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def recording_section(metrics: dict) -> Section | None:
    ev = metrics.get("evaluation", {})
    vote = ev.get("per_recording")
    fit = metrics.get("data", {}).get("recording_fit")
    if vote is None and fit is None:
        return None
    s = Section("recordings", "Whole recordings")
    if fit is not None:
        pad = {"zero": "zeros", "edge": "copies of its last sample"}.get(fit["pad"]) \
            if isinstance(fit["pad"], str) else f"the value {fit['pad']:g}"
        s.body.append(
            f"<p>One example per recording (<code>[window] mode = \"recording\"</code>): "
            f"each fitted to {fit['length_samples']} samples ({fit['length_ms']:g} ms) after "
            f"preprocessing, padded after its end with {html.escape(str(pad))}, cropped by "
            f"<code>crop = \"{html.escape(fit['crop'])}\"</code>. The accuracy figures above "
            f"are per recording.</p>")
        s.body.append(html_table([
            ("recordings padded", str(fit["padded"])),
            ("recordings cropped", str(fit["cropped"])),
            ("recordings of exactly the length", str(fit["exact"])),
            ("shortest / longest (samples)",
             f"{fit['shortest_samples']} / {fit['longest_samples']}")]))
        rows = []
        for name, parity in metrics.get("parity", {}).items():
            rec = parity.get("recordings")
            if rec is None:
                continue
            rows.append((html.escape(name), f"{rec['decisions_equal']} / {rec['n']}",
                         str(rec["boundary_probes"]), str(rec["refused"]),
                         "yes" if rec["scores_bit_exact"] else "no",
                         status_cell(bool(rec["all_decisions_equal"]))))
        if rows:
            s.body.append("<p>kml_classify_recording on every held-out recording and on "
                          "boundary-length probes (no sample, one, one short of the window, "
                          "exactly it, one to three over), against the Python rule:</p>")
            s.body.append(html_table(rows, header=("where", "equal", "probes", "refused",
                                                   "scores bit-exact", "parity")))
    if vote is not None:
        s.body.append(
            f"<p>Per-recording decisions by majority vote of the window labels "
            f"({html.escape(vote['tie_rule'])}; {vote['ties']} ties) on "
            f"{vote['n_recordings']} held-out recordings, next to the per-window "
            f"figures.</p>")
        s.body.append(html_table([
            ("accuracy", _pct(ev["accuracy"]), _pct(vote["accuracy"])),
            ("balanced accuracy", _pct(ev["balanced_accuracy"]),
             _pct(vote["balanced_accuracy"])),
            ("macro F1", _pct(ev["macro_f1"]), _pct(vote["macro_f1"]))],
            header=("", "per window", "per recording")))
        if vote["misclassified"]:
            s.body.append(html_table(
                [(html.escape(r["recording"]), html.escape(r["true"]),
                  html.escape(r["decision"]), str(r["windows"]),
                  html.escape(", ".join(f"{c}: {n}" for c, n in r["votes"].items())))
                 for r in vote["misclassified"][:20]],
                header=("misclassified recording", "true", "decision", "windows",
                        "votes")))
    return s
