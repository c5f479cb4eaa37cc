"""Stages `sensitivity` and `mixed_search`: mixed precision measured on the compiled binary.

A candidate assignment (which units have 16-bit activations; weights are 8-bit everywhere) is
quantized with the calibration ranges every candidate shares (onnxruntime's calibration cache:
calibrated once), compiled for the target SoC and run by the HTP emulator, and its QDQ model by
the CPU EP, on the same few held-out inputs; both are compared with the fp32 outputs.

Sensitivity: a unit's gain is the output noise power its 16 bits remove. Moving one unit alone
from w8a8 to 16 bits re-rounds every 8-bit quantizer after it, so the output's change holds far
more than the unit's own noise (XS 224: the changes summed to 15x what w8a16 removes). Units that
form a chain are instead read from inside whole-model runs: uniform w8a8, uniform w8a16 and the
two alternating assignments (`carry_runs`) are compiled with every unit's output also an output
of the binary (`tapped_model`), and `mixed_search.chain_gains` turns each unit's output noise in
those runs into its gain (docs/mixed-precision.md compares the methods measured). The standalone
block's parts are no chain: each is measured alone at 8 bits from uniform w8a16, where the
quantizers after it are 16-bit and barely re-round. A SwiftFormerEncoder attention that costs
more than half the default target's time budget at 16 bits is measured by its pieces
(`precision_units.ATTENTION_PIECES`), each alone at 8 bits from uniform w8a16, and the search
assigns the pieces instead: the taps read only the attention's output, and on XS 224 its whole
174 us left no budget for anything else while its query, context and final pieces hold most of
its loss for 46 us (docs/mixed-precision.md).

Cost: the estimated device time of each candidate where QNN's HTP estimator exists for the
target (so the converts a mix adds are paid for), else bit-ops (MACs x weight bits x activation
bits), labelled as such.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..core.errors import UsageError
from ..core.targets import Precision
from ..htp.bn_guard import guarded_model
from ..htp.emulate import emulate_samples
from ..htp.estimate import ESTIMATOR_SOCS, estimate_label, estimate_model, estimator_soc
from ..htp.record import CONTEXT_ONNX, CompiledModel
from ..htp.session import HtpTarget
from ..htp.workers import start_ahead
from ..measure.agreement import compare_outputs, cpu_runs
from ..model.variants import Variant
from .compile import guard_and_compile
from .mixed_search import (
    Corrections,
    Ends,
    Point,
    Target,
    UnitFigures,
    chain_crossings,
    chain_gains,
    choose,
    corrected,
    default_requirements,
    lite_mp,
    meets,
    near_miss,
    neighbours,
    next_candidates,
    pareto_curve,
    predict,
    refusal_hint,
    to_db,
    units_to_split,
)
from .precision_units import (
    PrecisionUnit,
    assignable,
    graph_macs,
    op_piece,
    op_unit,
    precision_units,
    unplaced_nodes,
)
from .quantize import quantize_qdq
from .stage_results import CandidateFigures, MixedPoint, SearchResults, SensitivityResults, UnitSensitivity

log = logging.getLogger(__name__)

# What the sensitivity measures (a cache entry of another method is not reused): taps in uniform
# w8a8 and w8a16 and two alternating runs, with each output's rounding; one unit at a time 16 -> 8
# where the units are no chain.
SENSITIVITY_METHOD = "taps-4-rounding/16->8/encoder-parts/attention-pieces"
SENSITIVITY_SAMPLES = 2  # held-out inputs per candidate: ~1.1-1.5 s each for L1 on the emulator
RANGES = "ranges.json"  # onnxruntime's calibration cache, shared by every candidate and the quantize stage
MAX_EXTRA_MEASUREMENTS = 3  # candidates tried after a measured choice misses its target
NEIGHBOURS_PRICED = 6  # a near miss's neighbours priced by the estimate (a compile each), cheapest predicted first
BITOPS_SOURCE = "bit-ops (MACs x weight bits x activation bits; no HTP estimate)"


@dataclass(frozen=True)
class Cost:
    total: float
    per_unit: dict[str, float]  # the share of `total` each unit's ops take (what the sensitivity's extras come from)
    estimated_us: float | None = None
    per_piece: dict[str, float] = field(default_factory=dict)  # the same for the attention pieces (`assignable`)


@dataclass(frozen=True)
class Costing:
    """How a candidate's cost is found: `cost(qdq_model, work_dir, sixteen)`, from the candidate's
    QDQ graph (the estimate guards it as its compile does)."""

    unit: str
    source: str
    cost: Callable[[Path, Path, frozenset[str]], Cost]
    worker: str | None = None  # the worker process `cost` runs in (`htp.workers`), started ahead


def bitops_costing(units: Sequence[PrecisionUnit], unplaced_macs: int, _variant: Variant, _target: HtpTarget,
                   _soc: str) -> Costing:
    """MACs x 8-bit weights x the unit's activation bits; nodes outside every unit count at 8 bits."""
    def cost(_qdq: Path, _work: Path, sixteen: frozenset[str]) -> Cost:
        def bitops(u: PrecisionUnit, whole: str) -> float:  # a piece is 16-bit with its unit or alone
            return float(u.macs * 8 * (16 if u.name in sixteen or whole in sixteen else 8))

        per_piece = {p.name: bitops(p, u.name) for u in units for p in u.pieces}
        per_unit = {u.name: sum(per_piece[p.name] for p in u.pieces) if u.pieces else bitops(u, u.name)
                    for u in units}
        return Cost(sum(per_unit.values()) + unplaced_macs * 64.0, per_unit, per_piece=per_piece)

    return Costing("bit-ops", BITOPS_SOURCE, cost)


