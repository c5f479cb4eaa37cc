"""Pure statistics of the latency gate: point estimates, a two-stage bootstrap, the decision.

The method (also in docs/ci.md):
- Each side's samples of a metric are grouped by the profile (one device session, one AI
  Hub job) they came from: the whole model has a group of `runs_us` per profile, a block
  one value per profile.
- The change is the chosen statistic of the candidate's pooled samples over the baseline's.
- Its spread comes from a two-stage bootstrap: resample the profiles with replacement,
  then the runs inside each chosen profile. Sessions differ more than runs inside one
  session do, and the first stage keeps that in the interval when a side has several.
- A metric regresses only when the change exceeds the relative threshold AND the absolute
  floor AND (when the spread is known) its whole `confidence` interval lies above zero.
  Improvements are the mirror image. A side with fewer than `min_samples` values has no
  usable spread; the metric is then gated on the two thresholds alone, and says so.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .rules import GateRules
from .verdict import ChangeInterval, Method, MetricResult, MetricStatus


@dataclass(frozen=True)
class Samples:
    """One metric's values on one side, grouped by the profile (session) they came from."""

    groups: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, groups: Sequence[Sequence[float]]) -> Samples:
        arrays = tuple(np.asarray(g, dtype=np.float64).ravel() for g in groups)
        return cls(tuple(a for a in arrays if a.size))

    @property
    def n(self) -> int:
        return sum(g.size for g in self.groups)

    @property
    def pooled(self) -> np.ndarray:
        return np.concatenate(self.groups) if self.groups else np.empty(0)


