"""report.html: one self-contained page (charts embedded as data URIs) with the same tables."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from .charts import Chart
from .model import Report
from .tables import TableSpec, breakdown_table, headline_table, provenance_table, steps_table

# Readable from a phone (412 px) to a desktop (1280 px): the page never scrolls sideways; a table
# wider than the page scrolls inside its own box, charts scale to the page's width, and long
# words (paths, op names) in text break rather than push the page wider.
_CSS = """
html { -webkit-text-size-adjust: 100%; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 1em auto; max-width: 1200px; padding: 0 1em; color: #222;
       overflow-wrap: anywhere; }
h1 { font-size: 1.5em; }
.scroll { overflow-x: auto; max-width: 100%; margin: .5em 0 1em; }
table { border-collapse: collapse; font-size: 13px; overflow-wrap: normal; }
th, td { border: 1px solid #ccc; padding: 3px 8px; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; }
caption { caption-side: bottom; text-align: left; font-style: italic; color: #555; padding-top: 3px; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def table_html(spec: TableSpec) -> str:
    head = "".join(f"<th>{'<br>'.join(escape(x) for x in h)}</th>" for h in spec.headers)
    num = ' class="num"'
    body = "".join(
        "<tr>"
        + "".join(f"<td{num if i >= spec.numeric_from else ''}>{escape(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in spec.rows
    )
    cap = f"<caption>{escape(spec.caption)}</caption>" if spec.caption else ""
    notes = ""
    if spec.footnotes:
        notes = "<ol>" + "".join(f"<li>{escape(n)}</li>" for n in spec.footnotes) + "</ol>"
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{notes}'


def report_html(report: Report, charts: list[Chart], chart_dir: Path) -> str:
    """The PNGs are read from `chart_dir` and inlined, so the page can be mailed on its own."""
    parts = [
        f"<h1>SwiftFormer on QNN: {escape(report.name)}</h1>",
        f"<p>Generated {report.generated_at:%Y-%m-%d %H:%M} UTC from {len(report.inputs)} profile(s). "
        "Full tables: report.md; data: report.json.</p>",
        "<h2>Headline</h2>",
        table_html(headline_table(report)),
    ]
    if report.notes:
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>")
    if charts:
        parts.append("<h2>Charts</h2>")
    for c in charts:
        data = base64.b64encode((Path(chart_dir) / c.filename).read_bytes()).decode()
        parts.append(
            f'<h3>{escape(c.title)}</h3><img src="data:image/png;base64,{data}" alt="{escape(c.alt)}">'
        )
    steps = steps_table(report)
    if steps is not None:
        parts += ["<h2>Between consecutive QNN versions</h2>", table_html(steps)]
    for m in report.models:
        spec = breakdown_table(report, m.id)
        if spec is not None:
            parts += [f"<h2>{escape(spec.title)}</h2>", table_html(spec)]
    parts += ["<h2>Provenance</h2>", table_html(provenance_table(report))]
    body = "\n".join(parts)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(report.name)}: SwiftFormer on QNN</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
