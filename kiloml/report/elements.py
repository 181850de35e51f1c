"""The report's building blocks: style, sections, tables, status marks, embedded images
and the shortening of long names and lists."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.3em .7em;
text-align:right}th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
.ok{color:#1a7f37;font-weight:600}.warn{color:#9a6700;font-weight:600}
.fail{color:#cf222e;font-weight:600}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.muted{color:#666}img{max-width:100%;height:auto}
nav.toc ol{columns:2;margin:.4em 0}nav.toc li{margin:.1em 0}
.verdict{font-size:1.15em;padding:.5em .8em;border-radius:4px;background:#f6f8fa}
.verdict .muted{font-weight:400;font-size:.9em}td.text,th.text{text-align:left}
#summary-table{width:100%}#summary-table td:first-child{min-width:12em}
#summary-table td:nth-child(3){white-space:nowrap}
"""

FAIL_COLOR = "#cf222e"  # .fail in STYLE


@dataclass
class Section:
    """One <h2> part of the report: its anchor (for the table of contents) and body."""

    id: str
    title: str
    body: list[str] = field(default_factory=list)

    def html(self) -> str:
        return (f"<section id='{self.id}'><h2>{html.escape(self.title)}</h2>\n"
                + "\n".join(self.body) + "\n</section>")


def png_img(fig, alt: str = "") -> str:
    """The figure as an embedded PNG (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return (f'<img alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">')


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


def short_label(text: str, width: int = 32) -> str:
    """A name cut in the middle to ``width`` characters (the start and the end of a path
    or feature name are what tells them apart)."""
    text = str(text)
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (width - 1 - head):]


def name_list(names: list[str], limit: int = 20) -> str:
    """Names joined with commas, the first ``limit`` of them and a count of the rest
    (escaped HTML)."""
    shown = ", ".join(html.escape(str(n)) for n in names[:limit])
    rest = len(names) - limit
    return shown + (f" <span class='muted'>and {rest:,} more</span>" if rest > 0 else "")
