"""Mixed precision: from measured per-unit sensitivities and costs to a Pareto curve and a choice (pure).

The measurements (`pipeline.mixed`) give, on the same held-out inputs:

- the output noise of uniform w8a8 and uniform w8a16 against fp32 (`noise8`, `noise16`, each as
  error power over signal power, the inverse of SQNR in linear terms);
- per unit, `gain`: the power of the change of the output when that unit alone goes from 8- to
  16-bit activations, over the same signal power. The change is the unit's own 8-bit activation
  noise as it reaches the output, so it is free of the cross terms with every other unit's noise
  that make the SQNR difference of two runs on a few inputs swing by more than one unit's share;
- per unit, its extra cost at 16 bits (estimated time, or bit-ops where no estimate exists).

Model: noise powers of independent sources add, so the noise of an assignment with the units in
`S` at 16 bits is `noise16 + c * sum(gain[u] for u not in S)`, and its cost is
`cost8 + k * sum(extra[u] for u in S)`; `c` and `k` make the two uniform ends exact (what they
were measured to be). Units are added in order of gain per extra cost (the greedy knapsack
order AIMET's AMP walks too), which traces the curve from uniform w8a8 to uniform w8a16; the
search stage then measures the points it picks, so no predicted figure is reported as measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..core.errors import UsageError

# The default target: at least this share of the SQNR uniform w8a16 gains over w8a8 ...
DEFAULT_RECOVERED_SHARE = 0.5
# ... for at most this share of w8a16's extra cost.
DEFAULT_COST_SHARE = 1 / 3


@dataclass(frozen=True)
class UnitFigures:
    unit: str
    gain: float  # noise power removed when the unit alone goes 8 -> 16 bits, over signal power
    extra: float  # the unit's extra cost at 16 bits (same unit as the costs: us or bit-ops)


@dataclass(frozen=True)
class Ends:
    """Uniform w8a8 and w8a16, measured."""

    noise8: float
    noise16: float
    cost8: float
    cost16: float

    @property
    def sqnr8_db(self) -> float:
        return to_db(self.noise8)

    @property
    def sqnr16_db(self) -> float:
        return to_db(self.noise16)


@dataclass(frozen=True)
class Point:
    """One assignment on the curve: the units at 16 bits and its predicted figures."""

    sixteen: tuple[str, ...]
    sqnr_db: float  # predicted
    cost: float  # predicted

    def cost_ratio(self, ends: Ends) -> float:
        return self.cost / ends.cost8


@dataclass(frozen=True)
class Target:
    """What the user asks: a minimum SQNR (the cheapest assignment at or above it), a maximum cost
    ratio against uniform w8a8 (the most faithful within it), or neither (the default)."""

    min_sqnr_db: float | None = None
    max_cost_ratio: float | None = None

    def describe(self, ends: Ends) -> str:
        if self.min_sqnr_db is not None:
            return f"SQNR >= {self.min_sqnr_db:g} dB"
        if self.max_cost_ratio is not None:
            return f"cost <= {self.max_cost_ratio:g} x uniform w8a8"
        need, budget = default_requirements(ends)
        return (f"default: SQNR >= {need:.2f} dB (half of w8a16's {ends.sqnr16_db - ends.sqnr8_db:+.2f} dB over w8a8) "
                f"at cost <= {budget / ends.cost8:.3f} x w8a8 (a third of w8a16's extra)")


def to_db(noise: float) -> float:
    return math.inf if noise <= 0 else -10.0 * math.log10(noise)


def default_requirements(ends: Ends) -> tuple[float, float]:
    """(minimum SQNR dB, maximum cost) of the default target."""
    need = ends.sqnr8_db + DEFAULT_RECOVERED_SHARE * (ends.sqnr16_db - ends.sqnr8_db)
    budget = ends.cost8 + DEFAULT_COST_SHARE * (ends.cost16 - ends.cost8)
    return need, budget


def _scale(total: float, parts: float) -> float:
    """The factor that makes the summed parts equal the measured total (1 if either is not positive)."""
    return total / parts if total > 0 and parts > 0 else 1.0


def predict(sixteen: Sequence[str], units: Sequence[UnitFigures], ends: Ends) -> Point:
    """The predicted SQNR and cost of the assignment with `sixteen` at 16 bits (module docstring)."""
    chosen = set(sixteen)
    c = _scale(ends.noise8 - ends.noise16, sum(max(u.gain, 0.0) for u in units))
    k = _scale(ends.cost16 - ends.cost8, sum(max(u.extra, 0.0) for u in units))
    noise = ends.noise16 + c * sum(max(u.gain, 0.0) for u in units if u.unit not in chosen)
    cost = ends.cost8 + k * sum(max(u.extra, 0.0) for u in units if u.unit in chosen)
    order = [u.unit for u in units if u.unit in chosen]
    return Point(tuple(order), to_db(noise), cost)


def greedy_order(units: Sequence[UnitFigures]) -> list[UnitFigures]:
    """Units by gain per extra cost, best first; units that cost nothing extra and gain come first,
    units that gain nothing last (by cost, so the curve still ends at uniform w8a16)."""
    def key(u: UnitFigures):
        if u.gain <= 0:
            return (2, u.extra, u.unit)
        if u.extra <= 0:
            return (0, -u.gain, u.unit)
        return (1, -u.gain / u.extra, u.unit)

    return sorted(units, key=key)


def pareto_curve(units: Sequence[UnitFigures], ends: Ends) -> list[Point]:
    """The greedy path from uniform w8a8 (no unit at 16 bits) to uniform w8a16, keeping only
    points that no cheaper point matches in SQNR."""
    order = greedy_order(units)
    path = [predict([u.unit for u in order[:k]], units, ends) for k in range(len(order) + 1)]
    curve, best = [], -math.inf
    for p in path:
        if p.sqnr_db > best:
            curve.append(p)
            best = p.sqnr_db
    return curve


def choose(curve: Sequence[Point], ends: Ends, target: Target) -> Point:
    """The point of the curve the target asks for; UsageError (one line) when none meets it."""
    if target.min_sqnr_db is not None:
        ok = [p for p in curve if p.sqnr_db >= target.min_sqnr_db]
        if not ok:
            raise UsageError(
                f"No assignment reaches --min-sqnr {target.min_sqnr_db:g} dB: even uniform w8a16 is predicted at "
                f"{curve[-1].sqnr_db:.2f} dB (measured {ends.sqnr16_db:.2f} dB) against fp32.",
                hint=f"Ask for at most {ends.sqnr16_db:.1f} dB, or use more faithful weights or calibration.")
        return min(ok, key=lambda p: p.cost)
    if target.max_cost_ratio is not None:
        budget = target.max_cost_ratio * ends.cost8
        return max((p for p in curve if p.cost <= budget), key=lambda p: (p.sqnr_db, -p.cost))
    need, budget = default_requirements(ends)
    within = [p for p in curve if p.cost <= budget]
    best = max(within, key=lambda p: (p.sqnr_db, -p.cost))
    if best.sqnr_db < need:
        raise UsageError(
            f"The default mixed-precision target cannot be met: the best assignment within a third of w8a16's extra "
            f"cost ({budget / ends.cost8:.3f} x w8a8) is predicted at {best.sqnr_db:.2f} dB, short of {need:.2f} dB "
            f"(half of the {ends.sqnr16_db - ends.sqnr8_db:.2f} dB w8a16 gains over w8a8's {ends.sqnr8_db:.2f} dB).",
            hint="Set the target yourself: --min-sqnr DB or --max-time-ratio R.")
    ok = [p for p in within if p.sqnr_db >= need]
    return min(ok, key=lambda p: p.cost)


def meets(target: Target, ends: Ends, sqnr_db: float, cost: float) -> bool:
    """Whether measured figures meet the target (the check after the choice is measured)."""
    if target.min_sqnr_db is not None:
        return sqnr_db >= target.min_sqnr_db
    if target.max_cost_ratio is not None:
        return cost <= target.max_cost_ratio * ends.cost8
    need, budget = default_requirements(ends)
    return sqnr_db >= need and cost <= budget


def next_candidates(curve: Sequence[Point], chosen: Point, target: Target, ends: Ends) -> list[Point]:
    """Where to look when the measured choice misses: up the curve when SQNR fell short (within
    the budget, if any), down it when the cost went over."""
    i = list(curve).index(chosen)
    if target.max_cost_ratio is not None:
        return list(reversed(curve[:i]))
    budget = default_requirements(ends)[1] if target.min_sqnr_db is None else math.inf
    return [p for p in curve[i + 1:] if p.cost <= budget]


def lite_mp(sensitivity: Mapping[str, float], percentage: float = 10.0) -> tuple[str, ...]:
    """Qualcomm AI Hub's Lite-MP rule on our units: the `percentage`% most sensitive units (by the
    measured gain, at least one) in 16 bits."""
    n = max(1, math.ceil(len(sensitivity) * percentage / 100.0))
    ranked = sorted(sensitivity, key=lambda u: (-sensitivity[u], u))
    return tuple(ranked[:n])
