"""Mixed precision: from measured per-unit sensitivities and costs to a Pareto curve and a choice (pure).

The measurements (`pipeline.mixed`) give, on the same held-out inputs:

- the output noise of uniform w8a8 and uniform w8a16 against fp32 (`noise8`, `noise16`, each as
  error power over signal power, the inverse of SQNR in linear terms);
- per unit, `gain`: the output noise power (over the same signal power) its 16 bits remove,
  from the noise of every unit's output in a few whole-model runs (`chain_gains`), or from the
  unit alone at 8 bits; and `handover`, the part of it its output's 8-bit rounding makes, kept
  while the next unit reads 8 bits;
- per unit, its extra cost at 16 bits (estimated time, or bit-ops where no estimate exists).

Model: noise powers of independent sources add, so the noise of an assignment with the units in
`S` at 16 bits is `noise16 + c * (sum(gain[u] for u not in S) + sum(handover[u] for u in S whose
next unit is not))`, and its cost is `cost8 + k * sum(extra[u] for u in S)` plus the Convert ops'
cost at each meeting of an 8- and a 16-bit unit; `c` and `k` make the two uniform ends exact (what
they were measured to be) until measured candidates correct them (`corrected`). Units are added
by predicted gain per added cost (the greedy knapsack order AIMET's AMP walks too), which traces
the curve from uniform w8a8 to uniform w8a16; the search stage then measures the points it
picks, so no predicted figure is reported as measured.
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
# A unit with pieces that costs more than this share of the default budget is measured by pieces.
SPLIT_SHARE = 0.5
# A measured point that meets the default target's SQNR and misses its time by less than this share
# of the budget gets its one-unit neighbours priced by the estimate (`neighbours`).
NEAR_MISS = 0.02
# A unit's carry factor (how its input noise reaches its output, relative) outside [0, this] is
# taken for a measurement artefact (two nearly equal input noises) and not used.
MAX_CARRY = 4.0


@dataclass(frozen=True)
class UnitFigures:
    unit: str
    gain: float  # noise power removed when the unit alone goes 8 -> 16 bits, over signal power
    extra: float  # the unit's extra cost at 16 bits (same unit as the costs: us or bit-ops)
    # The part of `gain` its output's 8-bit rounding makes: kept while the next unit (in the order
    # of the units given) reads 8 bits, since the tensor is then re-quantized to 8 bits for it.
    handover: float = 0.0


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

    @property
    def is_default(self) -> bool:
        return self.min_sqnr_db is None and self.max_cost_ratio is None

    def describe(self, ends: Ends) -> str:
        if self.min_sqnr_db is not None:
            return f"SQNR >= {self.min_sqnr_db:g} dB"
        if self.max_cost_ratio is not None:
            return f"cost <= {self.max_cost_ratio:g} x uniform w8a8"
        need, budget = default_requirements(ends)
        return (f"default: SQNR >= {need:.2f} dB (half of w8a16's {ends.sqnr16_db - ends.sqnr8_db:+.2f} dB over w8a8) "
                f"at cost <= {budget / ends.cost8:.3f} x w8a8 (a third of w8a16's extra)")


# The advice when the default target cannot be met: the two targets a user can set instead.
SET_TARGET = ("Set the target yourself: --min-sqnr DB for the cheapest assignment at or above DB, or "
              "--max-time-ratio R for the most faithful within R x w8a8")


def to_db(noise: float) -> float:
    return math.inf if noise <= 0 else -10.0 * math.log10(noise)


def default_requirements(ends: Ends) -> tuple[float, float]:
    """(minimum SQNR dB, maximum cost) of the default target."""
    need = ends.sqnr8_db + DEFAULT_RECOVERED_SHARE * (ends.sqnr16_db - ends.sqnr8_db)
    budget = ends.cost8 + DEFAULT_COST_SHARE * (ends.cost16 - ends.cost8)
    return need, budget


def units_to_split(extra: Mapping[str, float], ends: Ends) -> list[str]:
    """Of the units that have pieces (`extra`: their extra cost at 16 bits), those that cost more than
    `SPLIT_SHARE` of the default target's time budget: the search could only afford them whole by
    leaving most other units at 8 bits, so it gets their pieces instead. The default budget, not
    the user's: the sensitivity is measured once for every target."""
    _, budget = default_requirements(ends)
    return [u for u, cost in extra.items() if cost > SPLIT_SHARE * (budget - ends.cost8)]


