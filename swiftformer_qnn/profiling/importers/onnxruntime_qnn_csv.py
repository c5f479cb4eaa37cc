"""onnxruntime-qnn's own profiling CSV (provider options `profiling_level=detailed`,
`profiling_file_path=X.csv`): what an Android or Windows-on-Snapdragon app running onnxruntime
with the QNN EP collects on a device, and what the x86 HTP emulator writes here.

One `NODE` row per HTP op (`<ONNX node name>:OpId_N (cycles)`, module-path names with
`_token_N` suffixes) in CYCLES, a ROOT `Accelerator (execute) time (cycles)` row opening each
run, and a ROOT `QNN (execute) time` in microseconds per run. Read by the one reader of that
format, `emulator.read_qnn_profile_csv`.

The file does not say where it ran: the same rows come from a phone and from the emulator, whose
cycles follow host time (hundreds of millions where a phone takes milliseconds). So the import
needs `--device`: a phone's name makes a device profile (latency: the median `QNN (execute)
time`; per-op cycles: the median over the runs), `--device emulator`, or the marker the
emulator leaves beside its raw files, makes an emulator profile (structure only, no latency).
"""

from __future__ import annotations

from pathlib import Path

from ... import __version__
from ...core.errors import ProfileError
from ...core.versions import parse_qnn_version
from ...measure.attribution import attribute_ops
from ...measure.schema import (
    LatencySource,
    LatencySummary,
    OpRecord,
    Profile,
    Provenance,
    TargetInfo,
    ToolchainInfo,
)
from ...model.variants import get_variant
from ..devices import EMULATOR_DEVICE, EMULATOR_NAMES
from ..emulator import NOT_LATENCY, made_by_emulator, onnx_node_tensors, read_qnn_profile_csv
from ..qnn_viewer import csv_flavour
from . import ImportContext
from .qnn_profile_viewer import _compiled, head, median_per_op

NAME = "onnxruntime-qnn profiling CSV"


def sniff(path: Path) -> bool:
    return csv_flavour(head(path)) == "onnxruntime-qnn"


def _median_ops(runs: list[list[OpRecord]]) -> list[OpRecord]:
    """Each op (by name, in the first run's order) with its median cycles over the runs."""
    first: dict[str, OpRecord] = {}
    for op in (op for run in runs for op in run):
        first.setdefault(op.name, op)
    medians = median_per_op([(op.name, op.execution_cycles or 0.0) for op in run] for run in runs)
    return [first[name].model_copy(update={"execution_cycles": cycles}) for name, cycles in medians.items()]


def load(path: Path, ctx: ImportContext) -> Profile:
    path = Path(path)
    emulated = made_by_emulator(path) or (ctx.device or "").strip().lower() in EMULATOR_NAMES
    if not emulated and ctx.device is None:
        raise ProfileError(
            f"{path}: an onnxruntime-qnn profiling CSV does not say where it ran (the x86 HTP emulator "
            "writes the same file).",
            hint="Pass --device with the phone it ran on (e.g. --device \"Samsung Galaxy S23\"), "
                 "or --device emulator for an emulator run.",
        )
    trace, compiled_with = _compiled(ctx.export_dir)
    read = read_qnn_profile_csv(path, trace)
    graph = onnx_node_tensors(ctx.model_path)
    ops = attribute_ops(_median_ops(read.runs), get_variant(ctx.model.variant), graph=graph)
    runs = len(read.runs)
    per_op = f"per-op cycles: median of {runs} run{'s' if runs != 1 else ''} ({len(ops)} HTP ops)"
    if trace is not None:
        per_op += f", traced to ONNX nodes through {trace}"
    ran_with = ctx.given_qnn()
    parsed = parse_qnn_version(ran_with)
    toolchain = ToolchainInfo(qnn_version=parsed.short if parsed else None, runtime="onnxruntime-qnn",
                              ran_with=ran_with, compiled_with=compiled_with)
    if emulated:
        why = "the emulator's marker lies beside it" if made_by_emulator(path) else "--device emulator"
        return Profile(
            source=LatencySource.EMULATOR,
            model=ctx.model,
            target=TargetInfo(device=EMULATOR_DEVICE),
            toolchain=toolchain,
            latency=None,
            ops=[op.model_copy(update={"execution_time_us": None}) for op in ops],
            provenance=Provenance(tool=f"swiftformer-qnn {__version__}",
                                  note=f"{NOT_LATENCY} Read as the emulator's ({why}); {per_op}. Raw file: {path}."),
        )
    times = [t for t in read.execute_us if t is not None]
    if not times:
        raise ProfileError(f"{path}: no `QNN (execute) time` row in microseconds: no whole-model latency to import.",
                           hint="Profile with profiling_level=basic or detailed and run the session at least once.")
    summary = LatencySummary.of_runs(times)
    note = (f"latency: `QNN (execute) time` of each of {len(times)} runs, measured with detailed per-op profiling "
            f"on, which inflates it; {per_op}. Raw file: {path}.")
    return Profile(
        source=LatencySource.ONNXRUNTIME_QNN,
        model=ctx.model,
        target=TargetInfo(device=ctx.device),
        toolchain=toolchain,
        latency=summary,
        ops=ops,
        provenance=Provenance(tool=f"swiftformer-qnn {__version__}", note=note),
    )