def estimate_costing(units: Sequence[PrecisionUnit], _unplaced_macs: int, variant: Variant, target: HtpTarget,
                     soc: str) -> Costing:
    """QNN's HTP estimate of the compiled candidate (`htp.estimate`), its ops attributed to units
    (`measure.attribution`): the time includes the converts a mix adds."""
    proxy = estimator_soc(target.htp_arch)
    by_node = {n: u.name for u in units for n in u.nodes}
    piece_by_node = {n: p.name for u in units for p in u.pieces for n in p.nodes}

    def cost(qdq: Path, work: Path, _sixteen: frozenset[str]) -> Cost:
        work.mkdir(parents=True, exist_ok=True)
        # Guarded here, not read from the compile's folder: the estimate runs beside the compile.
        compiled, _ = guarded_model(qdq, work)  # what the compile stage compiles
        est = estimate_model(compiled, work / "estimate", htp_arch=target.htp_arch, soc_model=proxy.soc_model,
                             stands_for=soc)
        per_unit: dict[str, float] = {}
        per_piece: dict[str, float] = {}
        for op in est.ops:
            unit = op_unit(op.name, op.onnx_nodes, variant, by_node)
            us = est.to_us(op.span_cycles) or 0.0
            per_unit[unit] = per_unit.get(unit, 0.0) + us
            piece = op_piece(op.name, op.onnx_nodes, unit, piece_by_node)
            if piece is not None:
                per_piece[piece] = per_piece.get(piece, 0.0) + us
        return Cost(est.us, per_unit, est.us, per_piece)

    label = estimate_label(proxy.name, soc, target.htp_arch)
    return Costing("us", f"{label}, per unit from its ops' share of the critical path", cost, worker="estimate")


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
    graph: Path | None = None  # the float graph the quantizer preprocesses to (units and taps are read there)
    _count: int = 0
    _chain: list[str] | None | bool = False  # not yet read
    _model: onnx.ModelProto | None = None  # `graph` once read (make_bench reads it for the units)
    _fp32_taps: list[np.ndarray] | None = None

    def share(self, sixteen: frozenset[str]) -> float:
        total = sum(u.macs for u in self.units)
        return sum(u.macs for u in assignable(self.units) if u.name in sixteen) / total if total else 0.0

    def quantize(self, sixteen: frozenset[str], out: Path) -> Path:
        precision = Precision.MIXED if sixteen else Precision.W8A8
        calibration = None if self.ranges.is_file() else self.calibration
        quantize_qdq(self.float_model, calibration, out, precision, sixteen_bit_units=self.ordered(sixteen),
                     variant=self.variant, ranges=self.ranges)
        return out

    def price(self, sixteen: frozenset[str]) -> Cost:
        """One candidate quantized and priced by the costing alone: no compile for the target, no emulator."""
        d = self._folder("priced")
        try:
            return self.costing.cost(self.quantize(sixteen, d / "model.qdq.onnx"), d / "cost", sixteen)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def ordered(self, sixteen: frozenset[str]) -> list[str]:
        return [u.name for u in assignable(self.units) if u.name in sixteen]

    def crossings(self, names: Sequence[str]) -> list[tuple[str, list[str]]]:
        """Where the units (or pieces) `names` meet in the graph: per tensor one writes and others
        read, (writer, readers); a Convert goes there when their widths differ. In a chain, each
        unit and the next; inside a split attention, its pieces and their neighbours as they are
        wired (the final piece reads the context and the block's input)."""
        wanted = set(names)
        unit_of: dict[str, str] = {}
        for u in self.units:
            for v in ((u,) if u.name in wanted else u.pieces):
                unit_of.update((n, v.name) for n in v.nodes)
        nodes = [n for n in self._graph().graph.node if n.name in unit_of]
        writer = {o: unit_of[n.name] for n in nodes for o in n.output}
        readers: dict[str, list[str]] = {}
        for n in nodes:
            for i in n.input:
                w, r = writer.get(i), unit_of[n.name]
                if w is not None and w != r and r not in readers.setdefault(i, []):
                    readers[i].append(r)
        return [(writer[t], rs) for t, rs in readers.items() if rs]

    def _graph(self) -> onnx.ModelProto:
        if self._model is None:
            self._model = onnx.load(str(self.graph))
        return self._model

    def chain(self) -> list[str] | None:
        if self._chain is False:
            self._chain = chain_outputs(self._graph(), self.units)
        return self._chain

    def tap_noise(self, sixteen: frozenset[str], *, cost: bool = False) -> TapRun:
        """One candidate quantized, its chain's hand-over tensors made outputs (`tapped_model`),
        compiled and run on the HTP emulator and on the CPU: per unit, the error power of its
        output against fp32 over that tensor's signal power (the last unit's: the model output).
        With `cost`, the candidate without taps is estimated too (beside the compile)."""
        return self.run(sixteen, cost=cost, taps=True, record=False).taps

    def measure(self, sixteen: frozenset[str], *, cost: bool = True,
                ) -> tuple[CandidateFigures, np.ndarray, np.ndarray, Cost | None]:
        """Quantize, compile and run one candidate: (its figures, HTP outputs, CPU outputs, its
        cost). The CPU run and the estimate (a worker process) go beside the compile."""
        r = self.run(sixteen, cost=cost)
        return r.figures, r.htp, r.cpu, r.cost

    def run(self, sixteen: frozenset[str], *, cost: bool, taps: bool = False, record: bool = True) -> Run:
        """`measure`, with `taps` `tap_noise` too from the same quantization: the emulator then runs
        the tapped binary only (the taps leave the model's output as it was: XS 224 w8a8 and w8a16
        measured 28.08 and 31.76 dB both ways), the plain one is compiled for its record."""
        started = time.perf_counter()
        chain = self.chain() if taps else None
        if taps and chain is None:
            raise ValueError("taps need units in a chain")
        if taps and self._fp32_taps is None:
            runs = cpu_runs(with_outputs(self.graph, chain[:-1]), self.inputs, outputs=chain[:-1])
            self._fp32_taps = [np.concatenate([r[k] for r in runs]) for k in range(len(chain) - 1)]
        d = self._folder("candidate")
        start_ahead("compile")  # their start-up beside the quantization and the CPU run
        if cost and self.costing.worker:
            start_ahead(self.costing.worker)
        try:
            qdq = self.quantize(sixteen, d / "model.qdq.onnx")
            run_on = qdq
            names: list[str] = []
            if taps:
                names = tapped_model(qdq, chain[:-1], d / "model.taps.onnx")
                run_on = d / "model.taps.onnx"
            with ThreadPoolExecutor(2, thread_name_prefix="mixed") as pool:
                priced = pool.submit(self.costing.cost, qdq, d / "cost", sixteen) if cost else None
                # On the CPU the taps' float tensors too, before their quantizer: each output's rounding.
                cpu_out = pool.submit(cpu_runs, with_outputs(run_on, chain[:-1]) if taps else run_on, self.inputs,
                                      workers=1)
                subject = CompiledModel(variant=self.variant.name, precision=Precision.MIXED.value)
                compiled = None
                if record:
                    compiled = guard_and_compile(qdq, d / "compiled", self.target, soc=self.soc, subject=subject)
                if taps:
                    guard_and_compile(run_on, d / "tapped", self.target, soc=self.soc, subject=subject)
                htp = self._emulate(d / ("tapped" if taps else "compiled") / CONTEXT_ONNX, names)
                cpu_out = cpu_out.result()
                cpu = [np.concatenate([r[k] for r in cpu_out]) for k in range(len(cpu_out[0]))]
                priced = priced.result() if priced else None
        finally:
            shutil.rmtree(d, ignore_errors=True)
        tap_run = None
        if taps:
            def noise(outputs):  # graph output first, then the taps
                return [*(_noise(r, g) for r, g in zip(self._fp32_taps, outputs[1:], strict=True)),
                        _noise(self.fp32, outputs[0])]

            # The float tensor a quantizer reads may be a clipping short of it (a ReLU the quantizer
            # removed: the range does its work), so it is clipped to what the quantizer represents.
            rounding = [float(np.sum((q.astype(np.float64) - np.clip(f, q.min(), q.max())) ** 2)
                              / max(np.sum(r.astype(np.float64) ** 2), 1e-30))
                        for q, f, r in zip(cpu[1:len(names) + 1], cpu[len(names) + 1:], self._fp32_taps, strict=True)]
            tap_run = TapRun(sixteen=self.ordered(sixteen), htp=noise(htp), cpu=noise(cpu[:len(names) + 1]),
                             rounding=rounding,
                             cost=priced.total if priced else None, seconds=round(time.perf_counter() - started, 2))
        figures = None
        if compiled is not None:
            h = compare_outputs(self.fp32, htp[0], classify=self.classify)
            c = compare_outputs(self.fp32, cpu[0], classify=self.classify)
            figures = CandidateFigures(
                sixteen=self.ordered(sixteen), sixteen_share=round(self.share(sixteen), 4),
                samples=int(self.inputs.shape[0]), htp_sqnr_db=h["sqnr_db"], cpu_sqnr_db=c["sqnr_db"],
                htp_noise=_noise(self.fp32, htp[0]), cpu_noise=_noise(self.fp32, cpu[0]),
                htp_top1=h.get("top1_agreement"), cpu_top1=c.get("top1_agreement"),
                cost=priced.total if priced else 0.0, cost_measured=priced is not None,
                estimated_us=priced.estimated_us if priced else None, htp_ops=compiled.htp_op_count,
                converts=int((compiled.htp_op_types or {}).get("Convert", 0)),
                context_binary_bytes=compiled.context_binary_bytes, seconds=round(time.perf_counter() - started, 2))
        return Run(figures, htp[0], cpu[0], priced, tap_run)

    def _folder(self, kind: str) -> Path:
        self._count += 1
        d = self.work / f"{kind}-{self._count}"
        d.mkdir(parents=True)
        return d

    def _emulate(self, model: Path, extra: Sequence[str] = ()) -> list[np.ndarray]:
        """The context binary `model` on the HTP emulator over the inputs (`htp.emulate`: one
        worker process per core): its output, then `extra` outputs."""
        runs = emulate_samples(model, self.target, [self.inputs[i: i + 1] for i in range(self.inputs.shape[0])],
                               extra_outputs=extra)
        return [np.concatenate([r[k] for r in runs]) for k in range(1 + len(extra))]