def statistic_rows(values: np.ndarray, statistic: str) -> np.ndarray:
    """The statistic of each row of a 2-D array.

    The median is taken by sorting: np.median along an axis is several times slower, and
    the simulation calls this a few million times.
    """
    if statistic == "mean":
        return values.mean(axis=1)
    if statistic == "min":
        return values.min(axis=1)
    s = np.sort(values, axis=1)
    n = s.shape[1]
    return 0.5 * (s[:, (n - 1) // 2] + s[:, n // 2])


def point(samples: Samples, statistic: str) -> float:
    return float(statistic_rows(samples.pooled[None, :], statistic)[0])


def bootstrap(samples: Samples, statistic: str, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The statistic over `resamples` two-stage bootstrap resamples of one side.

    Stage one draws as many profiles as there are, with replacement; stage two draws runs
    inside each drawn profile. Every drawn profile contributes as many draws as the largest
    profile has runs, so profiles weigh equally when their run counts differ.
    """
    groups = samples.groups
    if len(groups) == 1:
        g = groups[0]
        return statistic_rows(g[rng.integers(0, g.size, (resamples, g.size))], statistic)
    lengths = np.array([g.size for g in groups])
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    flat = np.concatenate(groups)
    k, width = len(groups), int(lengths.max())
    chosen = rng.integers(0, k, (resamples, k))
    if width == 1:  # one value per profile (block times): a plain bootstrap over profiles
        return statistic_rows(flat[chosen], statistic)
    if (lengths == width).all():  # the usual case, and twice as fast: integer draws, no scaling
        inner = rng.integers(0, width, (resamples, k, width), dtype=np.int32)
    else:
        inner = (rng.random((resamples, k, width)) * lengths[chosen][:, :, None]).astype(np.int32)
    idx = offsets[chosen][:, :, None] + inner
    return statistic_rows(flat[idx].reshape(resamples, k * width), statistic)


def _rng(rules: GateRules, metric: str) -> np.random.Generator:
    # Seeded per metric: the same profiles always give the same verdict, and a metric's
    # interval does not depend on which other metrics were gated before it.
    return np.random.default_rng([rules.seed, zlib.crc32(metric.encode())])


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _us(x: float, unit: str) -> str:
    return f"{x:+.1f} {unit}"


def compare(
    metric: str,
    kind: str,
    baseline: Samples | None,
    candidate: Samples | None,
    rules: GateRules,
    *,
    unit: str = "us",
    deterministic: bool = False,
) -> MetricResult:
    """Gate one metric: its change, the interval of the change, and the status.

    `deterministic` (estimate profiles): the figures have no noise, so there is no interval and
    no minimum sample count; the thresholds alone decide."""
    rel_thr, floor = rules.rule_for(metric)
    common = dict(
        metric=metric, kind=kind, unit=unit, statistic=rules.statistic,
        relative_threshold=rel_thr, absolute_floor=floor,
        n_baseline=baseline.n if baseline else 0, n_candidate=candidate.n if candidate else 0,
    )
    if not baseline or not baseline.n or not candidate or not candidate.n:
        status = MetricStatus.MISSING_IN_CANDIDATE if baseline and baseline.n else MetricStatus.MISSING_IN_BASELINE
        present = baseline if status is MetricStatus.MISSING_IN_CANDIDATE else candidate
        value = point(present, rules.statistic) if present and present.n else None
        where = "candidate" if status is MetricStatus.MISSING_IN_CANDIDATE else "baseline"
        return MetricResult(
            **common,
            baseline=value if status is MetricStatus.MISSING_IN_CANDIDATE else None,
            candidate=value if status is MetricStatus.MISSING_IN_BASELINE else None,
            method=Method.NONE, status=status, fails=rules.fail_on_missing,
            reason=f"{metric} is not in the {where} profiles"
            + (" (fails: fail_on_missing is set)." if rules.fail_on_missing else "."),
        )

    b, c = point(baseline, rules.statistic), point(candidate, rules.statistic)
    change = c - b
    rel = change / b if b > 0 else None
    # A zero baseline (an untimed block) has no relative change: the floor alone decides.
    slower = (rel is None or rel > rel_thr) and change > floor
    faster = (rel is None or rel < -rel_thr) and -change > floor

    interval = prob_slower = None
    spread_known = not deterministic and min(baseline.n, candidate.n) >= rules.min_samples and b > 0
    if spread_known:
        rng = _rng(rules, metric)
        bb = bootstrap(baseline, rules.statistic, rules.resamples, rng)
        cb = bootstrap(candidate, rules.statistic, rules.resamples, rng)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_boot = cb / bb - 1.0
        rel_boot = rel_boot[np.isfinite(rel_boot)]
        tail = (1.0 - rules.confidence) / 2
        lo, hi = np.quantile(rel_boot, [tail, 1.0 - tail])
        interval = ChangeInterval(low=float(lo), high=float(hi), confidence=rules.confidence)
        prob_slower = float(np.mean(rel_boot > 0))

    size = _pct(rel) if rel is not None else "n/a"
    size = f"{size} ({_us(change, unit)})"
    limits = f"threshold {rel_thr * 100:g}%, floor {floor:g} {unit}"
    if deterministic:
        caveat = "deterministic estimates: no noise, thresholds only"
        status = MetricStatus.REGRESSION if slower else MetricStatus.IMPROVEMENT if faster else MetricStatus.UNCHANGED
        method = Method.DETERMINISTIC
    elif not spread_known:
        n = min(baseline.n, candidate.n)
        caveat = f"{n} sample{'s' if n != 1 else ''} on the smaller side: no spread known, thresholds only"
        status = MetricStatus.REGRESSION if slower else MetricStatus.IMPROVEMENT if faster else MetricStatus.UNCHANGED
        method = Method.THRESHOLD_ONLY
    else:
        lo_s, hi_s = _pct(interval.low), _pct(interval.high)
        caveat = f"{rules.confidence * 100:g}% interval {lo_s}..{hi_s}"
        method = Method.BOOTSTRAP
        if slower and interval.low > 0:
            status = MetricStatus.REGRESSION
        elif faster and interval.high < 0:
            status = MetricStatus.IMPROVEMENT
        elif slower or faster:
            status = MetricStatus.WITHIN_NOISE
            caveat += ", which includes no change"
        else:
            status = MetricStatus.UNCHANGED
    verb = {
        MetricStatus.REGRESSION: "slower",
        MetricStatus.IMPROVEMENT: "faster",
        MetricStatus.WITHIN_NOISE: "changed",
        MetricStatus.UNCHANGED: "within limits",
    }[status]
    return MetricResult(
        **common, baseline=b, candidate=c, change=change, relative_change=rel,
        interval=interval, prob_slower=prob_slower, method=method, status=status,
        fails=status is MetricStatus.REGRESSION,
        reason=f"{metric} {verb}: {size}; {limits}; {caveat}.",
    )


def gate_samples(
    baseline: dict[str, Samples],
    candidate: dict[str, Samples],
    rules: GateRules,
    *,
    kinds: dict[str, str] | None = None,
    deterministic: bool = False,
) -> list[MetricResult]:
    """Compare every metric on either side, in baseline order, then candidate-only ones."""
    order = list(baseline) + [m for m in candidate if m not in baseline]
    kinds = kinds or {}
    return [compare(m, kinds.get(m, "block"), baseline.get(m), candidate.get(m), rules, deterministic=deterministic)
            for m in order]
