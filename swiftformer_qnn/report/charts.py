"""PNG charts of a Report: per-block stacked bars, models by QNN version, a per-op waterfall.

Figures are built with `matplotlib.figure.Figure` directly (the Agg canvas, no pyplot), so
rendering never touches a GUI backend or pyplot's global state.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.text import Text

from ..core.text import terminal_safe
from .model import Breakdown, Column, Report, Setting, Unit, Waterfall
from .tables import column_short, fmt_ms

DPI = 110
_TAB20 = colormaps["tab20"].colors


@dataclass(frozen=True)
class Chart:
    filename: str
    title: str
    alt: str


# ---------------------------------------------------------------------------- block groups


def block_group(block: str, kind: str | None, *, standalone: bool = False, part: str | None = None) -> str:
    """The legend entry a block (or, in the standalone block, an op's part) is drawn under."""
    if standalone:
        return part or ("unattributed" if block == "other" else f"{block} (other ops)")
    if block in ("stem", "head"):
        return block
    if block == "other":
        return "unattributed"
    if re.fullmatch(r"stage\d+\.downsample", block):
        return "downsamples"
    m = re.fullmatch(r"stage(\d+)\.block\d+", block)
    if m:
        i = m.group(1)
        if kind == "swiftformer_encoder":
            return f"stage{i} SwiftFormerEncoder"
        if kind == "conv_encoder":
            return f"stage{i} ConvEncoders"
        return f"stage{i} blocks"
    return block


# One colour per variant, the same in every chart and every report (not by position among the
# report's models, which moved L1's colour whenever another model joined the report).
_VARIANT_COLORS = {"l1": 0, "l3": 2, "s": 4, "xs": 8, "encoder": 6}


def model_color(model):
    """The colour of a model's bars: fixed per variant."""
    return _TAB20[_VARIANT_COLORS.get("encoder" if model.is_encoder_block else model.variant, 10)]


def group_color(group: str):
    """Stage i gets tab20's pair i: dark for its SwiftFormerEncoder, light for its ConvEncoders."""
    m = re.fullmatch(r"stage(\d+) (SwiftFormerEncoder|ConvEncoders|blocks)", group)
    if m:
        pair = int(m.group(1)) % 4
        return _TAB20[2 * pair + (0 if m.group(2) == "SwiftFormerEncoder" else 1)]
    fixed = {
        "stem": 8,
        "downsamples": 10,
        "head": 12,
        "unattributed": 14,
        "local_representation": 4,
        "attention": 6,
        "mlp": 0,
    }
    if group in fixed:
        return _TAB20[fixed[group]]
    return _TAB20[15 if group.endswith("(other ops)") else 16 + (sum(map(ord, group)) % 4)]


def _scale(unit: Unit) -> tuple[float, str]:
    """Cycles are drawn in millions; the axis says they are not device latency."""
    if unit is Unit.MS:
        return 1.0, "ms"
    return 1e-6, "M cycles (emulator, not device latency)"


def _axis_label(setting: Setting, unit: Unit, what: str) -> str:
    scale_label = _scale(unit)[1]
    if unit is Unit.MS and setting.source.value == "estimate":
        return f"{what} (estimated), {scale_label}"
    if unit is Unit.MS:
        return f"{what}, {scale_label} ({setting.source.value})"
    return f"{what}, {scale_label}"


def _headline_axis(setting: Setting, unit: Unit) -> str:
    if unit is Unit.CYCLES:
        return f"summed op time, {_scale(unit)[1]}"
    if setting.source.value == "published":
        return "latency, ms (published figure)"
    if setting.source.value == "estimate":
        return "estimated time, ms (not device latency)"  # the panel's title names the estimator's proxy
    return f"median latency, ms ({setting.source.value})"


def _wrap(text: str, width: int = 48) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _save(fig: Figure, path: Path) -> None:
    # Names in a chart come from profiles (model, device, op names): drawn as plain text, never
    # as matplotlib's math ("$\\frac$" in a device name made savefig raise), control characters shown.
    for text in fig.findobj(Text):
        text.set_parse_math(False)
        text.set_text(terminal_safe(text.get_text()))
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, facecolor="white")