@dataclass(frozen=True)
class Run:
    figures: CandidateFigures | None  # None: a tapped run only (not compiled for a record)
    htp: np.ndarray  # the model output on the HTP emulator
    cpu: np.ndarray  # and on the CPU
    cost: Cost | None
    taps: TapRun | None


@dataclass(frozen=True)
class TapRun:
    sixteen: list[str]
    htp: list[float]  # per unit, in chain order: error power over signal power at its output (HTP emulator)
    cpu: list[float]  # the same on the CPU QDQ model
    rounding: list[float]  # per unit but the last: its output's own rounding (CPU), over the same signal
    cost: float | None  # the candidate without taps, when asked
    seconds: float


def chain_outputs(model: onnx.ModelProto, units: Sequence[PrecisionUnit]) -> list[str] | None:
    """Per unit, the one tensor it hands to the next, when the units form a chain: the first reads
    the graph input, each other only the previous unit's tensor, and the last writes the graph
    output. None otherwise (the standalone block's parts meet at its residual adds)."""
    nodes = {n.name: n for n in model.graph.node}
    params = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                         for o in n.output}
    writer = {o: u.name for u in units for n in u.nodes for o in nodes[n].output}
    outputs = [o.name for o in model.graph.output]
    handed: list[str] = []
    previous = {i.name for i in model.graph.input} - params
    for k, u in enumerate(units):
        reads = {i for n in u.nodes for i in nodes[n].input if i and i not in params and writer.get(i) != u.name}
        if reads != previous:
            return None
        if k == len(units) - 1:
            out = {o for o in outputs if writer.get(o) == u.name}
            if len(outputs) != 1 or out != set(outputs):
                return None
        else:
            out = {i for u2 in units[k + 1:] for n in u2.nodes for i in nodes[n].input if writer.get(i) == u.name}
            out |= {o for o in outputs if writer.get(o) == u.name}
            if len(out) != 1:
                return None
        handed.append(out.pop())
        previous = {handed[-1]}
    return handed


