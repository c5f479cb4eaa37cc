"""The gate's verdict: one result per gated metric, and the outcome. Renderers read only this."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .rules import GateRules

VERDICT_KIND = "swiftformer-qnn.gate-verdict"
MODEL_METRIC = "model"  # the whole-model latency; every other profile metric is a block id


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricStatus(str, Enum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    UNCHANGED = "unchanged"  # within the threshold or under the absolute floor
    WITHIN_NOISE = "within-noise"  # beyond the threshold, but the run-to-run spread covers it
    MISSING_IN_CANDIDATE = "missing-in-candidate"
    MISSING_IN_BASELINE = "missing-in-baseline"

    @property
    def is_missing(self) -> bool:
        return self in (MetricStatus.MISSING_IN_CANDIDATE, MetricStatus.MISSING_IN_BASELINE)


class Method(str, Enum):
    BOOTSTRAP = "bootstrap"  # thresholds plus a bootstrap interval from the run-to-run spread
    THRESHOLD_ONLY = "threshold-only"  # too few samples to know the spread: thresholds alone
    STRUCTURE = "structure"  # compile-manifest figures: deterministic, no noise
    DETERMINISTIC = "deterministic"  # estimates (QNN's HTP estimator): one value per side, no noise model
    NONE = "none"  # nothing to compare (missing on one side)


class ChangeInterval(_Frozen):
    """Bootstrap percentile interval of the relative change (candidate / baseline - 1)."""

    low: float
    high: float
    confidence: float


class MetricResult(_Frozen):
    metric: str  # "model", a block id (stage2.block3), or a structure figure (htp_op_count@2.51.0)
    kind: Literal["model", "block", "structure"]
    unit: str  # us, ops, bytes, fraction
    statistic: str | None = None  # of the samples on each side (median, mean, min)
    baseline: float | None = None
    candidate: float | None = None
    change: float | None = None  # candidate - baseline, in `unit`
    relative_change: float | None = None  # candidate / baseline - 1
    interval: ChangeInterval | None = None
    prob_slower: float | None = None  # share of bootstrap resamples in which the candidate is slower
    n_baseline: int = 0
    n_candidate: int = 0
    relative_threshold: float | None = None
    absolute_floor: float | None = None  # in `unit`
    method: Method
    status: MetricStatus
    fails: bool  # this result alone fails the gate
    reason: str  # one sentence a CI log can show as is


class SideInfo(_Frozen):
    """What was compared on one side: where it came from and what it measured."""

    paths: list[str] = Field(default_factory=list)
    source: str | None = None  # aihub, qnn-net-run, published; None for compile manifests
    variant: str | None = None
    precision: str | None = None
    device: str | None = None
    input_shape: list[int] | None = None
    qnn_versions: list[str] = Field(default_factory=list)
    profiles: int = 0  # profile files (or compile manifests)
    runs: int = 0  # whole-model inference runs over all profiles
    job_ids: list[str] = Field(default_factory=list)


class GateVerdict(_Frozen):
    kind: Literal["swiftformer-qnn.gate-verdict"] = VERDICT_KIND
    schema_version: int = 1
    mode: Literal["profile", "structure"]
    passed: bool
    exit_code: int  # 0 pass, 1 regression (2, input error, never reaches a verdict)
    baseline: SideInfo
    candidate: SideInfo
    rules: GateRules
    mismatches: list[str] = Field(default_factory=list)  # identity differences allowed by --allow-mismatch
    notes: list[str] = Field(default_factory=list)
    results: list[MetricResult]
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def with_status(self, *status: MetricStatus) -> list[MetricResult]:
        return [r for r in self.results if r.status in status]

    @property
    def regressions(self) -> list[MetricResult]:
        return self.with_status(MetricStatus.REGRESSION)

    @property
    def improvements(self) -> list[MetricResult]:
        return self.with_status(MetricStatus.IMPROVEMENT)

    @property
    def missing(self) -> list[MetricResult]:
        return [r for r in self.results if r.status.is_missing]

    @property
    def failures(self) -> list[MetricResult]:
        return [r for r in self.results if r.fails]


def make_verdict(**fields) -> GateVerdict:
    """A verdict whose pass/fail and exit code follow from its results (never set by hand)."""
    passed = not any(r.fails for r in fields["results"])
    return GateVerdict(passed=passed, exit_code=0 if passed else 1, **fields)
