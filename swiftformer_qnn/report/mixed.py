"""Mixed precision rendered: the per-unit sensitivity table, the Pareto table and chart, Markdown.

Reads the typed results of the `sensitivity` and `mixed_search` stages; the terminal, the
Markdown file and the chart show the same table specs. Estimated times carry the estimator's
label; bit-ops say they are bit-ops.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..pipeline.stage_results import CandidateFigures, MixedPoint, SearchResults, SensitivityResults
from .markdown import table_md
from .tables import TableSpec

MARKDOWN = "mixed-precision.md"
CHART = "mixed-precision-pareto.png"


def _db(v: float | None) -> str:
    return "exact" if v is None else f"{v:.2f}"


def _cost(s: SensitivityResults, value: float) -> str:
    return f"{value:.0f}" if s.cost_unit == "us" else f"{value / 1e9:.2f} G"


def _cost_header(s: SensitivityResults) -> tuple[str, ...]:
    return ("est. time", "us") if s.cost_unit == "us" else ("bit-ops",)


def sensitivity_table(s: SensitivityResults) -> TableSpec:
    """One row per unit: the output noise its 16 bits remove (on the HTP and on the CPU), and how
    it was found: its output's SQNR in uniform w8a8 and w8a16 and the factor its noise reaches the
    model output with (taps), or the SQNR with it alone at 8 bits (one unit at a time)."""
    taps = s.direction == "taps"
    rows = [[u.unit, f"{u.htp_gain_db:.1f}" if u.htp_gain_db is not None else "-", f"{_gain_db(u.cpu_gain)}",
             *(("-", "-", "-") if taps and u.piece_of else
               (_db(u.out_sqnr8_db), _db(u.out_sqnr16_db), f"{u.carry:.2f}") if taps else (_db(u.htp_sqnr_db),)),
             _cost(s, u.extra_cost)]
            for u in s.units]
    how = (f"from each unit's output against fp32 in uniform w8a8, w8a16 and {len(s.tap_runs)} mixed run(s)"
           if taps else "each unit alone at 8 bits from uniform w8a16")
    split = ", ".join(u.unit for u in s.split)
    return TableSpec(
        title=f"Sensitivity: {how} ({s.samples} held-out inputs)",
        headers=[("unit",), ("gain HTP", "dB"), ("gain CPU", "dB"),
                 *((("out w8a8", "SQNR dB"), ("out w8a16", "SQNR dB"), ("carry",)) if taps else (("SQNR", "HTP dB"),)),
                 ("extra",) + _cost_header(s)[1:]],
        rows=rows, numeric_from=1,
        caption=("gain: the model output's noise power its 16 bits remove, in dB of the fp32 output (higher: more "
                 "sensitive); the search scales the gains to add up to w8a8's noise minus w8a16's. "
                 + ("carry: how its output's relative noise reaches the model output. " if taps else "")
                 + (f"{split}: too costly at 16 bits whole (over half the default time budget), so measured by its "
                    "pieces, each alone at 8 bits from uniform w8a16. " if split else "")
                 + f"Uniform w8a8 {_db(s.w8a8.htp_sqnr_db)} dB, w8a16 {_db(s.w8a16.htp_sqnr_db)} dB (HTP emulator "
                 f"vs fp32); {_cost(s, s.convert_cost)} per meeting of 8- and 16-bit units. Cost: {s.cost_source}."))


def _gain_db(g: float) -> str:
    return f"{10 * math.log10(g):.1f}" if g > 0 else "-"


def _row(s: SensitivityResults, name: str, sixteen: int, predicted: float | None, m: CandidateFigures | None) -> list[str]:
    base = s.w8a8.cost
    if m is None:
        return [name, str(sixteen), "-", _db(predicted) if predicted is not None else "-", "-", "-", "-", "-", "-", "-"]
    top1 = f"{m.htp_top1:.0%}" if m.htp_top1 is not None else "-"
    return [name, str(sixteen), f"{m.sixteen_share:.0%}", _db(predicted) if predicted is not None else "-",
            _db(m.htp_sqnr_db), top1, f"{_cost(s, m.cost)} ({m.cost / base:.2f}x)" if m.cost_measured else "-",
            str(m.htp_ops) if m.htp_ops is not None else "-", str(m.converts),
            f"{m.context_binary_bytes / 2**20:.1f}" if m.context_binary_bytes else "-"]


def pareto_table(s: SensitivityResults, r: SearchResults) -> TableSpec:
    """Uniform w8a8, the curve's points, uniform w8a16, Lite-MP and this search's point at
    Lite-MP's cost: predicted SQNR everywhere, measured figures where the point was run."""
    rows = [_row(s, "w8a8", 0, s.w8a8.htp_sqnr_db, s.w8a8)]
    chosen = set(r.chosen.sixteen)
    for k, p in enumerate(r.curve[1:-1], 1):
        mark = " (chosen)" if set(p.sixteen) == chosen else ""
        rows.append(_row(s, f"curve {k}{mark}", len(p.sixteen), p.predicted_sqnr_db, p.measured))
    on_curve = {frozenset(p.sixteen) for p in r.curve}
    for k, t in enumerate(r.tried, 1):
        if frozenset(t.sixteen) not in on_curve:
            mark = " (chosen)" if set(t.sixteen) == chosen else ""
            rows.append(_row(s, f"tried {k}{mark}", len(t.sixteen), t.predicted_sqnr_db, t.measured))
    rows.append(_row(s, "w8a16", len(s.units), s.w8a16.htp_sqnr_db, s.w8a16))
    if r.lite_mp is not None:
        rows.append(_row(s, "Lite-MP 10%", len(r.lite_mp.sixteen), r.lite_mp.predicted_sqnr_db, r.lite_mp.measured))
    if r.lite_mp_peer is not None:
        rows.append(_row(s, "ours @ Lite-MP", len(r.lite_mp_peer.sixteen), r.lite_mp_peer.predicted_sqnr_db,
                         r.lite_mp_peer.measured))
    return TableSpec(
        title=f"Pareto curve, target {r.target}",
        headers=[("assignment",), ("16-bit", "units"), ("16-bit", "MACs"), ("SQNR dB", "predicted"),
                 ("SQNR dB", "HTP"), ("top-1",), _cost_header(s) if s.cost_unit != "us" else ("est. time us", "(x w8a8)"),
                 ("HTP", "ops"), ("Convert", "ops"), ("binary", "MB")],
        rows=rows, numeric_from=1,
        caption=(f"HTP: the compiled binary on the HTP emulator vs fp32 on {s.samples} held-out inputs; '-': not "
                 f"measured; predicted: by the gains, corrected by the measured candidates; tried: measured "
                 f"candidates off the corrected curve. Cost: {s.cost_source}."),
        footnotes=[f"chosen: {', '.join(r.chosen.sixteen) or 'none'} at 16 bits",
                   *([f"priced alone, one unit from a point just over the time ({_cost_header(s)[-1]}): "
                      + "; ".join(_priced(p, r, s) for p in r.priced)] if r.priced else [])])


