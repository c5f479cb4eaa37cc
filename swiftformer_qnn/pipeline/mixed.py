"""Stages `sensitivity` and `mixed_search`: mixed precision measured on the compiled binary.

A candidate assignment (which units have 16-bit activations; weights are 8-bit everywhere) is
quantized with the calibration ranges every candidate shares (onnxruntime's calibration cache:
calibrated once), compiled for the target SoC and run by the HTP emulator, and its QDQ model by
the CPU EP, on the same few held-out inputs; both are compared with the fp32 outputs.

Sensitivity direction: each unit alone goes 8 -> 16 bits from uniform w8a8. The default target
and any time budget under w8a16's lie near w8a8 (most units stay 8-bit), so each unit is
measured in the company it will keep: its inputs carry the 8-bit noise of its neighbours, as in
the assignments the search picks; and the uniform w8a8 run is the shared baseline of every unit.
The gain is the power of the output's change (`mixed_search`), not the SQNR difference.

Cost: the estimated device time of each candidate where QNN's HTP estimator exists for the
target (so the converts a mix adds are paid for), else bit-ops (MACs x weight bits x activation
bits), labelled as such.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..core.errors import UsageError
from ..core.targets import Precision
from ..htp.compile import warm_up_compile_worker
from ..htp.estimate import ESTIMATOR_SOCS, estimate_label, estimate_model, estimator_soc
from ..htp.record import CONTEXT_ONNX, CompiledModel
from ..htp.session import HtpTarget, htp_session
from ..measure.agreement import compare_outputs, run_cpu
from ..measure.attribution import ENCODER_BLOCK, attribute_op
from ..model.variants import Variant
from .compile import GUARDED_MODEL, guard_and_compile
from .mixed_search import (
    Ends,
    Point,
    Target,
    UnitFigures,
    choose,
    lite_mp,
    meets,
    next_candidates,
    pareto_curve,
    predict,
)
from .precision_units import RESIDUAL, PrecisionUnit, graph_macs, precision_units, unplaced_nodes
from .quantize import quantize_qdq
from .stage_results import CandidateFigures, MixedPoint, SearchResults, SensitivityResults, UnitSensitivity

log = logging.getLogger(__name__)

SENSITIVITY_SAMPLES = 2  # held-out inputs per candidate: ~1.1-1.5 s each for L1 on the emulator
RANGES = "ranges.json"  # onnxruntime's calibration cache, shared by every candidate and the quantize stage
MAX_EXTRA_MEASUREMENTS = 3  # candidates tried after a measured choice misses its target
BITOPS_SOURCE = "bit-ops (MACs x weight bits x activation bits; no HTP estimate)"


@dataclass(frozen=True)
class Cost:
    total: float
    per_unit: dict[str, float]  # the share of `total` each unit's ops take (what the sensitivity's extras come from)
    estimated_us: float | None = None


@dataclass(frozen=True)
class Costing:
    """How a candidate's cost is found: `cost(guarded_model, work_dir, sixteen)`, the candidate's
    graph after the BN guard (what its compile compiled)."""

    unit: str
    source: str
    cost: Callable[[Path, Path, frozenset[str]], Cost]


def bitops_costing(units: Sequence[PrecisionUnit], unplaced_macs: int, _variant: Variant, _target: HtpTarget,
                   _soc: str) -> Costing:
    """MACs x 8-bit weights x the unit's activation bits; nodes outside every unit count at 8 bits."""
    def cost(_qdq: Path, _work: Path, sixteen: frozenset[str]) -> Cost:
        per_unit = {u.name: float(u.macs * 8 * (16 if u.name in sixteen else 8)) for u in units}
        return Cost(sum(per_unit.values()) + unplaced_macs * 64.0, per_unit)

    return Costing("bit-ops", BITOPS_SOURCE, cost)


