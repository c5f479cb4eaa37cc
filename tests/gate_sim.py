"""Simulated gating: how often noise alone fails the gate, and how often a real slowdown is caught.

Synthetic, device-free and reproducible (fixed seed). A test and benchmark helper:
`tests/bench/bench_gate.py` measures the rates quoted in docs/ci.md; the tests call `simulate`
with the same defaults.

The noise model: every run is the true latency times a lognormal factor of sigma `spread`
(multiplicative and slightly right-skewed, as device latency is); each profile (session)
may add its own lognormal drift of sigma `session_spread`. A block's time in a profile is
its true time with the same noise (one profiling pass per profile).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from swiftformer_qnn.gate.rules import GateRules
from swiftformer_qnn.gate.stats import Samples, gate_samples
from swiftformer_qnn.gate.verdict import MODEL_METRIC, MetricStatus
from swiftformer_qnn.measure.schema import (
    Attribution,
    ComputeUnit,
    LatencySource,
    LatencySummary,
    ModelInfo,
    OpRecord,
    Profile,
    Provenance,
    TargetInfo,
    ToolchainInfo,
)
from swiftformer_qnn.model.variants import VARIANTS, BlockKind


def l1_block_times_us(total_us: float = 1500.0) -> dict[str, float]:
    """Synthetic per-block times for SwiftFormer-L1 summing to `total_us`.

    Not measured: weights proportional to a rough cost (a SwiftFormerEncoder twice a
    ConvEncoder, deeper stages cheaper per block at fewer tokens), only to give the
    simulation blocks of realistic number and size relative to the 20 us floor.
    """
    v = VARIANTS["l1"]
    weights = {"stem": 2.0}
    for i, _ in enumerate(v.depths):
        if i:
            weights[f"stage{i}.downsample"] = 0.6
        for j, kind in enumerate(v.block_kinds(i)):
            weights[f"stage{i}.block{j}"] = 2.0 if kind is BlockKind.SWIFTFORMER_ENCODER else 1.0
    weights["head"] = 0.3
    scale = total_us / sum(weights.values())
    return {k: w * scale for k, w in weights.items()}


@dataclass(frozen=True)
class Scenario:
    name: str
    slowdown: float = 0.0  # true relative slowdown of the candidate, on every block (so the model)
    slow_blocks: tuple[str, ...] = ()  # if given, only these blocks slow down (the model by their share)
    runs: int = 20  # whole-model runs per profile (runs_us)
    profiles: int = 1  # profiles (jobs) per side; each gives one per-block sample
    spread: float = 0.03  # run-to-run noise, lognormal sigma
    session_spread: float = 0.0  # profile-to-profile drift, lognormal sigma
    blocks: dict[str, float] = field(default_factory=l1_block_times_us)


@dataclass(frozen=True)
class SimResult:
    scenario: Scenario
    pairs: int
    seed: int
    failed: int  # pairs whose verdict failed
    model_regressed: int  # pairs whose whole-model metric was a regression
    slow_blocks_caught: int  # pairs in which every slowed block was a regression
    wall_s: float

    @property
    def fail_rate(self) -> float:
        return self.failed / self.pairs


def _side(rng: np.random.Generator, sc: Scenario, factor: dict[str, float]) -> dict[str, Samples]:
    true = {b: t * factor.get(b, 1.0) for b, t in sc.blocks.items()}
    total = sum(true.values())
    session = rng.lognormal(0.0, sc.session_spread, sc.profiles) if sc.session_spread else np.ones(sc.profiles)
    runs = total * session[:, None] * rng.lognormal(0.0, sc.spread, (sc.profiles, sc.runs))
    per_block = np.array(list(true.values()))[None, :] * session[:, None] * rng.lognormal(
        0.0, sc.spread, (sc.profiles, len(true)))
    out = {MODEL_METRIC: Samples.of(list(runs))}
    out.update({b: Samples.of(per_block[:, i:i + 1].tolist()) for i, b in enumerate(true)})
    return out


def simulate(scenario: Scenario, *, pairs: int = 1000, seed: int = 0, rules: GateRules | None = None) -> SimResult:
    """Gate `pairs` independently drawn (baseline, candidate) pairs with the gate's own core."""
    rules = rules or GateRules()
    rng = np.random.default_rng(seed)
    slow = scenario.slow_blocks or tuple(scenario.blocks)
    factor = {b: 1.0 + scenario.slowdown for b in slow}
    failed = model_regressed = caught = 0
    kinds = {MODEL_METRIC: "model"}
    started = time.perf_counter()
    for _ in range(pairs):
        results = gate_samples(_side(rng, scenario, {}), _side(rng, scenario, factor), rules, kinds=kinds)
        by_metric = {r.metric: r for r in results}
        failed += any(r.fails for r in results)
        model_regressed += by_metric[MODEL_METRIC].status is MetricStatus.REGRESSION
        caught += all(by_metric[b].status is MetricStatus.REGRESSION for b in scenario.slow_blocks) \
            if scenario.slow_blocks else 0
    return SimResult(scenario, pairs, seed, failed, model_regressed, caught, time.perf_counter() - started)


