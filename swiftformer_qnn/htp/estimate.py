"""Estimated accelerator time without a device: QNN's HTP performance estimator (Hextimate).

The QNN HTP library that onnxruntime-qnn bundles holds Qualcomm's estimator. While it prepares
a graph for an SoC whose estimator flag is set, it simulates the HTP schedule with a per-op
cost model and reports estimated accelerator cycles, with lower and upper bounds, identical
from run to run. It runs nothing and does not follow host time (unlike the HTP emulator's
cycles). No phone SoC has the flag (not SM8550): the estimate is made for an automotive /
IoT SoC of the same HTP generation, the *proxy*, which every figure must name.

One compile (`htp.compile.compile_model`, the one compile) for the proxy with provider options
`profiling_level=optrace` and a profile CSV yields:

- the CSV's graph-level rows (`Simulated (Accelerator exec cycles)`, its bounds, `... time us`
  from QNN 2.50 on, `Input Fill` / `Output Spill` bytes, `Missing Ops`);
- `<csv stem>_qnn.log`, a binary QNN log that embeds the estimator's Chrome trace (JSON):
  slices of HTP work on the threads `FG:` (the sequencer, where HMX convolutions run),
  `HVX 1..4:`, `DMA:`, each with `ts`/`dur` in simulated cycles and `args.id`, whose low
  32 bits are the QNN op id (checked against the emulator's `name:OpId_N` profile rows);
- a schematic dump QNN writes into the working directory (`*_schematic.bin`), whose
  `qnn_name_translations` table names each QNN op id with the QNN node name, which the
  compile's framework op trace (`qnn_op_trace.json`) maps to its ONNX nodes.

So each traced slice reaches an ONNX node: slice -> op id -> QNN node name -> ONNX nodes.
A slice whose op id names no QNN node (the graph's Input/Output ops carry their own names)
stays unmapped, and its share of the time is reported as such.

Parallel threads overlap, so summing slice durations double-counts: an op's estimated time
is its share of the span (the critical path): every cycle from 0 to the last slice's end is
shared equally among the ops that have a slice in flight at that cycle; cycles with no slice
in flight are idle. Per-op shares plus idle add up to the span, which equals QNN's total
within a few cycles.

Imports only the standard library and pydantic at module level (onnxruntime inside the
worker), so a toolchain environment of another QNN version runs it as a worker.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ProfileError, ToolchainError, UsageError, error_named
from ..core.interrupt import wait_child

ESTIMATE_JSON = "estimate.json"  # the Estimate, written by the worker
ESTIMATE_CSV = "estimate.csv"  # QNN's profile CSV (graph-level estimate rows)
ESTIMATE_LOG = "estimate_qnn.log"  # QNN's binary profile log, which embeds the Chrome trace
ESTIMATE_TRACE = "estimate_trace.json"  # the Chrome trace taken out of the log (open it in Perfetto)
SCHEMATIC_GLOB = "*_schematic.bin"  # QNN's graph dump, written into the working directory
ESTIMATOR = "QNN Hextimate"


@dataclass(frozen=True)
class EstimatorSoc:
    """An SoC whose QNN HTP library runs the performance estimator (`SupportsHextimate`)."""

    name: str  # as Qualcomm names the part
    soc_model: int  # QNN `soc_model` provider option
    htp_arch: int


# In the QNN 2.51 HTP library the flag is set for these SoCs, per HTP architecture (the first is
# the default proxy). No phone SoC has it; SA8255P is HTP v73 of the SM8550 ("Kailua")
# generation, and its simulated configuration says so (`sim_base_soc: Kailua`).
ESTIMATOR_SOCS: dict[int, tuple[EstimatorSoc, ...]] = {
    73: (EstimatorSoc("SA8255P", 52, 73), EstimatorSoc("QCS9100", 77, 73)),
    68: (EstimatorSoc("SA8540", 62, 68),),
    81: (EstimatorSoc("SA8797", 72, 81),),
}


def estimator_soc(htp_arch: int, soc_model: int | None = None) -> EstimatorSoc:
    """The estimator proxy for `htp_arch` (or the one with `soc_model`), or a UsageError."""
    socs = ESTIMATOR_SOCS.get(htp_arch, ())
    if not socs:
        have = ", ".join(f"v{a} ({'/'.join(s.name for s in ss)})" for a, ss in sorted(ESTIMATOR_SOCS.items()))
        raise UsageError(
            f"No SoC of HTP v{htp_arch} has QNN's performance estimator in this QNN, so there is no estimate for it.",
            hint=f"Estimates exist for {have}; profile v{htp_arch} on a device (AI Hub or adb).",
        )
    if soc_model is None:
        return socs[0]
    for s in socs:
        if s.soc_model == soc_model:
            return s
    raise UsageError(f"soc_model {soc_model} is no estimator SoC of HTP v{htp_arch}.",
                     hint=f"Use one of: {', '.join(f'{s.soc_model} ({s.name})' for s in socs)}.")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EstimatedOp(_Model):
    """One QNN op of the estimated schedule, in the order its first slice starts."""

    op_id: int  # the QNN op id (low 32 bits of the trace's `args.id`)
    name: str  # the QNN node name (= the op trace's `dst_name`), "Input"/"Output", or "op 0x.."
    named: bool  # QNN's name table names this op id (else its time is unmapped)
    qnn_type: str | None = None  # from the op trace, e.g. "Conv2d"
    onnx_nodes: list[str] = Field(default_factory=list)  # the ONNX nodes it came from (op trace)
    kernels: list[str] = Field(default_factory=list)  # HTP implementations run, e.g. "q::ConvLayer_s1.opt"
    span_cycles: float = Field(ge=0)  # its share of the critical path
    busy_cycles: int = Field(ge=0)  # summed slice durations over all threads (work, not time)
    slices: int = Field(ge=0)
    threads: list[str] = Field(default_factory=list)
    first_cycle: int = Field(ge=0)
    last_cycle: int = Field(ge=0)
    dram_read_bytes: int = Field(default=0, ge=0)
    dram_write_bytes: int = Field(default=0, ge=0)
    vtcm_read_bytes: int = Field(default=0, ge=0)
    vtcm_write_bytes: int = Field(default=0, ge=0)


class SimulatedSoc(_Model):
    """The estimator's `Hextimate Configuration`: what it simulated."""

    soc_type: str | None = None  # "SA8255"
    sim_base_soc: str | None = None  # "Kailua" (the SM8550 generation)
    core_mhz: float | None = None
    hmx_mhz: float | None = None
    ddr_mhz: float | None = None
    vtcm_bytes: int | None = None
    hvx_threads: int | None = None


