"""qnn-profile-viewer output (text summary, CSV, standardized JSON) -> one profile.

The three format modules (`qnn_viewer_text`, `qnn_viewer_csv`, `qnn_viewer_json`) only read
their format into a `ViewerReport`; this module turns reports into the schema: per-op device
cycles (the median over the inferences when there are several) attributed to blocks, and the
whole-model latency from the per-inference `QNN (execute) time` (qnn-net-run's `NetRun` when
the backend did not report it). A block's device time is then its share of the cycles times
that latency (`schema.op_times`).

Per-op profiling inflates end-to-end time, so `qnn-net-run` measures latency at `basic` level
and per-op cycles at `detailed` in a separate run; `viewer_profile` takes both reports. A
single imported file supplies both, and the profile's note says so when it was a detailed run.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

from ... import __version__
from ...core.errors import ProfileError
from ...core.versions import parse_qnn_version
from ...htp.record import OP_TRACE, read_op_trace
from ...measure.attribution import attribute_ops
from ...measure.schema import (
    ComputeUnit,
    LatencyBasis,
    LatencySource,
    LatencySummary,
    OpRecord,
    Profile,
    Provenance,
    TargetInfo,
    ToolchainInfo,
)
from ...model.variants import get_variant
from ...pipeline.artifacts import read_manifest
from ..emulator import _fallback_type, onnx_node_tensors
from ..qnn_viewer import NETRUN, QNN_EXECUTE, ViewerReport, split_op_identifier
from . import ImportContext

log = logging.getLogger(__name__)

NO_PER_OP_ROWS = "no per-op rows in the file"
UNKNOWN_DEVICE = "unknown phone (qnn-profile-viewer output imported without --device)"
_LATENCY_EVENTS = (QNN_EXECUTE, NETRUN)  # preferred first: the backend's graph execute, RPC included


def _latency(report: ViewerReport, where: str) -> tuple[LatencySummary, str]:
    """The whole-model latency and the sentence saying what it is."""
    if report.executions:
        for event in _LATENCY_EVENTS:
            runs = [e.time_us(event) for e in report.executions]
            if all(r is not None for r in runs):
                runs_us = [float(r) for r in runs]  # type: ignore[arg-type]
                if min(runs_us) <= 0:
                    raise ProfileError(f"{where}: an inference's `{event}` is {min(runs_us):g} us; "
                                       "a measured latency is above 0.", hint="Pass the file as QNN wrote it.")
                return LatencySummary.of_runs(runs_us), f"latency: `{event}` of each of {len(runs_us)} inferences"
        raise ProfileError(f"{where}: an inference has neither `{QNN_EXECUTE}` nor `{NETRUN}`.")
    avg = report.stats.get("average")
    for event in _LATENCY_EVENTS:
        value = avg.time_us(event) if avg else None
        if value is not None:
            if value <= 0:
                raise ProfileError(f"{where}: the average `{event}` is {value:g} us; a measured latency is above 0.",
                                   hint="Pass the file as QNN wrote it.")
            lo, hi = (report.stats[k].time_us(event) if k in report.stats else None for k in ("min", "max"))
            summary = LatencySummary(
                min_us=value, median_us=value, run_count=1, basis=LatencyBasis.VIEWER_AVERAGE
            )
            spread = f" (the summary's Min {lo:g} us, Max {hi:g} us)" if lo is not None and hi is not None else ""
            return summary, f"latency: `{event}` of the text summary's Execute Stats (Average){spread}; it does not say how many runs"
    raise ProfileError(f"{where}: the Execute Stats (Average) block has neither `{QNN_EXECUTE}` nor `{NETRUN}`.")


def _compiled(export_dir: Path) -> tuple[Path | None, str | None]:
    """The export's compile stage: QNN's framework op trace (HTP op -> ONNX nodes), if it
    wrote one, and the QNN version that built the context binary (`ep_sdk_version`)."""
    manifest = read_manifest(export_dir)
    compiled = manifest.stage("compile") if manifest else None
    if compiled is None:
        return None, None
    version = compiled.results.ep_sdk_version or compiled.results.qnn_version  # the CompileRecord
    if OP_TRACE not in compiled.outputs:
        return None, version
    path = manifest.artifact(export_dir, "compile", OP_TRACE)
    return (path if path.is_file() else None), version


def median_per_op(runs: Iterable[Iterable[tuple[str, float]]]) -> dict[str, float]:
    """Each op's median cycles over the runs ((op, cycles) per run), in the order ops first appear."""
    samples: dict[str, list[float]] = {}
    for run in runs:
        for op, cycles in run:
            samples.setdefault(op, []).append(cycles)
    return {op: statistics.median(values) for op, values in samples.items()}