# The scenarios of the table in docs/ci.md. "noise" pairs are equal in truth.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("noise, 1 profile x 20 runs per side"),
    Scenario("10% slower, 1 profile x 20 runs per side", slowdown=0.10),
    Scenario("7% slower, 1 profile x 20 runs per side", slowdown=0.07),
    Scenario("noise, 1 profile x 5 runs per side", runs=5),
    Scenario("noise, 5 profiles x 20 runs per side", profiles=5),
    Scenario("10% slower, 5 profiles x 20 runs per side", slowdown=0.10, profiles=5),
    # One SwiftFormerEncoder (~93 us here) 30% slower: +28 us, over the 20 us floor; the model
    # moves by under 2%, so only the block should be flagged.
    Scenario("stage2.block9 30% slower, 1 profile x 20 runs", slow_blocks=("stage2.block9",), slowdown=0.30),
    Scenario("stage2.block9 30% slower, 5 profiles x 20 runs", slow_blocks=("stage2.block9",), slowdown=0.30,
             profiles=5),
    Scenario("noise, 1 profile x 1 run per side (no spread)", runs=1),
    Scenario("noise, 1 profile x 20 runs, 2% session drift", session_spread=0.02),
    Scenario("noise, 5 profiles x 20 runs, 2% session drift", session_spread=0.02, profiles=5),
)


def synthetic_profile(
    runs_us: Sequence[float],
    block_us: dict[str, float] | None = None,
    *,
    variant: str = "l1",
    precision: str = "w8a8",
    device: str = "Samsung Galaxy S23 Ultra",
    source: LatencySource = LatencySource.AIHUB,
    qnn_version: str = "2.51.0",
    ops_per_block: int = 6,
    job_id: str | None = None,
) -> Profile:
    """A schema-valid profile with the given runs and per-block times (split evenly over ops)."""
    runs = [float(x) for x in runs_us]
    ops = []
    for block, t in (block_us or {}).items():
        for k in range(ops_per_block):
            ops.append(OpRecord(
                name=f"/{block.replace('.', '/')}/op{k}", op_type="Conv", compute_unit=ComputeUnit.NPU,
                execution_time_us=t / ops_per_block,
                attribution=Attribution(block=block, via="name"),
            ))
    shape = [1, 96, 64, 64] if variant == "encoder" else [1, 3, 224, 224]
    return Profile(
        source=source,
        model=ModelInfo(variant=variant, input_shape=shape, precision=precision),
        target=TargetInfo(device=device, chipset="qualcomm-snapdragon-8gen2"),
        toolchain=ToolchainInfo(qnn_version=qnn_version),
        latency=LatencySummary(
            min_us=min(runs), median_us=float(np.median(runs)), max_us=max(runs), runs_us=runs, run_count=len(runs)
        ),
        ops=ops,
        provenance=Provenance(job_ids={"profile": job_id} if job_id else {}, tool="tests/gate_sim.py",
                              note="synthetic"),
    )