def _scale(total: float, parts: float) -> float:
    """The factor that makes the summed parts equal the measured total (1 if either is not positive)."""
    return total / parts if total > 0 and parts > 0 else 1.0


# Where units meet: per tensor one unit writes and other units read, (writer, readers). A tensor
# whose readers include one of the other width gets a Convert (`precision_units.activation_overrides`).
Crossings = tuple[tuple[str, tuple[str, ...]], ...]


def chain_crossings(chain: Sequence[str]) -> Crossings:
    """The crossings of units in a chain: each hands one tensor to the next."""
    return tuple((a, (b,)) for a, b in zip(chain, chain[1:], strict=False))


@dataclass(frozen=True)
class Corrections:
    """What measured candidates teach the additive model: `noise_scale` multiplies the summed gains
    of the 8-bit units (None: the factor that makes the uniform ends exact), `convert_cost` is
    the cost of each tensor an 8- and a 16-bit unit meet at (the Convert ops a mix adds), read
    from `crossings`."""

    noise_scale: float | None = None
    convert_cost: float = 0.0
    crossings: Crossings = ()

    def meetings(self, sixteen: set[str]) -> int:
        return sum(any((r in sixteen) != (w in sixteen) for r in readers) for w, readers in self.crossings)


def predict(sixteen: Sequence[str], units: Sequence[UnitFigures], ends: Ends,
            corrections: Corrections = Corrections()) -> Point:
    """The predicted SQNR and cost of the assignment with `sixteen` at 16 bits (module docstring)."""
    chosen = set(sixteen)
    c = corrections.noise_scale
    if c is None:
        c = _scale(ends.noise8 - ends.noise16, sum(max(u.gain, 0.0) for u in units))
    k = _scale(ends.cost16 - ends.cost8, sum(max(u.extra, 0.0) for u in units))
    kept = sum(max(u.handover, 0.0) for u, after in zip(units, units[1:], strict=False)
               if u.unit in chosen and after.unit not in chosen)
    noise = ends.noise16 + c * (sum(max(u.gain, 0.0) for u in units if u.unit not in chosen) + kept)
    cost = (ends.cost8 + k * sum(max(u.extra, 0.0) for u in units if u.unit in chosen)
            + corrections.convert_cost * corrections.meetings(chosen))
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


def greedy_path(units: Sequence[UnitFigures], ends: Ends, corrections: Corrections = Corrections()) -> list[Point]:
    """From uniform w8a8 to uniform w8a16, one unit at a time: the unit that gains the most per
    cost it adds to the assignment so far (Convert ops included, so a unit beside 16-bit units is
    cheaper than one between 8-bit ones, and its gain with the rounding it hands over); without
    either, the order of `greedy_order`."""
    if not corrections.convert_cost and not any(u.handover for u in units):
        order = greedy_order(units)
        return [predict([u.unit for u in order[:k]], units, ends, corrections) for k in range(len(order) + 1)]
    path = [predict([], units, ends, corrections)]
    left = list(units)
    while left:
        here = path[-1]

        def key(u: UnitFigures, here: Point = here):
            there = predict([*here.sixteen, u.unit], units, ends, corrections)
            step, gain = there.cost - here.cost, 10 ** (-here.sqnr_db / 10) - 10 ** (-there.sqnr_db / 10)
            if gain <= 0:
                return (2, step, u.unit)
            if step <= 0:
                return (0, -gain, u.unit)
            return (1, -gain / step, u.unit)

        best = min(left, key=key)
        left.remove(best)
        path.append(predict([*here.sixteen, best.unit], units, ends, corrections))
    return path


def pareto_curve(units: Sequence[UnitFigures], ends: Ends, corrections: Corrections = Corrections()) -> list[Point]:
    """The greedy path from uniform w8a8 (no unit at 16 bits) to uniform w8a16, keeping only
    points that no cheaper point matches in SQNR."""
    path = sorted(greedy_path(units, ends, corrections), key=lambda p: p.cost)
    curve, best = [], -math.inf
    for p in path:
        if p.sqnr_db > best:
            curve.append(p)
            best = p.sqnr_db
    return curve


