"""The cross-version comparison as a table (terminal and Markdown): rendering only, the
comparison itself is `swiftformer_qnn.htp.sweep`."""

from __future__ import annotations

from ..core.tables import TableSpec, table_md
from ..htp.sweep import CrossVersionReport, VersionDiff

NOT_EMULATED = "Not checked: emulator outputs vs the CPU EP (--no-emulate)."


def format_op_type_changes(diff: VersionDiff | None, limit: int = 4) -> str:
    if diff is None:
        return ""
    if diff.op_type_changes is None or diff.ops_added is None or diff.ops_removed is None:
        return "n/a (no op trace on one side)"
    names = f"+{len(diff.ops_added)}/-{len(diff.ops_removed)} op names" if diff.ops_added or diff.ops_removed else "same op names"
    if not diff.op_type_changes:
        return f"none ({names})"
    parts = [f"{c.op_type} {c.before}->{c.after}" for c in diff.op_type_changes[:limit]]
    more = len(diff.op_type_changes) - limit
    return ", ".join(parts) + (f", +{more} more" if more > 0 else "") + f" ({names})"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_rows(report: CrossVersionReport) -> list[dict[str, str]]:
    """The comparison table as strings, one row per version (shared by the terminal and Markdown)."""
    by_after = {d.after: d for d in report.diffs}
    rows = []
    for v in report.versions:
        f, c = v.fidelity, v.compile
        if v.status == "ok" and c is not None:
            if f is not None and f.sqnr_db is None:
                sqnr = "exact" if f.exact else "undefined"
            else:
                sqnr = _fmt(f.sqnr_db if f else None, ".1f")
            rows.append(
                {
                    "QNN": v.qnn_version,
                    "onnxruntime-qnn": v.onnxruntime_qnn,
                    "status": (f"compiled; emulator check failed: {v.emulator_error}" if v.emulator_error
                               else "ok (cached)" if v.cached else "ok"),
                    "compile (s)": _fmt(c.compile_s, ".2f"),
                    "context binary (MB)": _fmt(c.context_binary_bytes / 1e6, ".2f"),
                    "HTP ops": "-" if c.htp_op_count is None else str(c.htp_op_count),
                    "op types vs previous": format_op_type_changes(by_after.get(v.qnn_version)) or "-",
                    "max abs diff": _fmt(f.max_abs_diff if f else None, ".4g"),
                    "cosine": _fmt(f.cosine_min if f else None, ".5f"),
                    "SQNR (dB)": sqnr,
                }
            )
        else:
            rows.append(
                {"QNN": v.qnn_version, "onnxruntime-qnn": v.onnxruntime_qnn, "status": f"{v.status}: {v.error}"}
            )
    return rows


TABLE_COLUMNS = (
    "QNN",
    "onnxruntime-qnn",
    "status",
    "compile (s)",
    "context binary (MB)",
    "HTP ops",
    "op types vs previous",
    "max abs diff",
    "cosine",
    "SQNR (dB)",
)


def render_markdown(report: CrossVersionReport) -> str:
    """The comparison as a Markdown table plus a note on what the numbers are."""
    spec = TableSpec(title="", headers=[(c,) for c in TABLE_COLUMNS], numeric_from=len(TABLE_COLUMNS),
                     rows=[[row.get(c, "") for c in TABLE_COLUMNS] for row in table_rows(report)])
    lines = [table_md(spec, title=False).rstrip("\n")]
    for d in report.diffs:
        if d.ops_added or d.ops_removed:
            lines.append(
                f"\n{d.before} -> {d.after}: HTP ops {d.htp_ops_before} -> {d.htp_ops_after}; "
                f"{len(d.ops_added)} op name(s) added, {len(d.ops_removed)} removed"
                + (f" (e.g. +{d.ops_added[0]}, -{d.ops_removed[0]})" if d.ops_added and d.ops_removed else "")
            )
    if not report.emulated:
        lines.append(f"\n{NOT_EMULATED}")
    soc = f"soc_model {report.soc_model}, HTP v{report.htp_arch}" + (", fp16" if report.fp16 else "")
    lines.append(f"\n{report.model} ({soc}), {report.jobs} parallel job(s), {report.wall_s:.1f} s wall. {report.note}")
    return "\n".join(lines) + "\n"