def _priced(p: MixedPoint, r: SearchResults, s: SensitivityResults) -> str:
    measured = {frozenset(t.sixteen) for t in r.tried}
    fate = ("chosen" if set(p.sixteen) == set(r.chosen.sixteen) else "measured" if frozenset(p.sixteen) in measured
            else "over the time")
    return f"{len(p.sixteen)} unit(s), {_cost(s, p.priced)} ({fate})"


def chosen_line(r: SearchResults) -> str:
    m = r.chosen.measured
    units = ", ".join(r.chosen.sixteen) or "none"
    if m is None:
        return f"16-bit units: {units}"
    return (f"16-bit units ({len(r.chosen.sixteen)}, {m.sixteen_share:.0%} of MACs): {units}; HTP vs fp32 "
            f"{_db(m.htp_sqnr_db)} dB, {m.converts} Convert ops")


def mixed_md(s: SensitivityResults, r: SearchResults) -> str:
    return ("# Mixed precision\n\n" + chosen_line(r) + ".\n\n" + table_md(sensitivity_table(s), level=2) + "\n\n"
            + table_md(pareto_table(s, r), level=2) + f"\n\n![Pareto curve]({CHART})\n")


def _measured(points: list[tuple[str, MixedPoint | CandidateFigures | None]]):
    for label, p in points:
        m = p.measured if isinstance(p, MixedPoint) else p
        if m is not None and m.cost_measured and m.htp_sqnr_db is not None:
            yield label, m


def pareto_chart(s: SensitivityResults, r: SearchResults, path: Path) -> Path:
    """SQNR against cost relative to uniform w8a8: the predicted curve and every measured point."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    base = s.w8a8.cost
    ax.plot([p.predicted_cost / base for p in r.curve], [p.predicted_sqnr_db for p in r.curve], "-o", color="0.6",
            markersize=3, label="predicted (greedy curve)")
    points = [("w8a8", s.w8a8), ("w8a16", s.w8a16), ("chosen", r.chosen), ("Lite-MP 10%", r.lite_mp),
              ("ours @ Lite-MP", r.lite_mp_peer)]
    points += [("tried", t) for t in r.tried if t.sixteen != r.chosen.sixteen]
    points += [("", p) for p in r.curve if p.measured is not None]
    markers = {"w8a8": "s", "w8a16": "s", "chosen": "*", "Lite-MP 10%": "^", "ours @ Lite-MP": "D", "tried": "x",
               "": "o"}
    # One colour per kind of point, whichever order they are drawn in.
    colors = {"w8a8": "tab:blue", "w8a16": "tab:orange", "chosen": "tab:green", "Lite-MP 10%": "tab:red",
              "ours @ Lite-MP": "tab:purple", "tried": "tab:brown", "": "0.4"}
    seen = set()
    for label, m in _measured(points):
        ax.scatter([m.cost / base], [m.htp_sqnr_db], marker=markers[label], s=90 if label == "chosen" else 40,
                   color=colors[label], zorder=4 if label == "chosen" else 3,
                   label=label if label and label not in seen else None)
        seen.add(label)
    what = "estimated time" if s.cost_unit == "us" else "bit-ops"
    ax.set_xlabel(f"{what} relative to uniform w8a8")
    ax.set_ylabel("SQNR vs fp32, dB (HTP emulator)")
    ax.set_title("\n".join(textwrap.wrap(f"Mixed precision: {r.target}", 90)), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.text(0.01, 0.01, f"cost: {s.cost_source}"[:150], fontsize=6)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, facecolor="white")
    return path