class Estimate(_Model):
    """One estimate of one ONNX model's accelerator execution by QNN's HTP estimator."""

    kind: Literal["swiftformer-qnn.estimate"] = "swiftformer-qnn.estimate"
    schema_version: int = 1
    estimator: str = ESTIMATOR
    qnn_version: str
    onnxruntime_qnn: str | None = None
    onnxruntime: str | None = None
    hexagon_nn: str | None = None  # the trace's provenance (Hexagon-NN build)
    proxy_soc: str  # "SA8255P"
    soc_model: int
    htp_arch: int
    stands_for: str | None = None  # the SoC the figures stand in for ("SM8550")
    simulated: SimulatedSoc = Field(default_factory=SimulatedSoc)
    model_sha256: str
    # QNN's graph-level rows (the CSV). Microseconds as QNN printed them (2.50 and later);
    # older releases print cycles only.
    cycles: int = Field(ge=0)
    cycles_lower: int | None = Field(default=None, ge=0)
    cycles_upper: int | None = Field(default=None, ge=0)
    reported_us: float | None = Field(default=None, ge=0)
    reported_us_lower: float | None = Field(default=None, ge=0)
    reported_us_upper: float | None = Field(default=None, ge=0)
    input_fill_bytes: int | None = Field(default=None, ge=0)
    output_spill_bytes: int | None = Field(default=None, ge=0)
    intermediate_fill_bytes: int | None = Field(default=None, ge=0)
    intermediate_spill_bytes: int | None = Field(default=None, ge=0)
    missing_ops: int | None = Field(default=None, ge=0)  # ops the cost model has no figure for; None: not printed
    # From the trace: the span (critical path), what of it no slice covers, what no op name maps.
    span_cycles: int = Field(ge=0)
    idle_cycles: float = Field(ge=0)
    unmapped_cycles: float = Field(ge=0)
    dma_read_bytes: int | None = Field(default=None, ge=0)
    dma_write_bytes: int | None = Field(default=None, ge=0)
    ops: list[EstimatedOp] = Field(default_factory=list)
    compile_s: float = Field(ge=0)
    files: dict[str, str] = Field(default_factory=dict)  # what the raw outputs are called in the work dir

    @property
    def core_mhz(self) -> float | None:
        return self.simulated.core_mhz

    def to_us(self, cycles: float | None) -> float | None:
        """Simulated cycles -> microseconds at the simulated core clock."""
        if cycles is None or not self.core_mhz:
            return None
        return cycles / self.core_mhz

    @property
    def us(self) -> float:
        """The estimate in microseconds: QNN's own figure, else cycles at the simulated clock."""
        if self.reported_us is not None:
            return self.reported_us
        converted = self.to_us(self.cycles)
        if converted is None:
            raise ProfileError("the estimate has neither microseconds nor the simulated clock to convert its cycles")
        return converted

    @property
    def us_lower(self) -> float | None:
        return self.reported_us_lower if self.reported_us is not None else self.to_us(self.cycles_lower)

    @property
    def us_upper(self) -> float | None:
        return self.reported_us_upper if self.reported_us is not None else self.to_us(self.cycles_upper)

    @property
    def us_converted(self) -> bool:
        """True when QNN printed cycles only (2.47-2.49) and `us` is cycles / simulated clock."""
        return self.reported_us is None

    @property
    def label(self) -> str:
        return estimate_label(self.proxy_soc, self.stands_for, self.htp_arch)

    @property
    def unmapped_share(self) -> float:
        return self.unmapped_cycles / self.span_cycles if self.span_cycles else 0.0


