"""report.md (and compare.md): the report's tables as GitHub-flavoured Markdown."""

from __future__ import annotations

from ..core.text import markdown_code, markdown_safe
from .charts import Chart
from .model import Comparison, Report, StructureComparison
from .tables import (
    TableSpec,
    breakdown_table,
    comparison_tables,
    headline_table,
    kinds_table,
    movers_table,
    provenance_table,
    steps_table,
    structure_tables,
    top_ops_tables,
)

# Every cell, title, caption and note may carry names from the profiles (devices, ops, files).
_esc = markdown_safe


def table_md(spec: TableSpec, *, level: int = 3, title: bool = True) -> str:
    lines = []
    if title:
        lines += [f"{'#' * level} {_esc(spec.title)}", ""]
    lines.append("| " + " | ".join("<br>".join(_esc(x) for x in h) for h in spec.headers) + " |")
    lines.append(
        "|" + "|".join("---:" if i >= spec.numeric_from else "---" for i in range(len(spec.headers))) + "|"
    )
    lines += ["| " + " | ".join(_esc(c) for c in row) + " |" for row in spec.rows]
    if spec.caption:
        lines += ["", f"_{_esc(spec.caption)}_"]
    if spec.footnotes:
        lines.append("")
        lines += [f"{i + 1}. {_esc(n)}" for i, n in enumerate(spec.footnotes)]
    return "\n".join(lines) + "\n"


def report_md(report: Report, charts: list[Chart]) -> str:
    out = [
        f"# SwiftFormer on QNN: {_esc(report.name)}",
        "",
        f"Generated {report.generated_at:%Y-%m-%d %H:%M} UTC from {len(report.inputs)} profile(s).",
        "",
        "## Headline",
        "",
        table_md(headline_table(report), title=False),
    ]
    if report.skipped:
        out += ["Skipped (invalid):", ""] + [f"- {markdown_code(s.path)}: {_esc(s.reason)}" for s in report.skipped] + [""]
    if report.notes:
        out += ["Notes:", ""] + [f"- {_esc(n)}" for n in report.notes] + [""]

    if charts:
        out += ["## Charts", ""]
        for c in charts:
            out += [f"### {_esc(c.title)}", "", f"![{_esc(c.alt)}]({c.filename})", ""]

    out += ["## Per-block breakdown", ""]
    if not report.breakdowns:
        out += ["No profile here has per-op data (published profiles are summary only).", ""]
    for m in report.models:
        for spec in (breakdown_table(report, m.id), kinds_table(report, m.id)):
            if spec is not None:
                out += [table_md(spec)]

    out += ["## Biggest movers between consecutive QNN versions", ""]
    steps = steps_table(report)
    if steps is None:
        out += ["No model was measured at two QNN versions of one setting.", ""]
    else:
        out += [table_md(steps, title=False)]
        for step in report.steps:
            spec = movers_table(report, step)
            if spec is not None:
                out += [table_md(spec)]

    out += ["## Top ops", ""]
    tops = top_ops_tables(report)
    if not tops:
        out += ["No per-op data.", ""]
    elif len(tops) < len(report.top_ops):
        out += [
            "For the newest QNN version of each model and setting; every column's top ops are in report.json.",
            "",
        ]
    out += [table_md(t) for t in tops]

    out += ["## Provenance", "", table_md(provenance_table(report), title=False)]
    return "\n".join(out).rstrip() + "\n"


def comparison_md(cmp: Comparison) -> str:
    out = [f"# Compare: {_esc(cmp.model.label)}", ""]
    for spec in comparison_tables(cmp):
        out.append(table_md(spec, level=2))
    if cmp.notes:
        out += ["Notes:", ""] + [f"- {_esc(n)}" for n in cmp.notes] + [""]
    return "\n".join(out).rstrip() + "\n"


def structure_md(cmp: StructureComparison) -> str:
    out = ["# Compare compiled graphs: B against A", ""]
    for spec in structure_tables(cmp):
        out.append(table_md(spec, level=2))
    if cmp.notes:
        out += ["Notes:", ""] + [f"- {_esc(n)}" for n in cmp.notes] + [""]
    return "\n".join(out).rstrip() + "\n"
