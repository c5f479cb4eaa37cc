"""Stages `guard` and `compile`: QDQ (or float, for fp16) ONNX -> the graph safe to compile -> QNN
context binary for the target SoC."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

from ..core.cache import tool_versions
from ..htp.bn_guard import guarded_model
from ..htp.compile import compile_in_worker, compile_key
from ..htp.record import (
    COMPILE_RECORD,
    CONTEXT_BINARY,
    CONTEXT_ONNX,
    OP_TRACE,
    CompiledModel,
    CompileRecord,
    CompileSpec,
    IoTensor,
)
from ..htp.session import HtpTarget
from .native_io import IoFormat, native_io
from .stage_results import GuardResults

# The graph every compile of an export compiles, in the model's own I/O: the quantized graph after
# the BN guard (a copy where the guard changed nothing). Made once by the guard stage, it is what
# the compile and the estimate compile and what verify and diagnose run, none guarding again.
GUARDED_MODEL = "model.guarded.onnx"
GUARD_OUTPUTS = (GUARDED_MODEL,)
# What the compile stage keeps: the EP-context wrapper, the QNN context binary, QNN's framework op
# trace (HTP op -> ONNX nodes, which per-block attribution of profiles reads) and the compile record.
COMPILE_OUTPUTS = (CONTEXT_ONNX, CONTEXT_BINARY, OP_TRACE, COMPILE_RECORD)


def compile_options(target: HtpTarget, soc: str, subject: CompiledModel) -> dict:
    """The compile stage's options in its cache key (the export's stage and `compile MODEL.onnx`):
    the compile's key (`htp.compile.compile_key`) and the onnxruntime(-qnn) that compiles."""
    return compile_key(target, soc, subject) | tool_versions(("onnxruntime", "onnxruntime-qnn"))


def native_io_model(model: Path, work: Path, name: str = ".model.native-io.onnx") -> tuple[Path, list[IoTensor]]:
    """`model` rewritten to native uint8 NHWC inputs and outputs (`native_io`), as `work/name`."""
    proto = onnx.load(str(model))
    spec = native_io(proto)
    out = work / name
    onnx.save(proto, str(out))
    return out, spec


def guard_stage(model: Path, out_dir: Path) -> GuardResults:
    """The BatchNorm-overflow guard (`htp.bn_guard`) before any compile: `out_dir/model.guarded.onnx`
    is `model` with every BN the QNN EP would corrupt rewritten (BnOverflowError if one cannot be):
    never compile a graph known to be corrupted."""
    out_dir.mkdir(parents=True, exist_ok=True)
    guarded, guard = guarded_model(model, out_dir, name=GUARDED_MODEL)
    if guarded == model:
        shutil.copyfile(model, out_dir / GUARDED_MODEL)
    return GuardResults.model_validate(guard)


def compile_stage(guarded: Path, out_dir: Path, target: HtpTarget, *, soc: str, subject: CompiledModel,
                  guard: GuardResults, io: IoFormat = IoFormat.FLOAT_NCHW) -> CompileRecord:
    """The guard stage's graph (`guard`: what the guard found and did) compiled to a context binary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source, spec = guarded, None
    if io is IoFormat.UINT8_NHWC:
        source, spec = native_io_model(guarded, out_dir)
    try:
        # In a worker process: a signal stops it while QNN compiles (htp.compile.compile_in_worker).
        record = compile_in_worker(CompileSpec(model=source, out_dir=out_dir, target=target, soc=soc,
                                               subject=subject, bn_guard=guard.model_dump(), io=spec))
    finally:
        if spec is not None:
            source.unlink(missing_ok=True)
    if record.op_trace is None:  # the main environment's QNN always writes one; per-block attribution needs it
        raise RuntimeError(f"QNN {record.qnn_version} wrote no op trace ({OP_TRACE})")
    return record


def guard_and_compile(model: Path, out_dir: Path, target: HtpTarget, *, soc: str,
                      subject: CompiledModel) -> CompileRecord:
    """Both stages in one directory, where no export runs them (`compile MODEL.onnx`, a mixed-precision
    candidate): it keeps GUARD_OUTPUTS + COMPILE_OUTPUTS."""
    guard = guard_stage(model, out_dir)
    return compile_stage(out_dir / GUARDED_MODEL, out_dir, target, soc=soc, subject=subject, guard=guard)
