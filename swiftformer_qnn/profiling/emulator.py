"""Per-op profiles from onnxruntime-qnn's x86 HTP emulator.

The emulator runs the quantized graph bit-faithfully, op by op as the HTP would, and QNN's
detailed profiling counts cycles per op. Those cycles are the emulator's, not a phone's:
L1 totals ~300 M of them where a Snapdragon 8 Gen 2 takes ~2-3 ms, and the same op varies
by 5-40% between identical runs. An emulator profile shows structure (which HTP ops the
graph became, where each came from, how the work splits between blocks), never latency.

What QNN writes (profiling_level=detailed, enable_framework_op_trace=1), per run appended
to the CSV: a ROOT row `Accelerator (execute) time (cycles)`, then one `NODE` row per HTP op,
`Event Identifier` = `<op name>:OpId_N (cycles)` (graph I/O ops: `Input OpId_N (cycles)`),
`Time` in CYCLES, and `ONNX Source Ops` = the ONNX nodes it came from, `;`-separated. The
session also writes `qnn_op_trace.json`, which adds each op's QNN type.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.errors import ProfileError, ToolchainError, UsageError
from ..core.targets import SOCS
from ..htp.record import OP_TRACE as OP_TRACE_JSON
from ..htp.record import read_op_trace
from ..htp.session import PROFILE_CSV, HtpTarget, htp_session, onnxruntime_qnn_version, qnn_sdk_version
from ..measure.attribution import NodeTensors, attribute_ops
from ..measure.schema import (
    ComputeUnit,
    LatencySource,
    ModelInfo,
    OpRecord,
    Profile,
    Provenance,
    TargetInfo,
    ToolchainInfo,
)
from ..model.variants import Variant
from .devices import EMULATOR_DEVICE
from .qnn_viewer import checked_identifier
from .raw import KIND_PREFIX, marker_kind, write_marker

log = logging.getLogger(__name__)

NOT_LATENCY = (
    "HTP emulator cycles on x86_64: structure only, NOT device latency "
    "(emulator cycles bear no fixed relation to a phone's time and vary 5-40% between identical runs)."
)

_COLUMNS = ("Message", "Time", "Unit of Measurement", "Event Level", "Event Identifier")
_SOURCES_COLUMN = "ONNX Source Ops"
_EXECUTE_ROOT = "Accelerator (execute) time (cycles)"
_EXECUTE_US = "QNN (execute) time"  # the run's graph execute, host side included
_OP_ID = re.compile(r"^(?P<name>.*?)(?::OpId_\d+)? \(cycles\)$")
_GRAPH_IO = re.compile(r"^(?P<io>Input|Output) OpId_\d+$")
# The ONNX op type, when the op still carries its ONNX node's name (`Conv_token_21`, `Gemm_1`).
_ONNX_TYPE = re.compile(r"^([A-Z][A-Za-z0-9]*?)(?:_\d+)?(?:_token_\d+)?$")


# Beside the emulator's raw files: what made them. QNN's CSV itself has the same header and rows
# whether a phone or the x86 emulator wrote it, so the file alone cannot say (importers read this).
MADE_BY_KIND = KIND_PREFIX + "emulator-raw"


def write_made_by(directory: Path) -> Path:
    return write_marker(directory, "emulator-raw",
                        f"onnxruntime-qnn's HTP emulator on x86_64 (swiftformer-qnn {__version__}, profile emulator)",
                        device_latency=False, note=NOT_LATENCY)


def made_by_emulator(path: Path) -> bool:
    """Whether the emulator's marker lies beside `path` (a raw file `profile emulator` wrote)."""
    return marker_kind(Path(path).parent) == MADE_BY_KIND