def estimate_label(proxy_soc: str, stands_for: str | None, htp_arch: int) -> str:
    """What every estimated figure is called: `estimated (QNN Hextimate, SA8255P proxy for SM8550)`."""
    target = stands_for.upper() if stands_for else f"HTP v{htp_arch}"
    return f"estimated ({ESTIMATOR}, {proxy_soc} proxy for {target})"


class EstimateJob(_Model):
    """What the parent asks a toolchain's worker to estimate (`qnn_worker estimate --request`)."""

    model: Path
    out_dir: Path
    soc_model: int
    htp_arch: int
    proxy_soc: str
    stands_for: str | None = None
    fp16: bool = False
    spawned_at: float | None = None


# --- readers of what QNN wrote (pure) -----------------------------------------------------

# The CSV's graph-level rows (Event Identifier -> Estimate field).
_GRAPH_ROWS = {
    "Simulated (Accelerator exec cycles)": "cycles",
    "Simulated (Accelerator exec cycles (lower estimate))": "cycles_lower",
    "Simulated (Accelerator exec cycles (upper estimate))": "cycles_upper",
    "Simulated (Accelerator exec time us)": "reported_us",
    "Simulated (Accelerator exec time us (lower estimate))": "reported_us_lower",
    "Simulated (Accelerator exec time us (upper estimate))": "reported_us_upper",
    "Input Fill": "input_fill_bytes",
    "Output Spill": "output_spill_bytes",
    "Intermediate Fill": "intermediate_fill_bytes",
    "Intermediate Spill": "intermediate_spill_bytes",
    "Missing Ops (Number of Ops with no Costs associated)": "missing_ops",
}
_UNSUPPORTED = "Performance Estimates unsupported"