def _xlim(n: int) -> tuple[float, float]:
    """Pad few bars so a lone bar is not drawn as wide as the panel."""
    pad = max(0.6, (3 - n) / 2 + 0.6)
    return -pad, n - 1 + pad


def _rects(xs: list[int], lows: list[float], highs: list[float]) -> list[list[tuple[float, float]]]:
    """Unit-wide bars as polygons, for a PolyCollection."""
    return [
        [(x - 0.5, lo), (x + 0.5, lo), (x + 0.5, hi), (x - 0.5, hi)]
        for x, lo, hi in zip(xs, lows, highs, strict=True)
    ]


def _dark(rgb) -> bool:
    r, g, b = rgb[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b < 0.55


def _grid(n: int) -> tuple[int, int]:
    ncols = min(n, 2)
    return math.ceil(n / ncols), ncols


# ---------------------------------------------------------------------------- charts


def models_by_version(report: Report, path: Path) -> Chart | None:
    """Full model and encoder block side by side per QNN version, one panel per setting."""
    settings: dict[Setting, list[Column]] = {}
    for col in report.columns:
        if any(c.column_id == col.id for c in report.headline):
            settings.setdefault(col.setting, []).append(col)
    if not settings:
        return None
    nrows, ncols = _grid(len(settings))
    width = max(7.0, min(16.0, 3.0 + 1.6 * max(len(c) for c in settings.values()) * ncols))
    fig = Figure(figsize=(width, 4.6 * nrows + 0.6), layout="constrained")
    models = report.models
    colors = {m.id: model_color(m) for m in models}
    for k, (setting, cols) in enumerate(settings.items()):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        scale, _ = _scale(cols[0].unit)
        n = len(models)
        bar_w = 0.8 / n
        ymax = 0.0
        for i, m in enumerate(models):
            xs, ys = [], []
            for j, col in enumerate(cols):
                cell = report.cell(m.id, col.id)
                if cell is not None:
                    xs.append(j - 0.4 + bar_w * (i + 0.5))
                    ys.append(cell.value * scale)
            if not xs:
                continue
            bars = ax.bar(xs, ys, bar_w * 0.95, label=m.label, color=colors[m.id])
            ax.bar_label(bars, labels=[fmt_ms(y) for y in ys], padding=2, fontsize=9)
            ymax = max(ymax, *ys)
        ticks = []
        for col in cols:
            lines = [col.version_label]
            for s in report.encoder_shares:
                if s.column_id == col.id:
                    full = report.model(s.full_model_id)
                    lines.append(f"block = {s.ratio * 100:.0f}% of {full.short}")
            ticks.append("\n".join(lines))
        ax.set_xticks(range(len(cols)), ticks, fontsize=9)
        ax.set_xlim(*_xlim(len(cols)))
        ax.set_ylim(0, ymax * 1.18 if ymax else 1)
        ax.set_ylabel(_headline_axis(setting, cols[0].unit))
        ax.set_title(_wrap(setting.label, 60), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("SwiftFormerEncoder block vs full model, by QNN version", fontsize=12, fontweight="bold")
    _save(fig, path)
    return Chart(
        filename=path.name,
        title="Encoder block vs full model by QNN version",
        alt="Grouped bars: headline latency of each model per QNN version, one panel per source/device/precision.",
    )


def _segments(report: Report, bd: Breakdown) -> dict[str, float]:
    standalone = report.model(bd.model_id).is_encoder_block
    out: dict[str, float] = {}
    for b in bd.blocks:
        if standalone and b.parts:
            for part, t in b.parts.items():
                out[part] = out.get(part, 0.0) + t
            rest = b.time - sum(b.parts.values())
            if rest > 1e-12 * max(1.0, b.time):
                g = block_group(b.block, b.kind, standalone=True)
                out[g] = out.get(g, 0.0) + rest
        else:
            g = block_group(b.block, b.kind, standalone=standalone)
            out[g] = out.get(g, 0.0) + b.time
    return out


def blocks_by_version(report: Report, model_id: str, path: Path) -> Chart | None:
    """Stacked bars: time per block group, one bar per QNN version, one panel per setting."""
    bds = [b for b in report.breakdowns if b.model_id == model_id]
    if not bds:
        return None
    model = report.model(model_id)
    panels: dict[Setting, list[Breakdown]] = {}
    for b in bds:
        panels.setdefault(report.column(b.column_id).setting, []).append(b)
    segs = {(b.model_id, b.column_id): _segments(report, b) for b in bds}
    groups: list[str] = []
    for s in segs.values():
        groups.extend(g for g in s if g not in groups)

    nrows, ncols = _grid(len(panels))
    width = max(8.0, min(18.0, 4.5 + 1.3 * max(len(v) for v in panels.values()) * ncols))
    fig = Figure(figsize=(width, 4.8 * nrows + 0.6), layout="constrained")
    handles: dict[str, object] = {}
    for k, (setting, items) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        unit = items[0].unit
        scale, _ = _scale(unit)
        xs = range(len(items))
        bottoms = [0.0] * len(items)
        for g in groups:
            ys = [segs[(b.model_id, b.column_id)].get(g, 0.0) * scale for b in items]
            if not any(ys):
                continue
            h = ax.bar(
                xs, ys, 0.6, bottom=bottoms, color=group_color(g), edgecolor="white", linewidth=0.5, label=g
            )
            handles[g] = h
            bottoms = [b + y for b, y in zip(bottoms, ys, strict=True)]
        for x, total in zip(xs, bottoms, strict=True):
            ax.annotate(
                fmt_ms(total),
                (x, total),
                ha="center",
                va="bottom",
                fontsize=9,
                xytext=(0, 2),
                textcoords="offset points",
            )
        # Shares inside the segments big enough to hold them.
        for j, b in enumerate(items):
            seg = segs[(b.model_id, b.column_id)]
            total = sum(seg.values())
            y = 0.0
            for g in groups:
                v = seg.get(g, 0.0) * scale
                if total and v / (total * scale) >= 0.08:
                    ax.text(
                        j,
                        y + v / 2,
                        f"{v / (total * scale) * 100:.0f}%",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if _dark(group_color(g)) else "black",
                    )
                y += v
        ax.set_xticks(list(xs), [report.column(b.column_id).version_label for b in items])
        ax.set_xlim(*_xlim(len(items)))
        ax.set_ylim(0, max(bottoms) * 1.12 if max(bottoms) else 1)
        ax.set_ylabel(_axis_label(setting, unit, "sum of per-op time"))
        ax.set_title(_wrap(setting.label, 60), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    # One legend for all panels, in model order, top segment first (it reads like the stack).
    ordered = [g for g in groups if g in handles][::-1]
    fig.legend(
        [handles[g] for g in ordered],
        ordered,
        loc="outside right center",
        fontsize=8,
        title="part" if model.is_encoder_block else "block",
    )
    # Wrapped to the figure's width: a one-column figure (7 in) holds about 60 characters of it;
    # unwrapped, a long model label clipped both ends of the title.
    fig.suptitle(_wrap(f"{model.label}: time per block by QNN version", int(width * 8.5)), fontsize=12,
                 fontweight="bold")
    _save(fig, path)
    return Chart(
        filename=path.name,
        title=f"Per-block time by QNN version: {model.label}",
        alt=f"Stacked bars of per-block time for {model.label}, one bar per QNN version.",
    )


def waterfall(report: Report, wf: Waterfall, path: Path, *, top: int = 5) -> Chart | None:
    """Every op of one profile in execution order, each bar starting where the previous one ended.

    With hundreds of ops each bar is a few pixels, so the column under each bar is shaded in
    its block's colour (the block regions read at a glance) and the `top` costliest ops are
    numbered on the chart and listed in a box rather than labelled with arrows.
    """
    if not wf.ops:
        return None
    model = report.model(wf.model_id)
    col = report.column(wf.column_id)
    scale, _ = _scale(wf.unit)
    starts, heights, colors, groups = [], [], [], []
    acc = 0.0
    for op in wf.ops:
        g = block_group(op.block, op.kind, standalone=model.is_encoder_block, part=op.part)
        starts.append(acc)
        heights.append(op.time * scale)
        acc += op.time * scale
        colors.append(group_color(g))
        groups.append(g)
    xs = list(range(len(wf.ops)))
    ends = [s + h for s, h in zip(starts, heights, strict=True)]

    fig = Figure(figsize=(12, 5.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    # Two collections rather than one patch per op: hundreds of patches make layout slow.
    ax.add_collection(
        PolyCollection(_rects(xs, [0.0] * len(xs), ends), facecolors=colors, alpha=0.22, linewidths=0)
    )
    ax.add_collection(PolyCollection(_rects(xs, starts, ends), facecolors=colors, linewidths=0))
    ax.step(xs, ends, where="mid", color="0.25", linewidth=0.6)

    ranked = sorted(xs, key=lambda i: -heights[i])[:top]
    lines = []
    for rank, i in enumerate(ranked, start=1):
        op = wf.ops[i]
        ax.annotate(
            str(rank),
            (i, ends[i]),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            fontweight="bold",
            bbox={"boxstyle": "circle,pad=0.15", "fc": "white", "ec": colors[i]},
        )
        name = op.name if len(op.name) <= 56 else "…" + op.name[-55:]
        lines.append(f"{rank}. {name}  {op.op_type}  {fmt_ms(heights[i])}  ({heights[i] / acc * 100:.1f}%)")
    unit_word = "ms" if wf.unit is Unit.MS else "M cycles"
    ax.text(
        0.99,
        0.03,
        f"costliest ops ({unit_word})\n" + "\n".join(lines),
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        multialignment="left",
        fontsize=8,
        family="monospace",
        bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "0.75", "alpha": 0.95},
    )

    seen: dict[str, object] = {}
    for g, c in zip(groups, colors, strict=True):
        seen.setdefault(g, c)
    fig.legend(
        [Patch(color=c) for c in seen.values()],
        list(seen),
        loc="outside right center",
        fontsize=8,
        title="part" if model.is_encoder_block else "block",
    )
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_ylim(0, acc * 1.08 if acc else 1)
    ax.set_xlabel("op index (execution order)")
    ax.set_ylabel(_axis_label(col.setting, wf.unit, "cumulative per-op time"))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(f"{wf.profile} · {len(wf.ops)} ops · total {fmt_ms(acc)} {unit_word}", fontsize=9)
    fig.suptitle(
        f"Per-op waterfall: {model.label}\n{_wrap(column_short(col), 110)}", fontsize=11, fontweight="bold"
    )
    _save(fig, path)
    return Chart(
        filename=path.name,
        title=f"Per-op waterfall: {model.label}, {col.version_label}",
        alt=f"Waterfall of {len(wf.ops)} ops of {wf.profile}, coloured by block.",
    )


def render_charts(report: Report, out_dir: Path) -> list[Chart]:
    """Write every chart the report has data for into `out_dir`; return them in display order."""
    out_dir = Path(out_dir)
    charts = [models_by_version(report, out_dir / "models_by_version.png")]
    for m in report.models:
        charts.append(blocks_by_version(report, m.id, out_dir / f"blocks_{m.id}.png"))
    for wf in report.waterfalls:
        charts.append(waterfall(report, wf, out_dir / f"waterfall_{wf.model_id}.png"))
    return [c for c in charts if c is not None]