def _fallback_type(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    for suffix in ("_QuantizeLinear", "_DequantizeLinear"):
        if last.endswith(suffix):
            return suffix[1:]
    m = _ONNX_TYPE.match(last)
    return m.group(1) if m else "unknown"


@dataclass(frozen=True)
class QnnProfileCsv:
    """What one onnxruntime-qnn profiling CSV holds: per run, its HTP ops (times in CYCLES)
    and, where QNN wrote one, its `QNN (execute) time` in microseconds."""

    runs: list[list[OpRecord]]
    execute_us: list[float | None]


def read_qnn_profile_csv(csv_path: Path, op_trace_json: Path | None = None) -> QnnProfileCsv:
    """Every run of onnxruntime-qnn's profiling CSV (`profiling_level=detailed`): the one
    reader of that format, for the emulator's own runs and for an app's CSV imported from a
    device.

    Names lose QNN's `:OpId_N (cycles)` decoration. `onnx_nodes` come from the CSV's
    `ONNX Source Ops` column, else from `op_trace_json` (needed for an EP-context model
    profiled without its compile-time trace beside it). `op_type` is the QNN op type from
    the trace, else the ONNX type the op's name still shows, else "unknown". A run starts at
    its ROOT `Accelerator (execute) time (cycles)` row; its NODE rows follow. Attribution is
    left to `attribution.attribute_ops`.
    """
    csv_path = Path(csv_path)
    trace = {op.name: op for op in read_op_trace(op_trace_json)} if op_trace_json is not None else {}
    try:
        with csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ProfileError(f"{csv_path}: not a QNN profile CSV (no column {missing[0]!r}).")
            rows = list(reader)
    except FileNotFoundError:
        raise ProfileError(f"{csv_path}: no such QNN profile CSV.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ProfileError(f"{csv_path}: unreadable QNN profile CSV ({exc}).") from None

    runs: list[list[dict]] = []
    execute: list[float | None] = []
    for row in rows:
        if None in row.values() or None in row:  # a short row, or one longer than the header
            raise ProfileError(f"{csv_path}: a row of {len([v for v in row.values() if v is not None])} columns, "
                               f"the header has {len(reader.fieldnames or [])}.")
        if row["Event Level"] == "ROOT" and row["Event Identifier"] == _EXECUTE_ROOT:
            runs.append([])
            execute.append(None)
        elif row["Message"] == "NODE":
            if not runs:  # NODE rows before any execute marker: older QNN without the marker
                runs.append([])
                execute.append(None)
            runs[-1].append(row)
        elif (row["Event Level"] == "ROOT" and row["Event Identifier"] == _EXECUTE_US
              and row["Unit of Measurement"] == "US" and runs):
            execute[-1] = _csv_number(csv_path, row["Event Identifier"], row["Time"])
    kept = [(r, e) for r, e in zip(runs, execute, strict=True) if r]
    if not kept:
        raise ProfileError(
            f"{csv_path}: no per-op (NODE) rows.",
            hint="Profile with profiling_level=detailed and run the session at least once.",
        )
    ops_of_runs = []
    for run, _ in kept:
        ops = []
        for row in run:
            if row["Unit of Measurement"] != "CYCLES":
                raise ProfileError(
                    f"{csv_path}: op row {row['Event Identifier']!r} is in {row['Unit of Measurement']!r}, expected CYCLES."
                )
            ident = checked_identifier(row["Event Identifier"], str(csv_path))
            m = _OP_ID.match(ident)
            name = m.group("name") if m else ident
            io = _GRAPH_IO.match(name)
            if io:
                name = io.group("io")  # the HTP graph's own input/output op, not an ONNX node
            mapped = trace.get(name)
            sources = [s for s in (row.get(_SOURCES_COLUMN) or "").split(";") if s] or list(mapped.sources if mapped else ())
            ops.append(
                OpRecord(
                    name=name,
                    op_type=io.group("io") if io else ((mapped.qnn_type if mapped else None) or _fallback_type(name)),
                    compute_unit=ComputeUnit.NPU,
                    execution_cycles=_csv_number(csv_path, name, row["Time"]),
                    onnx_nodes=sources,
                )
            )
        ops_of_runs.append(ops)
    return QnnProfileCsv(ops_of_runs, [e for _, e in kept])


def _csv_number(csv_path: Path, what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProfileError(f"{csv_path}: {what!r} has time {text!r}, not a number.") from None
    if not math.isfinite(value) or value < 0:
        raise ProfileError(f"{csv_path}: {what!r} has time {text!r}, not a finite non-negative number.")
    return value


def parse_qnn_profile_csv(
    csv_path: Path, op_trace_json: Path | None = None, *, execution: int = -1
) -> list[OpRecord]:
    """The HTP ops of one run (`execution`, default the last) of onnxruntime-qnn's profiling
    CSV, times in CYCLES (`read_qnn_profile_csv`)."""
    runs = read_qnn_profile_csv(csv_path, op_trace_json).runs
    try:
        return runs[execution]
    except IndexError:
        raise ProfileError(f"{csv_path}: holds {len(runs)} run(s), no run {execution}.") from None


def onnx_node_tensors(model_path: Path) -> dict[str, NodeTensors] | None:
    """Node name -> the tensors it writes, its initializers and the activations it reads.

    None for an EP-context model, whose file holds only the compiled graph's wrapper.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    if any(n.op_type == "EPContext" for n in graph.node):
        return None
    initializers = {t.name for t in graph.initializer}
    # A Constant node's output is a parameter too (onnxsim usually folds them to initializers).
    initializers |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return {
        n.name: NodeTensors(
            written=tuple(o for o in n.output if o),
            params=tuple(i for i in n.input if i in initializers),
            read=tuple(i for i in n.input if i and i not in initializers),
        )
        for n in graph.node
        if n.name
    }


def profile_on_emulator(
    model_path: Path,
    feeds: dict[str, np.ndarray],
    variant: Variant,
    model_info: ModelInfo,
    target: HtpTarget,
    out_dir: Path,
    *,
    compiled_from: Path | None = None,
) -> Profile:
    """Run a model once on the HTP emulator and return its per-op profile.

    The model is a QDQ ONNX, a float ONNX (with `target.fp16`), or an EP-context ONNX. Writes `qnn_profile.csv` (and QNN's `qnn_profile_qnn.log`) and `qnn_op_trace.json` into
    `out_dir`, where the caller saves the profile. Op times are emulator cycles, attributed
    to blocks; the profile has no latency. An EP-context model is not recompiled, so its ops
    name their ONNX sources only if the `qnn_op_trace.json` written when it was compiled lies
    beside it; otherwise attribution works from op names alone (the provenance note says so).
    `compiled_from`: the ONNX an EP-context model was compiled from, whose graph then helps
    attribution as the model's own graph would.
    """
    model_path, out_dir = Path(model_path), Path(out_dir)
    if not model_path.is_file():
        raise UsageError(f"{model_path}: no such model file.")
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / PROFILE_CSV
    trace_path = out_dir / OP_TRACE_JSON
    graph = onnx_node_tensors(model_path)
    is_context = graph is None
    if is_context and compiled_from is not None:
        graph = onnx_node_tensors(compiled_from)
    sidecar = model_path.parent / OP_TRACE_JSON
    keep_sidecar = is_context and sidecar.exists() and sidecar.resolve() == trace_path.resolve()
    # QNN appends to an existing CSV, and a stale trace would describe another graph.
    for stale in (csv_path, csv_path.with_name(f"{csv_path.stem}_qnn.log")) + (() if keep_sidecar else (trace_path,)):
        stale.unlink(missing_ok=True)
    if is_context and sidecar.exists() and not keep_sidecar:
        shutil.copyfile(sidecar, trace_path)

    started = time.perf_counter()
    session = htp_session(model_path, target, profile_csv=csv_path, op_trace=True, op_trace_dir=out_dir)
    try:
        session.run(None, feeds)
    except Exception as exc:
        raise ToolchainError(
            f"The HTP emulator could not run {model_path.name}: {str(exc).splitlines()[0][:400]}"
        ) from None
    finally:
        del session  # QNN finishes writing the profile when the session goes
    log.info("HTP emulator: session + one run of %s took %.1f s", model_path.name, time.perf_counter() - started)

    write_made_by(out_dir)
    has_trace = trace_path.exists()
    # The graph places renamed ops of a float (fp16) model, whose trace names no tensors.
    ops = attribute_ops(parse_qnn_profile_csv(csv_path, trace_path if has_trace else None), variant, graph=graph)
    note = NOT_LATENCY + f" Raw QNN output kept with this profile (`profile` puts it in <profile stem>.raw/): {PROFILE_CSV}"
    if has_trace:
        note += f", {OP_TRACE_JSON}."
    elif is_context:
        note += ". No op trace: this EP-context model was compiled without one, so ops are attributed by name only."
    else:
        note += ". No op trace (this onnxruntime-qnn wrote none): ops are attributed by name and model graph only."
    soc = next((s for s in SOCS.values() if s.soc_model == target.soc_model), None)
    return Profile(
        source=LatencySource.EMULATOR,
        model=model_info,
        target=TargetInfo(
            device=EMULATOR_DEVICE,
            chipset=soc.aihub_chipset if soc else None,
            soc_model=target.soc_model,
            htp_arch=target.htp_arch,
        ),
        toolchain=ToolchainInfo(
            qnn_version=qnn_sdk_version(),
            onnxruntime_qnn=onnxruntime_qnn_version(),
            # AI Hub's runtime names: a QDQ ONNX on the QNN EP vs a precompiled EP-context ONNX.
            runtime="precompiled_qnn_onnx" if is_context else "onnx",
        ),
        latency=None,
        ops=ops,
        provenance=Provenance(tool=f"swiftformer-qnn {__version__}", note=note),
    )