def with_outputs(graph: Path, tensors: Sequence[str]) -> bytes:
    """The float graph with `tensors` also outputs (onnxruntime returns graph outputs only)."""
    model = onnx.load(str(graph))
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in tensors if t not in have)
    return model.SerializeToString()


def tapped_model(qdq: Path, tensors: Sequence[str], out: Path) -> list[str]:
    """`qdq` with each of `tensors` also an output, as the next unit reads it quantized: a second
    DequantizeLinear of its producer's QuantizeLinear (the graph's own DQ stays in its node group,
    so the compiled ops are those of the candidate). Returns the added outputs' names."""
    model = onnx.load(str(qdq))
    quantizers = {}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":
            quantizers.setdefault(n.input[0], n)
    dequantizers = {n.input[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    names = []
    for t in tensors:
        q = quantizers.get(t)
        dq = dequantizers.get(q.output[0]) if q is not None else None
        if dq is None:
            raise ValueError(f"{t} is not quantized in {qdq.name}")
        name = f"{t}.tap"
        node = onnx.helper.make_node("DequantizeLinear", [q.output[0], *dq.input[1:]], [name], name=name,
                                     domain=dq.domain)
        node.attribute.extend(dq.attribute)
        model.graph.node.append(node)
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        names.append(name)
    onnx.save(model, str(out))
    return names


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
                  work=work, soc=soc, graph=graph, _model=model)
    return bench, unplaced


def measure_sensitivity(bench: Bench, unplaced: list[str], progress: Callable[[str], None] | None = None,
                        ) -> SensitivityResults:
    """Uniform w8a8 and w8a16 measured whole, then each unit's gain (module docstring): from the
    taps of a chain, else each unit alone at 8 bits from w8a16."""
    started = time.perf_counter()
    say = progress or (lambda _m: None)
    everything = frozenset(u.name for u in bench.units)
    chained = bench.chain() is not None
    say("uniform w8a8")
    first = bench.run(frozenset(), cost=True, taps=chained)
    say("uniform w8a16")
    last = bench.run(everything, cost=True, taps=chained)
    w8a8, w8a16, cost8, cost16 = first.figures, last.figures, first.cost, last.cost
    # Each unit's extra cost at 16 bits: its ops' cost in uniform w8a16 minus in w8a8 (two estimates,
    # not one per unit; the converts a mix adds are the convert cost, and every choice is estimated whole).
    extra = {u.name: cost16.per_unit.get(u.name, 0.0) - cost8.per_unit.get(u.name, 0.0) for u in bench.units}
    common = {u.name: dict(unit=u.name, kind=u.kind, nodes=len(u.nodes), macs=u.macs, extra_cost=extra[u.name],
                           cost8=cost8.per_unit.get(u.name, 0.0), cost16=cost16.per_unit.get(u.name, 0.0))
              for u in bench.units}
    names = [u.name for u in bench.units]
    ends = Ends(w8a8.htp_noise, w8a16.htp_noise, w8a8.cost, w8a16.cost)
    tap_runs, convert_cost = [], 0.0
    if chained:
        direction = "taps"
        runs = {"w8a8": first.taps, "w8a16": last.taps}
        for k, sixteen in enumerate(carry_runs(names), 1):
            say(f"taps {k}/2")
            runs[f"mixed {k}"] = bench.tap_noise(sixteen, cost=True)
        mixed = [r for label, r in runs.items() if label.startswith("mixed")]
        widths = [[n in set(r.sixteen) for n in names] for r in mixed]
        rounding = [*runs["w8a8"].rounding, 0.0]
        htp_gain, handover, carry = chain_gains(runs["w8a8"].htp, runs["w8a16"].htp,
                                                [(w, r.htp) for w, r in zip(widths, mixed, strict=True)], rounding)
        cpu_gain, _, _ = chain_gains(runs["w8a8"].cpu, runs["w8a16"].cpu,
                                     [(w, r.cpu) for w, r in zip(widths, mixed, strict=True)], rounding)
        figures = [UnitFigures(n, g, extra[n], h) for n, g, h in zip(names, htp_gain, handover, strict=True)]
        convert_cost = corrected(figures, ends, [(r.sixteen, r.htp[-1], r.cost) for r in mixed if r.cost is not None],
                                 chain_crossings(names)).convert_cost
        tap_runs = [r.sixteen for r in mixed]
        units = [UnitSensitivity(**common[n], htp_gain=htp_gain[k], cpu_gain=cpu_gain[k], handover=handover[k],
                                 out_sqnr8_db=_db(runs["w8a8"].htp[k]), out_sqnr16_db=_db(runs["w8a16"].htp[k]),
                                 carry=carry[k])
                 for k, n in enumerate(names)]
    else:
        direction = "16->8"
        units = []
        for k, u in enumerate(bench.units, 1):
            say(f"part {k}/{len(bench.units)}")
            units.append(UnitSensitivity(**common[u.name], **_alone_at_8(bench, last, everything - {u.name})))
    # An attention part that costs over half the default budget at 16 bits: its pieces, each alone at
    # 8 bits from w8a16, replace it (the taps read its output only, not where inside it the loss is).
    split = units_to_split({u.name: extra[u.name] for u in bench.units if u.pieces}, ends)
    parents = [u for u in units if u.unit in split]
    for whole in (u for u in bench.units if u.name in split):
        rows = []
        for k, p in enumerate(whole.pieces, 1):
            say(f"piece {k}/{len(whole.pieces)}")
            others = (everything - {whole.name}) | {q.name for q in whole.pieces if q is not p}
            c8, c16 = cost8.per_piece.get(p.name, 0.0), cost16.per_piece.get(p.name, 0.0)
            rows.append(UnitSensitivity(unit=p.name, kind=p.kind, nodes=len(p.nodes), macs=p.macs, piece_of=whole.name,
                                        extra_cost=c16 - c8, cost8=c8, cost16=c16, **_alone_at_8(bench, last, others)))
        # The part's output rounding is its last piece's: it writes the tensor handed on.
        parent = next(u for u in parents if u.unit == whole.name)
        rows[-1] = rows[-1].model_copy(update={"handover": parent.handover})
        k = [u.unit for u in units].index(whole.name)
        units[k:k + 1] = rows
    notes = []
    if unplaced:
        notes.append(f"{len(unplaced)} compute node(s) belong to no block and stay 8-bit: {', '.join(unplaced[:4])}"
                     + (" ..." if len(unplaced) > 4 else ""))
    return SensitivityResults(
        samples=int(bench.inputs.shape[0]), direction=direction, cost_unit=bench.costing.unit,
        cost_source=bench.costing.source, w8a8=w8a8, w8a16=w8a16, units=units, convert_cost=convert_cost,
        tap_runs=tap_runs, split=parents, crossings=bench.crossings([u.unit for u in units]),
        unplaced_nodes=unplaced, seconds=round(time.perf_counter() - started, 2), notes=notes)


def _why_not(curve: Sequence[Point], ends: Ends, target: Target) -> str:
    """For the default target, what the model corrected by every measured candidate expects
    within its time: why measuring more would not help."""
    if not target.is_default:
        return ""
    need, budget = default_requirements(ends)
    best = max((p.sqnr_db for p in curve if p.cost <= budget), default=None)
    return (f"; corrected by them, the model expects at most {best:.2f} dB within the time"
            if best is not None and best < need else "")


def _closer_neighbour(bench: Bench, known: dict[frozenset[str], CandidateFigures], tried: list[MixedPoint],
                      units: Sequence[UnitFigures], ends: Ends, corrections: Corrections, target: Target,
                      run: Callable[..., CandidateFigures], priced: list[MixedPoint],
                      say: Callable[[str], None]) -> tuple[Point, CandidateFigures] | None:
    """For the default target, when a measured point meets its SQNR and misses its time by a little
    (`mixed_search.near_miss`): up to `NEIGHBOURS_PRICED` of its one-unit neighbours predicted to
    keep the SQNR and not yet measured, cheapest predicted first, each priced by the costing alone
    (not filtered by the predicted cost, which is the sum the estimate departs from); each priced
    within the time is measured, until one meets the target (None: none did). Appends to `tried`
    and `priced`."""
    close = [t for t in tried if near_miss(target, ends, _sqnr(t.measured), t.measured.cost)]
    if not close:
        return None
    need, budget = default_requirements(ends)
    best = min(close, key=lambda t: t.measured.cost)
    around = [p for p in neighbours(best.sixteen, units, ends, corrections, need) if frozenset(p.sixteen) not in known]
    for p in around[:NEIGHBOURS_PRICED]:
        say(f"price {len(priced) + 1}")
        cost = bench.price(frozenset(p.sixteen))
        priced.append(MixedPoint(sixteen=list(p.sixteen), predicted_sqnr_db=round(p.sqnr_db, 3),
                                 predicted_cost=p.cost, priced=cost.total))
        if cost.total > budget:
            continue
        figures = run(p, cost)
        tried.append(_point(p, figures))
        if meets(target, ends, _sqnr(figures), figures.cost):
            return p, figures
    return None


def _sqnr(f: CandidateFigures) -> float:
    """A candidate's HTP SQNR; None in the figures means identical outputs."""
    return math.inf if f.htp_sqnr_db is None else f.htp_sqnr_db


def _alone_at_8(bench: Bench, w8a16: Run, sixteen: frozenset[str]) -> dict:
    """A unit's (or piece's) gain measured alone: the assignment `sixteen` (all but it at 16 bits)
    against uniform w8a16, as the power of the output's change over the fp32 output's."""
    f, htp, cpu, _ = bench.measure(sixteen, cost=False)
    signal = float(np.sum(bench.fp32.astype(np.float64) ** 2)) or 1.0
    return dict(htp_gain=float(np.sum((w8a16.htp.astype(np.float64) - htp) ** 2)) / signal,
                cpu_gain=float(np.sum((w8a16.cpu.astype(np.float64) - cpu) ** 2)) / signal,
                htp_sqnr_db=f.htp_sqnr_db, cpu_sqnr_db=f.cpu_sqnr_db, converts=f.converts, htp_ops=f.htp_ops)


def carry_runs(names: Sequence[str]) -> list[frozenset[str]]:
    """The mixed runs whose taps give each unit's carry factor (`chain_gains`): every other unit at
    16 bits, and the other half, so each unit's input noise differs from both uniform runs' at the
    unit's own width (XS 224: 0.24 dB mean error over 11 measured assignments, against 0.36 dB
    from the first run alone; docs/mixed-precision.md)."""
    return [frozenset(names[0::2]), frozenset(names[1::2])]


def _db(noise: float) -> float | None:
    return None if noise <= 0 else round(to_db(noise), 3)


def ends_of(s: SensitivityResults) -> Ends:
    return Ends(noise8=s.w8a8.htp_noise, noise16=s.w8a16.htp_noise, cost8=s.w8a8.cost, cost16=s.w8a16.cost)


def unit_figures(s: SensitivityResults) -> list[UnitFigures]:
    return [UnitFigures(u.unit, u.htp_gain, u.extra_cost, u.handover) for u in s.units]


def _point(p: Point, measured: CandidateFigures | None = None) -> MixedPoint:
    return MixedPoint(sixteen=list(p.sixteen), predicted_sqnr_db=round(p.sqnr_db, 3), predicted_cost=p.cost,
                      measured=measured)


def search(bench: Bench, s: SensitivityResults, target: Target, progress: Callable[[str], None] | None = None,
           ) -> SearchResults:
    """The Pareto curve from the sensitivities; the target's point measured and, while the measured
    figures miss the target, the model corrected by every measured candidate (`corrected`) and its
    new choice measured; then Lite-MP, and this search's point at Lite-MP's cost."""
    started = time.perf_counter()
    say = progress or (lambda _m: None)
    ends, units = ends_of(s), unit_figures(s)
    chain = [u.unit for u in s.units]
    crossings = tuple((w, tuple(r)) for w, r in s.crossings)
    corrections = Corrections(convert_cost=s.convert_cost, crossings=crossings)
    known = {frozenset(): s.w8a8, frozenset(chain): s.w8a16}
    tried: list[MixedPoint] = []
    priced: list[MixedPoint] = []

    def run(p: Point, priced_as: Cost | None = None) -> CandidateFigures:
        key = frozenset(p.sixteen)
        if known.get(key) is None:
            say(f"mix {len(known) - 1}")
            if priced_as is None:
                known[key] = bench.measure(key)[0]
            else:  # priced a moment ago: the same estimate
                known[key] = bench.measure(key, cost=False)[0].model_copy(update={
                    "cost": priced_as.total, "cost_measured": True, "estimated_us": priced_as.estimated_us})
        return known[key]

    def refit() -> tuple[Corrections, list[Point]]:
        mids = [(t.sixteen, t.measured.htp_noise, t.measured.cost) for t in tried if 0 < len(t.sixteen) < len(chain)]
        fitted = corrected(units, ends, mids, crossings, corrections.convert_cost)
        return fitted, pareto_curve(units, ends, fitted)

    curve = pareto_curve(units, ends, corrections)
    chosen = choose(curve, ends, target)
    figures = run(chosen)
    tried.append(_point(chosen, figures))
    while not meets(target, ends, _sqnr(figures), figures.cost):
        corrections, curve = refit()
        aim = target
        try:
            point = choose(curve, ends, aim)
        except UsageError:
            point = None
            if target.is_default:
                # The default target: the corrected curve reaches its SQNR nowhere within its time. A
                # correction fitted on a mostly 8-bit miss overshoots on mostly 16-bit points (XS 224,
                # meetings counted in chain order: 9 units predicted 30.01, measured 28.91 dB; then
                # none predicted, yet 15 units measured 30.06 dB within the time), so its most
                # faithful point within the time is measured before giving up.
                aim = Target(max_cost_ratio=default_requirements(ends)[1] / ends.cost8)
                point = choose(curve, ends, aim)
        if point is not None and frozenset(point.sixteen) in known:
            options = [p for p in next_candidates(curve, point, aim, ends) if frozenset(p.sixteen) not in known]
            point = options[0] if options else None
        if point is None or len(tried) > MAX_EXTRA_MEASUREMENTS:
            # Bit-ops add up; only an estimate can find a neighbour cheaper than the sum says.
            found = (_closer_neighbour(bench, known, tried, units, ends, corrections, target, run, priced, say)
                     if s.cost_unit == "us" else None)
            if found is None:
                corrections, curve = refit()  # with the neighbours measured, if any
                raise UsageError(
                    f"No measured assignment meets the target ({target.describe(ends)}): measured "
                    + ", ".join(f"{len(t.sixteen)} unit(s) at 16 bits {_sqnr(t.measured):.2f} dB at "
                                f"{t.measured.cost / ends.cost8:.3f}x" for t in tried) + " of w8a8's cost"
                    + _why_not(curve, ends, target) + ".",
                    hint=refusal_hint(target, ends, [(_sqnr(t.measured), t.measured.cost) for t in tried]))
            chosen, figures = found
            break
        chosen = point
        figures = run(chosen)
        tried.append(_point(chosen, figures))
    lite = lite_mp({u.unit: u.htp_gain for u in s.units})
    lite_point = predict(lite, units, ends, corrections)
    lite_figures = run(lite_point)
    peer = max((p for p in curve if p.cost <= lite_figures.cost), key=lambda p: (p.sqnr_db, -p.cost))
    peer_figures = run(peer)
    return SearchResults(
        target=target.describe(ends), min_sqnr_db=target.min_sqnr_db, max_time_ratio=target.max_cost_ratio,
        cost_unit=s.cost_unit, cost_source=s.cost_source,
        curve=[_point(p, known.get(frozenset(p.sixteen))) for p in curve],
        chosen=_point(chosen, figures), tried=tried, priced=priced, noise_scale=corrections.noise_scale,
        convert_cost=corrections.convert_cost, lite_mp=_point(lite_point, lite_figures),
        lite_mp_peer=_point(peer, peer_figures), measured_candidates=len(known) - 2,
        seconds=round(time.perf_counter() - started, 2))