def read_graph_estimate(csv_path: Path) -> dict[str, int | float]:
    """The graph-level estimate rows of QNN's profile CSV (`_GRAPH_ROWS` field -> value).

    Raises ProfileError when the CSV holds no estimate (the SoC has no estimator in this QNN).
    """
    csv_path = Path(csv_path)
    try:
        with csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ProfileError(f"{csv_path}: QNN wrote no profile CSV.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ProfileError(f"{csv_path}: unreadable QNN profile CSV ({exc}).") from None
    found: dict[str, int | float] = {}
    for row in rows:
        ident = (row.get("Event Identifier") or "").strip()
        if _UNSUPPORTED in ident:
            break
        field = _GRAPH_ROWS.get(ident)
        if field is None or field in found:
            continue
        text = (row.get("Time") or "").strip()
        try:
            value = float(text)
        except ValueError:
            raise ProfileError(f"{csv_path}: estimate row {ident!r} has value {text!r}, not a number.") from None
        found[field] = value if field.startswith("reported_us") else int(value)
    if "cycles" not in found:
        raise ProfileError(f"{csv_path}: no 'Simulated (Accelerator exec cycles)' row: QNN made no estimate.")
    return found


def trace_from_qnn_log(log_path: Path) -> dict[str, Any]:
    """The estimator's Chrome trace embedded in QNN's binary profile log.

    The log is binary; the trace is one JSON object containing a `"traceEvents"` key. It is
    found by that key and decoded from the `{` that opens it (the decoder stops at its end).
    """
    log_path = Path(log_path)
    try:
        data = log_path.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"{log_path}: QNN wrote no profile log (profiling_level=optrace writes one).") from None
    key = data.find(b'"traceEvents"')
    start = data.rfind(b"{", 0, key) if key >= 0 else -1
    if start < 0:
        raise ProfileError(f"{log_path}: holds no estimator trace (no \"traceEvents\").")
    try:
        obj, _ = json.JSONDecoder().raw_decode(data[start:].decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise ProfileError(f"{log_path}: the estimator trace is not valid JSON ({exc}).") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("traceEvents"), list):
        raise ProfileError(f"{log_path}: the estimator trace has no list of traceEvents.")
    return obj


_NAME_TABLE = re.compile(rb"qnn_name_translations\s*=\s*\{(.*?)\n\}", re.DOTALL)
_NAME_ENTRY = re.compile(r"(0x[0-9a-fA-F]+)\s*:\s*'((?:[^'\\]|\\.)*)'")
_GRAPH_BEFORE = re.compile(rb"graph_before_optimization\s*=\s*\{(.*?):::END:graph_before_optimization", re.DOTALL)
_OPERATION = re.compile(r"(0x[0-9a-fA-F]+)\s*:\s*\{\s*'operation'\s*:\s*'([^']*)'")


def schematic_names(path: Path) -> tuple[dict[int, str], dict[int, str]]:
    """From QNN's schematic dump: (QNN op id -> QNN node name, op id -> HTP operation).

    The name table covers the ops the framework added (named after ONNX nodes); the graph as
    QNN received it gives every op id's operation (`q::Input`, `q::QNN_Conv2d`, ...).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: unreadable QNN schematic ({exc.strerror or exc}).") from None
    table = _NAME_TABLE.search(data)
    if table is None:
        raise ProfileError(f"{path}: the QNN schematic has no qnn_name_translations table.")
    names = {int(i, 16): _unescape(n) for i, n in _NAME_ENTRY.findall(table.group(1).decode("utf-8", "replace"))}
    before = _GRAPH_BEFORE.search(data)
    operations = (
        {int(i, 16): op for i, op in _OPERATION.findall(before.group(1).decode("utf-8", "replace"))} if before else {}
    )
    return names, operations


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def op_trace_mapping(op_trace: Mapping[str, Any] | None) -> dict[str, tuple[str | None, list[str]]]:
    """QNN node name -> (QNN op type, its ONNX source nodes) from a framework op trace."""
    if not op_trace:
        return {}
    out: dict[str, tuple[str | None, list[str]]] = {}
    for graph in op_trace.get("subgraph_traces", []):
        for m in graph.get("op_mappings", []):
            sources = [str(s.get("name")) for s in m.get("sources", []) if s.get("type") == "OP"]
            out[str(m.get("dst_name"))] = (m.get("dst_qnn_op_type"), sources)
    return out


@dataclass(frozen=True)
class Slice:
    """One complete (`ph: X`) event of the estimator's trace."""

    op_id: int
    kernel: str  # the event name: `q::ConvLayer_s1.opt`, `default_dma (q::*InputSlice)`, ...
    thread: str
    ts: int
    dur: int
    bytes: tuple[int, int, int, int]  # dram read/write, vtcm read/write (0 for the sequencer's bookkeeping)


