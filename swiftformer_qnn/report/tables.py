"""The report's tables as plain strings, built once and rendered by Markdown, HTML and rich.

Every renderer reads these specs, so the terminal, report.md and report.html show the
same numbers formatted the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import (
    Breakdown,
    Column,
    Comparison,
    Report,
    StructureComparison,
    StructureDelta,
    Unit,
    VersionStep,
)

MOVERS_SHOWN = 5
DASH = "–"


@dataclass(frozen=True)
class TableSpec:
    title: str
    headers: list[tuple[str, ...]]  # each header is one or more lines
    rows: list[list[str]]
    caption: str | None = None
    footnotes: list[str] = field(default_factory=list)
    numeric_from: int = 1  # columns at or after this index are right-aligned


# ---------------------------------------------------------------------------- number formats


def fmt_ms(ms: float) -> str:
    if abs(ms) >= 10:
        return f"{ms:.1f}"
    if abs(ms) >= 0.1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def fmt_cycles(c: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(c) >= scale:
            return f"{c / scale:.2f} {suffix}"
    return f"{c:.0f}"


def fmt_value(value: float, unit: Unit) -> str:
    return f"{fmt_ms(value)} ms" if unit is Unit.MS else f"{fmt_cycles(value)} cycles"


def fmt_delta(value: float, unit: Unit) -> str:
    sign = "+" if value > 0 else "−" if value < 0 else "±"
    return sign + fmt_value(abs(value), unit)


def fmt_ratio(ratio: float | None) -> str:
    return f"{ratio:.2f}×" if ratio is not None else DASH


def fmt_share(share: float) -> str:
    return f"{share * 100:.1f}%"


def fmt_pp(before: float, after: float) -> str:
    d = (after - before) * 100
    return f"{'+' if d > 0 else '−' if d < 0 else '±'}{abs(d):.1f} pp"


def column_header(col: Column) -> tuple[str, ...]:
    s = col.setting
    return (col.version_label, s.source_label, s.device, s.precision)


def column_short(col: Column) -> str:
    return f"{col.version_label} ({col.setting.label})"


# ---------------------------------------------------------------------------- report tables


def _cell_text(report: Report, model_id: str, column_id: str) -> str:
    cell = report.cell(model_id, column_id)
    if cell is None:
        return DASH
    text = fmt_value(cell.value, cell.unit)
    if cell.unit is Unit.CYCLES:
        extra = "emulator" if cell.profile_count == 1 else f"emulator, {cell.profile_count} profiles"
    elif cell.statistic.startswith("estimated"):
        extra = "estimated"
    elif cell.run_count is None:
        extra = "published" if cell.profile_count == 1 else f"published, {cell.profile_count} profiles"
    else:
        runs = f"{cell.run_count} run{'s' if cell.run_count != 1 else ''}"
        extra = runs if cell.profile_count == 1 else f"{cell.profile_count} profiles, {runs}"
    return f"{text} ({extra})"


def _headline_rows(report: Report) -> list[tuple[str, tuple[str, ...], list[str]]]:
    """(row label, short header lines, one text per column): models, then encoder ÷ full ratios."""
    rows = [
        (
            m.label,
            (m.short, "x".join(map(str, m.input_shape))),
            [_cell_text(report, m.id, c.id) for c in report.columns],
        )
        for m in report.models
    ]
    shares = {(s.encoder_model_id, s.full_model_id, s.column_id): s.ratio for s in report.encoder_shares}
    for enc_id, full_id in sorted({(e, f) for e, f, _ in shares}):
        label = f"{report.model(enc_id).short} ÷ {report.model(full_id).short}"
        texts = [
            fmt_share(shares[(enc_id, full_id, c.id)]) if (enc_id, full_id, c.id) in shares else DASH
            for c in report.columns
        ]
        rows.append((label, (label,), texts))
    return rows


def headline_table(report: Report) -> TableSpec:
    """Rows: models (and encoder ÷ full); columns: QNN versions, grouped by source, device and precision."""
    rows = _headline_rows(report)
    return TableSpec(
        title="Headline",
        headers=[("model",)] + [column_header(c) for c in report.columns],
        rows=[[label] + texts for label, _, texts in rows],
        caption=_headline_caption(report, len(rows) > len(report.models)),
    )


def headline_table_by_column(report: Report) -> TableSpec:
    """The same cells turned on their side (one line per QNN-version column), for narrow terminals."""
    rows = _headline_rows(report)
    return TableSpec(
        title="Headline",
        headers=[("QNN", "source", "device", "precision")] + [short for _, short, _ in rows],
        rows=[
            ["\n".join(column_header(c))] + [texts[j] for _, _, texts in rows]
            for j, c in enumerate(report.columns)
        ],
        caption=_headline_caption(report, len(rows) > len(report.models)),
    )


def _headline_caption(report: Report, has_ratio: bool) -> str:
    sources = {c.setting.source.value for c in report.columns}
    said = []
    if sources & {"aihub", "qnn-net-run", "onnxruntime-qnn"}:
        said.append("device cells: median end-to-end latency, runs behind it in brackets")
    if "published" in sources:
        said.append("published cells: the figure as published (statistic and run count not stated)")
    if "emulator" in sources:
        said.append("emulator cells: HTP emulator cycles summed over ops, not device latency")
    if "estimate" in sources:
        said.append("estimate cells: QNN's HTP estimator for a proxy SoC (the column's device), in ms, "
                    "not device latency")
    if has_ratio:
        said.append("÷ row: the encoder block's figure over the full model's, same column")
    return "; ".join(said) + "."


def breakdown_table(report: Report, model_id: str) -> TableSpec | None:
    bds = [b for b in report.breakdowns if b.model_id == model_id]
    if not bds:
        return None
    order: dict[str, str | None] = {}
    for b in bds:
        for r in b.blocks:
            order.setdefault(r.block, r.kind)
    rows = []
    for block, kind in order.items():
        rows.append([block, kind or DASH] + [_block_cell(b, block) for b in bds])
        parts = sorted(
            {p for b in bds for r in b.blocks if r.block == block for p in r.parts}, key=_PART_ORDER
        )
        for part in parts:
            rows.append([f"  ↳ {part}", DASH] + [_part_cell(b, block, part) for b in bds])
    rows.append(["total (sum of ops)", DASH] + [f"{fmt_value(b.total, b.unit)}" for b in bds])
    return TableSpec(
        title=f"Per-block breakdown: {report.model(model_id).label}",
        headers=[("block",), ("kind",)] + [column_header(report.column(b.column_id)) for b in bds],
        rows=rows,
        caption="time · share of the summed per-op time; a cell over several profiles is their per-block median.",
        numeric_from=2,
    )


def kinds_table(report: Report, model_id: str) -> TableSpec | None:
    bds = [b for b in report.breakdowns if b.model_id == model_id]
    if not bds:
        return None
    kinds: list[str] = []
    for b in bds:
        kinds.extend(k for k in b.kinds if k not in kinds)
    rows = [
        [k]
        + [
            f"{fmt_value(b.kinds[k], b.unit)} · {fmt_share(b.kinds[k] / b.total if b.total else 0)}"
            if k in b.kinds
            else DASH
            for b in bds
        ]
        for k in kinds
    ]
    return TableSpec(
        title=f"By kind of block: {report.model(model_id).label}",
        headers=[("kind",)] + [column_header(report.column(b.column_id)) for b in bds],
        rows=rows,
    )


_PARTS = ("local_representation", "attention", "mlp")


def _PART_ORDER(p: str) -> tuple:  # noqa: N802  (a sort key)
    return (_PARTS.index(p) if p in _PARTS else len(_PARTS), p)


def _block_cell(b: Breakdown, block: str) -> str:
    r = next((r for r in b.blocks if r.block == block), None)
    return f"{fmt_value(r.time, b.unit)} · {fmt_share(r.share)}" if r else DASH


def _part_cell(b: Breakdown, block: str, part: str) -> str:
    r = next((r for r in b.blocks if r.block == block), None)
    if r is None or part not in r.parts:
        return DASH
    t = r.parts[part]
    return f"{fmt_value(t, b.unit)} · {fmt_share(t / b.total if b.total else 0)}"


def steps_table(report: Report) -> TableSpec | None:
    if not report.steps:
        return None
    rows = []
    for s in report.steps:
        c0, c1 = report.column(s.from_column), report.column(s.to_column)
        top = s.movers[0] if s.movers else None
        if top is None:
            biggest = "no per-op data"
        elif s.ranked_by == "share":
            biggest = f"{top.block} {fmt_pp(top.share_before, top.share_after)}"
        else:
            biggest = f"{top.block} {fmt_delta(top.delta, s.unit)}"
        rows.append(
            [
                report.model(s.model_id).label,
                c0.setting.label,
                f"{c0.qnn_version or '?'} → {c1.qnn_version or '?'}",
                fmt_value(s.before, s.unit),
                fmt_value(s.after, s.unit),
                fmt_delta(s.delta, s.unit),
                fmt_ratio(s.ratio),
                biggest,
            ]
        )
    return TableSpec(
        title="Between consecutive QNN versions",
        headers=[
            ("model",),
            ("setting",),
            ("QNN",),
            ("before",),
            ("after",),
            ("Δ",),
            ("ratio",),
            ("biggest mover",),
        ],
        rows=rows,
        numeric_from=3,
    )


def movers_table(report: Report, step: VersionStep, limit: int = MOVERS_SHOWN) -> TableSpec | None:
    if not step.movers:
        return None
    c0, c1 = report.column(step.from_column), report.column(step.to_column)
    rows = [
        [
            m.block,
            m.kind or DASH,
            fmt_value(m.before, step.unit),
            fmt_value(m.after, step.unit),
            fmt_delta(m.delta, step.unit),
            fmt_ratio(m.ratio),
            f"{fmt_share(m.share_before)} → {fmt_share(m.share_after)}",
        ]
        for m in step.movers[:limit]
    ]
    more = len(step.movers) - limit
    ranked = (
        "change of share (emulator cycles are not comparable across runs)"
        if step.ranked_by == "share"
        else "change of time"
    )
    return TableSpec(
        title=f"{report.model(step.model_id).label}, {c0.setting.label}: {c0.version_label} → {c1.version_label}",
        headers=[("block",), ("kind",), ("before",), ("after",), ("Δ",), ("ratio",), ("share",)],
        rows=rows,
        caption=f"ranked by {ranked}" + (f"; {more} more blocks in report.json" if more > 0 else ""),
        numeric_from=2,
    )


def top_ops_tables(report: Report, *, newest_only: bool = True) -> list[TableSpec]:
    """Top ops per cell; by default only the newest QNN version of each model and setting."""
    chosen = report.top_ops
    if newest_only:
        newest: dict[tuple, object] = {}
        for t in report.top_ops:  # columns are in version order within a setting
            newest[(t.model_id, report.column(t.column_id).setting)] = t
        chosen = [t for t in report.top_ops if t in newest.values()]
    out = []
    for t in chosen:
        col = report.column(t.column_id)
        rows = [
            [
                str(i + 1),
                op.name,
                op.op_type,
                op.block + (f" / {op.part}" if op.part else ""),
                op.compute_unit or DASH,
                fmt_value(op.time, t.unit),
                fmt_share(op.share),
            ]
            for i, op in enumerate(t.ops)
        ]
        out.append(
            TableSpec(
                title=f"Top ops: {report.model(t.model_id).label}, {column_short(col)}",
                headers=[("#",), ("op",), ("type",), ("block",), ("compute unit",), ("time",), ("share",)],
                rows=rows,
                caption=f"from {t.profile}",
                numeric_from=5,
            )
        )
    return out


def provenance_table(report: Report) -> TableSpec:
    footnotes: list[str] = []

    def ref(text: str | None) -> str:
        if not text:
            return DASH
        if text not in footnotes:
            footnotes.append(text)
        return f"[{footnotes.index(text) + 1}]"

    rows = []
    for p in report.provenance:
        col = report.column(p.column_id)
        soc = ", ".join(
            x
            for x in (
                p.chipset,
                f"soc {p.soc_model}" if p.soc_model else None,
                f"v{p.htp_arch}" if p.htp_arch else None,
            )
            if x
        )
        refs = " ".join(r for r in (ref(p.citation), ref(p.note)) if r != DASH) or DASH
        rows.append(
            [
                p.profile,
                report.model(p.model_id).label,
                col.setting.source_label,
                p.device,
                soc or DASH,
                p.precision,
                p.qnn_version or DASH,
                p.qairt_version or DASH,
                p.runtime,
                p.date.date().isoformat(),
                ", ".join(f"{k}: {v}" for k, v in p.job_ids.items()) or DASH,
                refs,
            ]
        )
    return TableSpec(
        title="Provenance",
        headers=[
            ("profile",),
            ("model",),
            ("source",),
            ("device",),
            ("chipset",),
            ("precision",),
            ("QNN",),
            ("QAIRT",),
            ("runtime",),
            ("date",),
            ("job ids",),
            ("citation, note",),
        ],
        rows=rows,
        footnotes=footnotes,
        numeric_from=99,
    )


# ---------------------------------------------------------------------------- compare A B


def comparison_tables(cmp: Comparison, *, limit: int | None = None) -> list[TableSpec]:
    """Summary and per-block deltas; `limit` keeps the most impactful blocks (the terminal's view)."""
    summary = TableSpec(
        title=f"{cmp.model.label}: B against A",
        headers=[("",), ("profile",), ("source",), ("device",), ("precision",), ("QNN",), ("headline",)],
        rows=[
            [
                "A",
                cmp.a.profile,
                cmp.a.source.value,
                cmp.a.device,
                cmp.a.precision,
                cmp.a.qnn_version or DASH,
                fmt_value(cmp.a_value, cmp.unit),
            ],
            [
                "B",
                cmp.b.profile,
                cmp.b.source.value,
                cmp.b.device,
                cmp.b.precision,
                cmp.b.qnn_version or DASH,
                fmt_value(cmp.b_value, cmp.unit),
            ],
            ["B − A", "", "", "", "", "", f"{fmt_delta(cmp.delta, cmp.unit)} ({fmt_ratio(cmp.ratio)})"],
        ],
        caption=(
            "headline: median latency (ms) for device and published profiles; the estimate (ms, not device "
            "latency) for estimate profiles; summed emulator cycles (not device latency) for emulator profiles."
        ),
        numeric_from=6,
    )
    tables = [summary]
    if cmp.blocks:
        ranked = "change of share" if cmp.ranked_by == "share" else "|Δ| (impact)"
        tables.append(
            TableSpec(
                title="Per-block deltas",
                headers=[("block",), ("kind",), ("A",), ("B",), ("Δ",), ("ratio",), ("share A → B",)],
                rows=[
                    [
                        d.block,
                        d.kind or DASH,
                        fmt_value(d.a, cmp.unit),
                        fmt_value(d.b, cmp.unit),
                        fmt_delta(d.delta, cmp.unit),
                        fmt_ratio(d.ratio),
                        f"{fmt_share(d.share_a)} → {fmt_share(d.share_b)}",
                    ]
                    for d in cmp.blocks[:limit]
                ],
                caption=f"sorted by {ranked}"
                + (
                    f"; {len(cmp.blocks) - limit} more in compare.md"
                    if limit is not None and len(cmp.blocks) > limit
                    else ""
                ),
                numeric_from=2,
            )
        )
    return tables


# ---------------------------------------------------------------------------- compare two compiles


def fmt_count(n: int | None) -> str:
    return DASH if n is None else f"{n:,}"


def fmt_count_delta(n: int | None) -> str:
    if n is None:
        return DASH
    return ("+" if n > 0 else "−" if n < 0 else "±") + f"{abs(n):,}"


def _delta_rows(deltas: list[StructureDelta]) -> list[list[str]]:
    return [[d.metric, fmt_count(d.a), fmt_count(d.b), fmt_count_delta(d.delta)] for d in deltas]


def structure_tables(cmp: StructureComparison) -> list[TableSpec]:
    """Which compiles, their graphs' totals, and HTP ops by type (biggest change first)."""
    def side(name: str, r) -> list[str]:
        shape = "x".join(map(str, r.input_shape)) if r.input_shape else DASH
        return [name, r.label, r.variant or DASH, r.precision or DASH, shape, r.soc or DASH, r.qnn_version]

    compiles = TableSpec(
        title="Compiles",
        headers=[("",), ("compile",), ("variant",), ("precision",), ("input",), ("SoC",), ("QNN",)],
        rows=[side("A", cmp.a), side("B", cmp.b)],
        numeric_from=99,
    )
    headers = [("",), ("A",), ("B",), ("B − A",)]
    totals = TableSpec(
        title="Compiled graph: B against A",
        headers=headers,
        rows=_delta_rows(cmp.totals),
        caption="from QNN's op trace (compile.json); layout ops: Reshape + Transpose (at input/output: those "
        "that only convert the graph's NCHW input or output to the HTP's channel-last layout); float islands: "
        "Dequantize ops inside the graph; boundary: the input's Quantize and the output's Dequantize",
    )
    by_type = TableSpec(title="HTP ops by type", headers=[("op type",), *headers[1:]], rows=_delta_rows(cmp.op_types),
                        caption="biggest change first")
    tables = [compiles, totals]
    if cmp.estimate_label is not None:
        a, b = cmp.estimated_us_a, cmp.estimated_us_b

        def us(v: float | None) -> str:
            return DASH if v is None else f"{v:,.0f}"

        delta = DASH if a is None or b is None else f"{b - a:+,.0f} ({fmt_ratio(b / a if a else None)})"
        tables.append(TableSpec(
            title="Estimated accelerator time (us)", headers=headers, rows=[["whole graph", us(a), us(b), delta]],
            caption=f"{cmp.estimate_label}: each export's estimate stage; not device latency, no I/O or RPC"))
    return tables + ([by_type] if cmp.op_types else [])