def corrected(units: Sequence[UnitFigures], ends: Ends, measured: Sequence[tuple[Sequence[str], float, float]],
              crossings: Crossings, convert_cost: float = 0.0) -> Corrections:
    """The corrections the measured mixed assignments (`(sixteen, noise, cost)`, neither end)
    imply: the noise scale that fits their noise best (least squares on the noise above
    uniform w8a16's), and the convert cost that fits their cost above the additive one (else
    `convert_cost`, e.g. from the sensitivity's own mixed run)."""
    base = Corrections(crossings=crossings)
    unscaled = Corrections(noise_scale=1.0, crossings=crossings)
    rest = [(10 ** (-predict(s, units, ends, unscaled).sqnr_db / 10) - ends.noise16, n - ends.noise16)
            for s, n, _ in measured]
    scale = (sum(g * d for g, d in rest) / sum(g * g for g, _ in rest)) if rest and any(g for g, _ in rest) else None
    if scale is not None and scale <= 0:
        scale = None
    meets_ = [(base.meetings(set(s)), c - predict(s, units, ends, base).cost) for s, _, c in measured]
    meets_ = [(m, d) for m, d in meets_ if m]
    if meets_:
        convert_cost = max(0.0, sum(m * d for m, d in meets_) / sum(m * m for m, _ in meets_))
    return Corrections(noise_scale=scale, convert_cost=convert_cost, crossings=crossings)


def chain_gains(noise8: Sequence[float], noise16: Sequence[float],
                mixed: Sequence[tuple[Sequence[bool], Sequence[float]]] = (),
                handover: Sequence[float] | None = None) -> tuple[list[float], list[float], list[float]]:
    """Per unit of a chain, from each unit's output noise (error power over signal power against
    fp32, read where its own quantizer writes it) in uniform w8a8, uniform w8a16 and mixed runs
    (`(is 16-bit per unit, noise per unit)`), and the noise of each output's 8-bit rounding alone
    (`handover`): (its gain at the model output, the part of it that is its output's rounding, the
    factor its output noise is carried to the model output with).

    Model: a unit's output noise is the noise it reads, carried through it by a factor `g`, plus
    its own, which depends on its width only: `r[k] = g[k] (r[k-1] + h) + q[k](bits)`, noise
    powers added (independent rounding); `h` is the previous output's 8-bit rounding when that
    unit wrote 16 bits and this one reads 8 (a Convert re-quantizes it), else 0. A mixed run gives
    each unit a second input noise at one width, so `g[k]` (without one, 1: relative noise carried
    unchanged); then `q8[k] = r8[k] - g[k] r8[k-1]`, `q16[k]` likewise, and the gain is
    `(q8 - q16)` times the product of the later units' `g`. The gains of all units add up to
    uniform w8a8's output noise minus w8a16's exactly."""
    n = len(noise8)
    rounding = list(handover) if handover is not None else [0.0] * n
    carry = [1.0] * n
    for k in range(1, n):
        estimates = []
        for sixteen, r in mixed:
            same = noise16 if sixteen[k] else noise8
            requantized = rounding[k - 1] if sixteen[k - 1] and not sixteen[k] else 0.0
            d_in = same[k - 1] - r[k - 1] - requantized
            if abs(d_in) > 1e-3 * max(same[k - 1], r[k - 1], 1e-30):
                estimates.append((same[k] - r[k]) / d_in)
        good = [g for g in estimates if math.isfinite(g) and 0.0 <= g <= MAX_CARRY]
        if good:
            carry[k] = sum(good) / len(good)
    later = [math.prod(carry[k + 1:]) for k in range(n)]
    gains = []
    for k in range(n):
        before8 = noise8[k - 1] if k else 0.0
        before16 = noise16[k - 1] if k else 0.0
        own = (noise8[k] - carry[k] * before8) - (noise16[k] - carry[k] * before16)
        gains.append(own * later[k])
    kept = [rounding[k] * later[k] if k < n - 1 else 0.0 for k in range(n)]
    return gains, kept, later


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
            hint=SET_TARGET + ".")
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