def estimate_costing(units: Sequence[PrecisionUnit], _unplaced_macs: int, variant: Variant, target: HtpTarget,
                     soc: str) -> Costing:
    """QNN's HTP estimate of the compiled candidate (`htp.estimate`), its ops attributed to units
    (`measure.attribution`): the time includes the converts a mix adds."""
    proxy = estimator_soc(target.htp_arch)

    def cost(guarded: Path, work: Path, _sixteen: frozenset[str]) -> Cost:
        work.mkdir(parents=True, exist_ok=True)
        est = estimate_model(guarded, work / "estimate", htp_arch=target.htp_arch, soc_model=proxy.soc_model,
                             stands_for=soc)
        per_unit: dict[str, float] = {}
        for op in est.ops:
            a = attribute_op(op.name, op.onnx_nodes, variant)
            unit = f"{ENCODER_BLOCK}.{a.part or RESIDUAL}" if variant.is_encoder_block else a.block
            per_unit[unit] = per_unit.get(unit, 0.0) + (est.to_us(op.span_cycles) or 0.0)
        return Cost(est.us, per_unit, est.us)

    label = estimate_label(proxy.name, soc, target.htp_arch)
    return Costing("us", f"{label}, per unit from its ops' share of the critical path", cost)


def default_costing(target: HtpTarget):
    """The estimate where QNN's estimator has a proxy for the target's HTP architecture, else bit-ops."""
    return estimate_costing if target.htp_arch in ESTIMATOR_SOCS else bitops_costing


@dataclass
class Bench:
    """What every candidate of one model shares: the float graph, the ranges, the inputs, the target."""

    float_model: Path
    ranges: Path
    calibration: np.ndarray | None  # only for the first quantization, which writes the ranges
    inputs: np.ndarray  # the held-out inputs every candidate runs on
    fp32: np.ndarray  # the float graph's outputs on them
    target: HtpTarget
    variant: Variant
    units: list[PrecisionUnit]
    costing: Costing
    classify: bool
    work: Path
    soc: str
    _count: int = 0

    def share(self, sixteen: frozenset[str]) -> float:
        total = sum(u.macs for u in self.units)
        return sum(u.macs for u in self.units if u.name in sixteen) / total if total else 0.0

    def quantize(self, sixteen: frozenset[str], out: Path) -> Path:
        precision = Precision.MIXED if sixteen else Precision.W8A8
        calibration = None if self.ranges.is_file() else self.calibration
        quantize_qdq(self.float_model, calibration, out, precision, sixteen_bit_units=self.ordered(sixteen),
                     variant=self.variant, ranges=self.ranges)
        return out

    def ordered(self, sixteen: frozenset[str]) -> list[str]:
        return [u.name for u in self.units if u.name in sixteen]

    def measure(self, sixteen: frozenset[str], *, cost: bool = True,
                ) -> tuple[CandidateFigures, np.ndarray, np.ndarray, Cost | None]:
        """Quantize, compile and run one candidate: (its figures, HTP outputs, CPU outputs, its cost).
        Without `cost` (the single-unit runs of the sensitivity) its cost is the additive prediction."""
        started = time.perf_counter()
        self._count += 1
        d = self.work / f"candidate-{self._count}"
        d.mkdir(parents=True)
        warm_up_compile_worker()  # its start-up beside the quantization and the CPU run
        try:
            qdq = self.quantize(sixteen, d / "model.qdq.onnx")
            cpu = run_cpu(qdq, self.inputs)
            record = guard_and_compile(qdq, d / "compiled", self.target, soc=self.soc,
                                       subject=CompiledModel(variant=self.variant.name, precision=Precision.MIXED.value))
            session = htp_session(d / "compiled" / CONTEXT_ONNX, self.target)
            name = session.get_inputs()[0].name
            htp = np.concatenate([session.run(None, {name: self.inputs[i: i + 1]})[0]
                                  for i in range(self.inputs.shape[0])])
            del session
            priced = self.costing.cost(d / "compiled" / GUARDED_MODEL, d / "cost", sixteen) if cost else None
        finally:
            shutil.rmtree(d, ignore_errors=True)
        h = compare_outputs(self.fp32, htp, classify=self.classify)
        c = compare_outputs(self.fp32, cpu, classify=self.classify)
        figures = CandidateFigures(
            sixteen=self.ordered(sixteen), sixteen_share=round(self.share(sixteen), 4), samples=int(self.inputs.shape[0]),
            htp_sqnr_db=h["sqnr_db"], cpu_sqnr_db=c["sqnr_db"], htp_noise=_noise(self.fp32, htp),
            cpu_noise=_noise(self.fp32, cpu), htp_top1=h.get("top1_agreement"), cpu_top1=c.get("top1_agreement"),
            cost=priced.total if priced else 0.0, cost_measured=priced is not None,
            estimated_us=priced.estimated_us if priced else None, htp_ops=record.htp_op_count,
            converts=int((record.htp_op_types or {}).get("Convert", 0)),
            context_binary_bytes=record.context_binary_bytes, seconds=round(time.perf_counter() - started, 2))
        return figures, htp, cpu, priced