def _ops(report: ViewerReport, ctx: ImportContext, trace_path: Path | None) -> tuple[list[OpRecord], int]:
    """Per-op cycles, the median over the inferences that carry them; (ops, inferences used)."""
    runs = report.op_executions
    if not runs:
        return [], 0
    cycles = median_per_op([(op.identifier, op.cycles) for op in run.ops] for run in runs)
    trace = {op.name: op for op in read_op_trace(trace_path)} if trace_path is not None else {}
    ops = []
    for ident, median in cycles.items():
        name, _ = split_op_identifier(ident)
        mapped = trace.get(name)
        is_io = name in ("Input", "Output")
        ops.append(
            OpRecord(
                name=name,
                op_type=name if is_io else ((mapped.qnn_type if mapped else None) or _fallback_type(name)),
                compute_unit=ComputeUnit.NPU,
                execution_cycles=median,
                onnx_nodes=list(mapped.sources) if mapped else [],
            )
        )
    graph = onnx_node_tensors(ctx.model_path)  # places renamed ops of a float graph
    return attribute_ops(ops, get_variant(ctx.model.variant), graph=graph), len(runs)


def viewer_profile(
    latency: ViewerReport,
    ops: ViewerReport | None,
    ctx: ImportContext,
    *,
    target: TargetInfo | None = None,
    where: str = "qnn-profile-viewer output",
    note: str = "",
    files: Sequence[Path] = (),
    qnn_version: str | None = None,
) -> Profile:
    """A `qnn-net-run` profile: latency from `latency`, per-op cycles from `ops` (default: the same report).

    The QNN version is `qnn_version` (the SDK that ran it), else what the files say, else `--qnn`.
    """
    ops_report = ops if ops is not None else latency
    summary, latency_words = _latency(latency, where)
    trace, compiled_with = _compiled(ctx.export_dir)
    records, op_runs = _ops(ops_report, ctx, trace)
    words = [latency_words]
    if records:
        words.append(f"per-op cycles: median of {op_runs} inference{'s' if op_runs != 1 else ''}")
        if ops is None:
            words.append("both from one detailed-level run, whose per-op profiling inflates the end-to-end time")
    elif ops_report.format == "text" and ops_report.skipped_op_lines:
        words.append(f"{ops_report.skipped_op_lines} per-op lines of the text summary not read (no public sample "
                     "documents their layout): import the CSV or the JSON for per-block figures")
    else:
        words.append(f"{NO_PER_OP_ROWS}: whole-model latency only, no per-block figures (profile with "
                     "qnn-net-run --profiling_level detailed for them)")
    if trace is not None:
        words.append(f"ops traced to ONNX nodes through {trace}")
    stated = qnn_version or latency.qnn_version or ops_report.qnn_version
    given = ctx.given_qnn()  # checked even where the files say the version: a typo is said, not dropped
    parsed = parse_qnn_version(stated or given)
    if stated and given and parsed is not None and not parse_qnn_version(given).names(parsed):
        # What ran is what the files say; a --qnn that disagrees is said, not silently dropped.
        conflict = f"--qnn {given} not used: the files say QNN {stated}"
        log.warning("%s.", conflict)
        words.append(conflict)
    ran_with = stated or given
    text = "; ".join(words) + "."
    if files:
        text += " Raw files: " + ", ".join(str(f) for f in files) + "."
    return Profile(
        source=LatencySource.QNN_NET_RUN,
        model=ctx.model,
        target=target or TargetInfo(device=ctx.device or UNKNOWN_DEVICE),
        toolchain=ToolchainInfo(qnn_version=parsed.short if parsed else None, runtime="qnn_context_binary",
                                ran_with=ran_with, compiled_with=compiled_with),
        latency=summary,
        ops=records,
        provenance=Provenance(tool=f"swiftformer-qnn {__version__}", note=(note + " " + text).strip()),
    )


def head(path: Path, size: int = 65536) -> str:
    """The start of a file, for sniffing (never the whole of a large file)."""
    try:
        with Path(path).open("rb") as f:
            return f.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""


def read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ProfileError(f"{path}: unreadable ({exc.strerror}).") from None