def refusal_hint(target: Target, ends: Ends, measured: Sequence[tuple[float, float]]) -> str:
    """What to ask for instead when no measured assignment meets `target`, from the measured
    candidates' (SQNR dB, cost), at least one: a target the user did not give is never named as
    one to loosen, and every figure offered, typed back, admits the point it is quoted for."""
    if target.min_sqnr_db is not None:
        sqnr, cost = max(measured, key=lambda m: (m[0], -m[1]))
        return (f"Ask for at most {math.floor(sqnr * 100) / 100:.2f} dB with --min-sqnr (the most faithful "
                f"measured, at {cost / ends.cost8:.3f}x w8a8), or for a time budget with --max-time-ratio R.")
    if target.max_cost_ratio is not None:
        cheapest = min(cost for _, cost in measured)
        return f"Raise --max-time-ratio to at least {typed_ratio(cheapest, ends):.3f} (the cheapest measured)."
    _, budget = default_requirements(ends)
    ask = f"{SET_TARGET}; --max-time-ratio {typed_ratio(budget, ends):.3f} takes in the default's time"
    within = [(sqnr, cost) for sqnr, cost in measured if cost <= budget]
    if not within:
        return ask + "."
    sqnr, cost = max(within, key=lambda m: (m[0], -m[1]))
    return ask + f" (the most faithful measured within it: {sqnr:.2f} dB at {cost / ends.cost8:.3f}x)."


def typed_ratio(cost: float, ends: Ends) -> float:
    """The smallest ratio of three decimals, as a user types it, whose budget (`meets`: ratio x
    w8a8's cost) admits `cost`: rounding to nearest could leave the quoted point just outside."""
    ratio = math.ceil(cost / ends.cost8 * 1000) / 1000
    lower = round(ratio - 0.001, 3)  # the ceiling of a float product can land one step high
    return lower if lower * ends.cost8 >= cost else ratio


def next_candidates(curve: Sequence[Point], chosen: Point, target: Target, ends: Ends) -> list[Point]:
    """Where to look when the measured choice misses: up the curve when SQNR fell short (within
    the budget, if any), down it when the cost went over."""
    i = list(curve).index(chosen)
    if target.max_cost_ratio is not None:
        return list(reversed(curve[:i]))
    budget = default_requirements(ends)[1] if target.min_sqnr_db is None else math.inf
    return [p for p in curve[i + 1:] if p.cost <= budget]


def neighbours(sixteen: Sequence[str], units: Sequence[UnitFigures], ends: Ends, corrections: Corrections,
               need_db: float) -> list[Point]:
    """The assignments one unit away from `sixteen` (a unit added or taken out) that the corrected
    model predicts at or above `need_db`, cheapest predicted first: where a point that misses the
    time by a little looks for a cheaper neighbour. The estimate of a mix is not the sum the model
    adds (the standalone block 1x96x64x64: its local representation and residual at 16 bits,
    484.0 us against a 483.3 us budget; with the attention's final piece as well, 478.0 us), so
    the neighbours are priced by the estimate itself, not by `predict`'s cost."""
    chosen = set(sixteen)
    around = [[*sixteen, u.unit] for u in units if u.unit not in chosen]
    around += [[v for v in sixteen if v != u] for u in sixteen]
    points = [predict(s, units, ends, corrections) for s in around]
    return sorted((p for p in points if p.sqnr_db >= need_db), key=lambda p: (p.cost, p.sixteen))


def near_miss(target: Target, ends: Ends, sqnr_db: float, cost: float) -> bool:
    """Whether measured figures meet the default target's SQNR and miss its time by at most `NEAR_MISS`
    of the budget."""
    if not target.is_default:
        return False
    need, budget = default_requirements(ends)
    return sqnr_db >= need and budget < cost <= budget * (1 + NEAR_MISS)


def lite_mp(sensitivity: Mapping[str, float], percentage: float = 10.0) -> tuple[str, ...]:
    """Qualcomm AI Hub's Lite-MP rule on our units: the `percentage`% most sensitive units (by the
    measured gain, at least one) in 16 bits."""
    n = max(1, math.ceil(len(sensitivity) * percentage / 100.0))
    ranked = sorted(sensitivity, key=lambda u: (-sensitivity[u], u))
    return tuple(ranked[:n])