# The sequencer's bookkeeping slices (`default_dma_start`, `default_hvx_spawn`, ...) repeat the
# bandwidth of the work they start; only the work (and the DMA engine's own `default_dma`) counts.
_BOOKKEEPING = re.compile(r"^default_(?!dma\b)")
_GRAPH_IO_OPS = {"q::Input": "Input", "q::Output": "Output"}


def trace_slices(trace: Mapping[str, Any]) -> list[Slice]:
    threads = {
        e.get("tid"): str(e.get("args", {}).get("name", "")).rstrip(":")
        for e in trace.get("traceEvents", [])
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    out = []
    for e in trace.get("traceEvents", []):
        if e.get("ph") != "X":
            continue
        args = e.get("args") or {}
        try:
            op_id = int(str(args.get("id", "0")), 16) & 0xFFFFFFFF
            ts, dur = int(e["ts"]), int(e.get("dur", 0))
        except (KeyError, TypeError, ValueError):
            raise ProfileError(f"estimator trace event {str(e)[:200]} has no usable id/ts/dur.") from None
        name = str(e.get("name", ""))
        bw = args.get("bw_info") or {}
        counted = not _BOOKKEEPING.match(name)
        nbytes = tuple(int(bw.get(k, 0)) if counted else 0 for k in ("dram_read", "dram_write", "vtcm_read", "vtcm_write"))
        out.append(Slice(op_id, name, threads.get(e.get("tid"), str(e.get("tid"))), ts, dur, nbytes))  # type: ignore[arg-type]
    return out


def critical_path_shares(slices: Iterable[Slice]) -> tuple[dict[int, float], float, int]:
    """(op id -> its share of the span, idle cycles, span): each cycle of 0..span is shared
    equally among the ops with a slice in flight; a cycle with none is idle."""
    points: list[tuple[int, int, int]] = []
    for s in slices:
        if s.dur > 0:
            points += [(s.ts, 1, s.op_id), (s.ts + s.dur, -1, s.op_id)]
    points.sort()
    shares: dict[int, float] = defaultdict(float)
    active: Counter[int] = Counter()
    idle, prev = 0.0, 0
    for t, delta, op in points:
        if t > prev:
            if active:
                each = (t - prev) / len(active)
                for k in active:
                    shares[k] += each
            else:
                idle += t - prev
            prev = t
        active[op] += delta
        if not active[op]:
            del active[op]
    return dict(shares), idle, prev


def estimated_ops(
    slices: Sequence[Slice],
    names: Mapping[int, str],
    operations: Mapping[int, str],
    mapping: Mapping[str, tuple[str | None, list[str]]],
) -> tuple[list[EstimatedOp], float, float, int]:
    """Per-op figures of the trace: (ops in order of first slice, idle, unmapped cycles, span)."""
    shares, idle, span = critical_path_shares(slices)
    by_op: dict[int, list[Slice]] = defaultdict(list)
    for s in slices:
        by_op[s.op_id].append(s)
    ops = []
    unmapped = 0.0
    for op_id, group in sorted(by_op.items(), key=lambda kv: min(s.ts for s in kv[1])):
        name = names.get(op_id)
        named = name is not None
        if name is None:
            name = _GRAPH_IO_OPS.get(operations.get(op_id, ""), f"op 0x{op_id:x}")
            named = name in _GRAPH_IO_OPS.values()
        qnn_type, sources = mapping.get(name, (None, []))
        if qnn_type is None and name in _GRAPH_IO_OPS.values():
            qnn_type = name
        if not named:
            unmapped += shares.get(op_id, 0.0)
        totals = [sum(s.bytes[i] for s in group) for i in range(4)]
        ops.append(EstimatedOp(
            op_id=op_id, name=name, named=named, qnn_type=qnn_type or operations.get(op_id), onnx_nodes=sources,
            kernels=list(dict.fromkeys(_kernel(s.kernel) for s in group)),
            span_cycles=round(shares.get(op_id, 0.0), 3), busy_cycles=sum(s.dur for s in group), slices=len(group),
            threads=sorted({s.thread for s in group}), first_cycle=min(s.ts for s in group),
            last_cycle=max(s.ts + s.dur for s in group),
            dram_read_bytes=totals[0], dram_write_bytes=totals[1], vtcm_read_bytes=totals[2], vtcm_write_bytes=totals[3],
        ))
    return ops, idle, unmapped, span


_KERNEL_OF = re.compile(r"^default_\w+ \((.*)\)$")


def _kernel(event_name: str) -> str:
    """`default_hvx_spawn (q::Quantize)` -> `q::Quantize`: the implementation, not the verb."""
    m = _KERNEL_OF.match(event_name)
    return m.group(1) if m else event_name


def _simulated(config: Mapping[str, Any]) -> SimulatedSoc:
    def num(key: str) -> float | None:
        v = config.get(key)
        return float(v) if isinstance(v, (int, float)) else None

    vtcm, threads = config.get("vtcm_size_in_bytes"), config.get("hvx_threads")
    return SimulatedSoc(
        soc_type=config.get("soc_type"), sim_base_soc=config.get("sim_base_soc"), core_mhz=num("sim_core_freq"),
        hmx_mhz=num("sim_hmx_freq"), ddr_mhz=num("sim_ddr_freq"),
        vtcm_bytes=int(vtcm) if isinstance(vtcm, int) else None, hvx_threads=int(threads) if isinstance(threads, int) else None,
    )


def read_estimate(
    work: Path,
    *,
    qnn_version: str,
    proxy: EstimatorSoc,
    stands_for: str | None,
    model_sha256: str,
    compile_s: float,
    op_trace: Path | None,
    versions: Mapping[str, str | None] | None = None,
) -> Estimate:
    """Assemble an Estimate from what one estimating compile wrote into `work` (pure reading)."""
    work = Path(work)
    graph = read_graph_estimate(work / ESTIMATE_CSV)
    trace = trace_from_qnn_log(work / ESTIMATE_LOG)
    schematics = sorted(work.glob(SCHEMATIC_GLOB))
    if not schematics:
        raise ProfileError(f"{work}: QNN wrote no schematic ({SCHEMATIC_GLOB}); no op ids can be named.")
    names, operations = schematic_names(schematics[0])
    mapping = op_trace_mapping(json.loads(op_trace.read_text())) if op_trace is not None and op_trace.is_file() else {}
    ops, idle, unmapped, span = estimated_ops(trace_slices(trace), names, operations, mapping)
    stats = trace.get("DMA/L2 Access Statistics") or {}
    provenance = trace.get("Trace Provenance") or {}
    write_text(work / ESTIMATE_TRACE, json.dumps(trace))
    return Estimate(
        qnn_version=qnn_version,
        hexagon_nn=str(provenance.get("Hexagon-NN SHA", "")).rstrip(".") or None,
        proxy_soc=proxy.name, soc_model=proxy.soc_model, htp_arch=proxy.htp_arch, stands_for=stands_for,
        simulated=_simulated(trace.get("Hextimate Configuration") or {}),
        model_sha256=model_sha256,
        span_cycles=span, idle_cycles=round(idle, 3), unmapped_cycles=round(unmapped, 3),
        dma_read_bytes=stats.get("total_num_dma_read_bytes"), dma_write_bytes=stats.get("total_num_dma_write_bytes"),
        ops=ops, compile_s=round(compile_s, 3),
        files={"csv": ESTIMATE_CSV, "log": ESTIMATE_LOG, "trace": ESTIMATE_TRACE, "schematic": schematics[0].name,
               **({"op_trace": op_trace.name} if op_trace is not None and op_trace.is_file() else {})},
        **(dict(versions) if versions else {}),
        **graph,  # type: ignore[arg-type]
    )


def write_text(path: Path, text: str) -> None:
    from ..core.atomic import write_text_atomic

    write_text_atomic(path, text)


# --- the worker side: one estimating compile, in the toolchain's own process ---------------


def run_estimate(job: EstimateJob) -> Estimate:
    """Compile `job.model` for the estimator proxy with profiling on, in `job.out_dir` (which
    becomes the working directory: QNN writes its schematic there), and read the estimate.
    Writes `estimate.json` there. Runs in a worker process (it changes the directory)."""
    import onnxruntime

    from .compile import compile_model
    from .record import COMPILE_RECORD, OP_TRACE, CompileSpec
    from .session import HtpTarget, onnxruntime_qnn_version, qnn_sdk_version

    out = Path(job.out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)
    for stale in [out / ESTIMATE_CSV, out / ESTIMATE_LOG, out / ESTIMATE_TRACE, out / ESTIMATE_JSON,
                  *out.glob(SCHEMATIC_GLOB)]:
        stale.unlink(missing_ok=True)  # QNN appends to an existing CSV; an old schematic would mislead
    proxy = next((s for s in ESTIMATOR_SOCS.get(job.htp_arch, ()) if s.soc_model == job.soc_model), None)
    proxy = proxy or EstimatorSoc(job.proxy_soc, job.soc_model, job.htp_arch)
    target = HtpTarget(soc_model=job.soc_model, htp_arch=job.htp_arch, fp16=job.fp16)
    started = time.perf_counter()
    record = compile_model(CompileSpec(model=Path(job.model), out_dir=out, target=target, soc=proxy.name.lower(),
                                          profile_csv=out / ESTIMATE_CSV, profiling_level="optrace"))
    compile_s = time.perf_counter() - started
    estimate = read_estimate(
        out, qnn_version=qnn_sdk_version(), proxy=proxy, stands_for=job.stands_for,
        model_sha256=record.model_sha256, compile_s=compile_s,
        op_trace=out / record.op_trace if record.op_trace else (out / OP_TRACE if (out / OP_TRACE).is_file() else None),
        versions={"onnxruntime_qnn": onnxruntime_qnn_version(), "onnxruntime": onnxruntime.__version__},
    )
    # The proxy's context binary runs on no phone: it goes, so nothing mistakes it for the export's.
    for built in (record.context_binary, record.context_onnx, COMPILE_RECORD):
        (out / built).unlink(missing_ok=True)
    write_text(out / ESTIMATE_JSON, estimate.model_dump_json(indent=2) + "\n")
    return estimate


# --- the parent side ------------------------------------------------------------------------

def estimate_model(
    model: Path,
    work_dir: Path,
    *,
    htp_arch: int = 73,
    soc_model: int | None = None,
    stands_for: str | None = "sm8550",
    qnn: str | None = None,
    fp16: bool = False,
    toolchains_root: Path | None = None,
    timeout_s: float = 1800.0,
) -> Estimate:
    """Estimate the HTP execution of a QDQ (or, with `fp16`, float) ONNX model.

    Compiles it once for the estimator proxy of `htp_arch` (`estimator_soc`) with QNN `qnn`
    (an installed toolchain, e.g. "2.47"; None: the onnxruntime-qnn of this environment), in
    a worker process whose working directory is `work_dir`, which keeps QNN's raw outputs
    (`estimate.csv`, `estimate_qnn.log`, `estimate_trace.json`, the schematic, the op trace;
    not the proxy's context binary, which no phone runs) and `estimate.json`. `stands_for` names the SoC the figures
    stand in for (in every label). Raises UsageError for an architecture with no estimator SoC,
    ToolchainError for a missing toolchain or an estimate QNN did not make, HtpUnsupportedError
    when the HTP rejects an op.
    """
    from ..toolchains import get_toolchain_spec, main_environment_spec, resolve_toolchain
    from ..toolchains.state import ToolchainState, toolchain_in_use
    from ..toolchains.worker import PYCACHE_DIR, package_shim, worker_command, worker_env

    proxy = estimator_soc(htp_arch, soc_model)
    model = Path(model).absolute()
    if not model.is_file():
        raise UsageError(f"No model at {model}.")
    spec = get_toolchain_spec(qnn) if qnn else main_environment_spec()
    python, pycache, expected = Path(sys.executable), None, None
    if spec is not None:
        status = resolve_toolchain(spec, toolchains_root)
        python = status.python or python
        expected = spec.qnn_version
        if status.state is ToolchainState.READY and status.location is not None:
            pycache = status.location / PYCACHE_DIR
    work = Path(work_dir).absolute()
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolchainError(f"Cannot write {work}: {exc.strerror or exc}.") from None
    job = EstimateJob(model=model, out_dir=work, soc_model=proxy.soc_model, htp_arch=htp_arch, proxy_soc=proxy.name,
                      stands_for=stands_for, fp16=fp16, spawned_at=time.time())
    (work / ESTIMATE_JSON).unlink(missing_ok=True)
    log_path = work / "estimate_worker.log"
    if qnn is None:
        # This environment's QNN: the worker an export started ahead beside its quantize, if one
        # waits (`htp.workers`), else one started now.
        from .workers import take

        worker = take("estimate")
        try:
            worker.send(job.model_copy(update={"spawned_at": worker.spawned_at}).model_dump_json())
            try:
                code = _wait_for_estimate(worker.proc, model, timeout_s)
            finally:  # beside QNN's raw outputs, as a toolchain's worker writes it, however it ended
                with contextlib.suppress(OSError):
                    shutil.copyfile(worker.log, log_path)
            result = _estimate_result(worker.result, code, model, log_path)
        finally:
            worker.close()
    else:
        with tempfile.TemporaryDirectory(prefix="swiftformer-qnn-estimate-") as tmp:
            request, result_path = Path(tmp) / "request.json", Path(tmp) / "result.json"
            request.write_text(job.model_dump_json())
            shim = package_shim(Path(tmp) / "shim")
            # The toolchain stays while its worker runs: `toolchains remove` refuses meanwhile.
            with open(log_path, "wb") as log, toolchain_in_use(pycache.parent if pycache else None):
                try:
                    proc = subprocess.Popen(
                        worker_command(python, "estimate", "--request", str(request), "--result", str(result_path)),
                        cwd=work, env=worker_env(shim, pycache), stdout=log, stderr=subprocess.STDOUT,
                    )
                except OSError as exc:
                    raise ToolchainError(f"Could not start {python}: {exc.strerror or exc}.") from None
                code = _wait_for_estimate(proc, model, timeout_s)
            result = _estimate_result(result_path, code, model, log_path)
    if result.get("status") != "ok":
        error = error_named(result.get("error_type")) or ToolchainError
        raise error(f"QNN {expected or 'of this environment'} made no estimate of {model.name}: {result.get('message')}")
    estimate = Estimate.model_validate_json((work / ESTIMATE_JSON).read_text())
    if expected is not None and estimate.qnn_version != expected:
        raise ToolchainError(f"The estimate ran with QNN {estimate.qnn_version}, not {expected}.")
    return estimate


def _wait_for_estimate(proc: subprocess.Popen, model: Path, timeout_s: float) -> int:
    try:
        return wait_child(proc, timeout_s)  # a signal kills the worker (core.interrupt)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"The estimate of {model.name} timed out after {timeout_s:.0f} s.") from None


def _estimate_result(result_path: Path, code: int, model: Path, log_path: Path) -> dict:
    """What the estimate worker that ended with `code` reported; one that wrote nothing died."""
    try:
        return json.loads(result_path.read_text())
    except (OSError, ValueError):
        from .workers import worker_death

        raise ToolchainError(
            f"The estimate worker for {model.name} died ({worker_death(code, log_path)}); its output is in {log_path}."
        ) from None
