"""Stage `compile`: QDQ (or float, for fp16) ONNX -> QNN context binary for the target SoC."""

from __future__ import annotations

from pathlib import Path

import onnx

from ..core.atomic import write_text_atomic
from ..htp.bn_guard import protect
from ..htp.compile import compile_model
from ..htp.record import (
    COMPILE_RECORD,
    CONTEXT_BINARY,
    CONTEXT_ONNX,
    OP_TRACE,
    CompiledModel,
    CompileRecord,
    IoTensor,
)
from ..htp.session import HtpTarget
from .native_io import IoFormat, native_io

# What the compile stage keeps: the EP-context wrapper, the QNN context binary, QNN's
# framework op trace (HTP op -> ONNX nodes, which per-block attribution of profiles reads)
# and the compile record.
COMPILE_OUTPUTS = (CONTEXT_ONNX, CONTEXT_BINARY, OP_TRACE, COMPILE_RECORD)


def guarded_model(model: Path, work: Path, name: str = ".model.bn-guarded.onnx") -> tuple[Path, dict]:
    """The BN-overflow guard before any compile: the model itself when no BatchNorm would be
    corrupted, else a rewritten copy `work/name` (raises BnOverflowError if it cannot be rewritten)."""
    proto = onnx.load(str(model))
    report = protect(proto)
    if not report.findings:
        return model, report.as_dict()
    out = work / name  # compiled, then removed: the manifest says what changed
    onnx.save(proto, str(out))
    return out, report.as_dict()


def describe_guard(guard: dict) -> str | None:
    """One line on what the guard rewrote, or None."""
    done = [f for f in guard.get("corrupted_predicted", []) if f["action"] == "rewritten"]
    if not done:
        return None
    what = "; ".join(f"{f['node']} channel {','.join(map(str, f['channels']))}" for f in done)
    return (f"BN guard: onnxruntime-qnn would flip the bias sign of {len(done)} BatchNormalization(s) ({what}); "
            "their scale was re-quantized per channel before compiling (exact in float).")


def native_io_model(model: Path, work: Path, name: str = ".model.native-io.onnx") -> tuple[Path, list[IoTensor]]:
    """`model` rewritten to native uint8 NHWC inputs and outputs (`native_io`), as `work/name`."""
    proto = onnx.load(str(model))
    spec = native_io(proto)
    out = work / name
    onnx.save(proto, str(out))
    return out, spec


def compile_stage(model: Path, out_dir: Path, target: HtpTarget, *, soc: str, subject: CompiledModel,
                  io: IoFormat = IoFormat.FLOAT_NCHW) -> CompileRecord:
    # The BN-overflow guard first: never compile a graph known to be corrupted.
    source, guard = guarded_model(model, out_dir)
    spec = None
    try:
        if io is IoFormat.UINT8_NHWC:
            native, spec = native_io_model(source, out_dir)
            if source != model:
                source.unlink(missing_ok=True)
            source = native
        record = compile_model(source, out_dir, target, soc=soc, model=subject)
    finally:
        if source != model:
            source.unlink(missing_ok=True)
    if record.op_trace is None:  # the main environment's QNN always writes one; per-block attribution needs it
        raise RuntimeError(f"QNN {record.qnn_version} wrote no op trace ({OP_TRACE})")
    record = record.model_copy(update={"bn_guard": guard, "io": spec})
    write_text_atomic(out_dir / COMPILE_RECORD, record.model_dump_json(indent=2) + "\n")
    return record