def _noise(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Error power over signal power (linear)."""
    ref = reference.astype(np.float64)
    signal = float(np.sum(ref**2))
    return float(np.sum((ref - candidate.astype(np.float64)) ** 2)) / signal if signal > 0 else 0.0


def make_bench(float_model: Path, calibration: np.ndarray | None, heldout: np.ndarray, fp32: np.ndarray, *,
               variant: Variant, target: HtpTarget, soc: str, work: Path, ranges: Path,
               samples: int = SENSITIVITY_SAMPLES, costing=None) -> tuple[Bench, list[str]]:
    """The shared setup, the units read from the graph that gets quantized (QNN preprocessing may fuse)."""
    from onnxruntime.quantization.execution_providers.qnn import qnn_preprocess_model

    work.mkdir(parents=True, exist_ok=True)
    pre = work / "model.pre.onnx"
    graph = pre if qnn_preprocess_model(str(float_model), str(pre)) else float_model
    model = onnx.load(str(graph))
    units = precision_units(model, variant)
    unplaced = unplaced_nodes(model, units)
    unplaced_macs = graph_macs(model, set(unplaced)) if unplaced else 0
    n = min(samples, heldout.shape[0])
    bench = Bench(float_model, ranges, calibration, heldout[:n], fp32[:n], target, variant, units,
                  (costing or default_costing(target))(units, unplaced_macs, variant, target, soc),
                  classify=not variant.is_encoder_block,
                  work=work, soc=soc)
    return bench, unplaced


def measure_sensitivity(bench: Bench, unplaced: list[str], progress: Callable[[str], None] | None = None,
                        ) -> SensitivityResults:
    """Uniform w8a8, uniform w8a16 and each unit alone at 16 bits (module docstring)."""
    started = time.perf_counter()
    say = progress or (lambda _m: None)
    everything = frozenset(u.name for u in bench.units)
    say("uniform w8a8")
    w8a8, htp8, cpu8, cost8 = bench.measure(frozenset())
    say("uniform w8a16")
    w8a16, _, _, cost16 = bench.measure(everything)
    # Each unit's extra cost at 16 bits: its ops' cost in uniform w8a16 minus in w8a8 (two estimates,
    # not one per unit; the choice's own converts are paid for when the search measures it).
    extra = {u.name: cost16.per_unit.get(u.name, 0.0) - cost8.per_unit.get(u.name, 0.0) for u in bench.units}
    signal = float(np.sum(bench.fp32.astype(np.float64) ** 2)) or 1.0
    units = []
    for k, u in enumerate(bench.units, 1):
        say(f"{u.name} alone at 16 bits ({k}/{len(bench.units)})")
        f, htp, cpu, _ = bench.measure(frozenset({u.name}), cost=False)
        units.append(UnitSensitivity(
            unit=u.name, kind=u.kind, nodes=len(u.nodes), macs=u.macs,
            htp_gain=float(np.sum((htp8.astype(np.float64) - htp) ** 2)) / signal,
            cpu_gain=float(np.sum((cpu8.astype(np.float64) - cpu) ** 2)) / signal,
            htp_sqnr_db=f.htp_sqnr_db, cpu_sqnr_db=f.cpu_sqnr_db, extra_cost=extra[u.name],
            cost8=cost8.per_unit.get(u.name, 0.0), cost16=cost16.per_unit.get(u.name, 0.0),
            converts=f.converts, htp_ops=f.htp_ops))
    notes = []
    if unplaced:
        notes.append(f"{len(unplaced)} compute node(s) belong to no block and stay 8-bit: {', '.join(unplaced[:4])}"
                     + (" ..." if len(unplaced) > 4 else ""))
    return SensitivityResults(
        samples=int(bench.inputs.shape[0]), direction="8->16", cost_unit=bench.costing.unit,
        cost_source=bench.costing.source, w8a8=w8a8, w8a16=w8a16, units=units, unplaced_nodes=unplaced,
        seconds=round(time.perf_counter() - started, 2), notes=notes)


def ends_of(s: SensitivityResults) -> Ends:
    return Ends(noise8=s.w8a8.htp_noise, noise16=s.w8a16.htp_noise, cost8=s.w8a8.cost, cost16=s.w8a16.cost)


def unit_figures(s: SensitivityResults) -> list[UnitFigures]:
    return [UnitFigures(u.unit, u.htp_gain, u.extra_cost) for u in s.units]


def _point(p: Point, measured: CandidateFigures | None = None) -> MixedPoint:
    return MixedPoint(sixteen=list(p.sixteen), predicted_sqnr_db=round(p.sqnr_db, 3), predicted_cost=p.cost,
                      measured=measured)


def search(bench: Bench, s: SensitivityResults, target: Target, progress: Callable[[str], None] | None = None,
           ) -> SearchResults:
    """The Pareto curve from the sensitivities, the target's point measured (and, when it misses,
    the next points the target allows), and Lite-MP with this search's point at its cost."""
    started = time.perf_counter()
    say = progress or (lambda _m: None)
    ends, units = ends_of(s), unit_figures(s)
    curve = pareto_curve(units, ends)
    known = {frozenset(): s.w8a8, frozenset(u.unit for u in s.units): s.w8a16}
    measured = 0

    def run(p: Point) -> CandidateFigures:
        nonlocal measured
        key = frozenset(p.sixteen)
        if known.get(key) is None:
            say(f"measuring {len(p.sixteen)} unit(s) at 16 bits")
            known[key] = bench.measure(key)[0]
            measured += 1
        return known[key]

    chosen = choose(curve, ends, target)
    figures = run(chosen)
    misses = 0
    while not meets(target, ends, figures.htp_sqnr_db if figures.htp_sqnr_db is not None else float("inf"), figures.cost):
        options = next_candidates(curve, chosen, target, ends)
        misses += 1
        if not options or misses > MAX_EXTRA_MEASUREMENTS:
            raise UsageError(
                f"No measured assignment meets the target ({target.describe(ends)}): the last tried, "
                f"{len(chosen.sixteen)} unit(s) at 16 bits, measured {figures.htp_sqnr_db} dB at "
                f"{figures.cost / ends.cost8:.3f} x w8a8's cost (predicted {chosen.sqnr_db:.2f} dB).",
                hint="Loosen --min-sqnr or raise --max-time-ratio.")
        chosen = options[0]
        figures = run(chosen)
    lite = lite_mp({u.unit: u.htp_gain for u in s.units})
    lite_point = predict(lite, units, ends)
    lite_figures = run(lite_point)
    peer = max((p for p in curve if p.cost <= lite_figures.cost), key=lambda p: (p.sqnr_db, -p.cost))
    peer_figures = run(peer)
    return SearchResults(
        target=target.describe(ends), min_sqnr_db=target.min_sqnr_db, max_time_ratio=target.max_cost_ratio,
        cost_unit=s.cost_unit, cost_source=s.cost_source,
        curve=[_point(p, known.get(frozenset(p.sixteen))) for p in curve],
        chosen=_point(chosen, figures), lite_mp=_point(lite_point, lite_figures),
        lite_mp_peer=_point(peer, peer_figures), measured_candidates=measured,
        seconds=round(time.perf_counter() - started, 2))
