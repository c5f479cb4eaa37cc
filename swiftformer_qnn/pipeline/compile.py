"""Stage `compile`: QDQ (or float, for fp16) ONNX -> QNN context binary for the target SoC."""

from __future__ import annotations

from pathlib import Path

from ..compile_record import (
    COMPILE_RECORD,
    CONTEXT_BINARY,
    CONTEXT_ONNX,
    OP_TRACE,
    CompiledModel,
    CompileRecord,
)
from ..qnn import HtpTarget, compile_model

# What the compile stage keeps: the EP-context wrapper, the QNN context binary, QNN's
# framework op trace (HTP op -> ONNX nodes, which per-block attribution of profiles reads)
# and the compile record.
COMPILE_OUTPUTS = (CONTEXT_ONNX, CONTEXT_BINARY, OP_TRACE, COMPILE_RECORD)


def compile_stage(model: Path, out_dir: Path, target: HtpTarget, *, soc: str, subject: CompiledModel) -> CompileRecord:
    record = compile_model(model, out_dir, target, soc=soc, model=subject)
    if record.op_trace is None:  # the main environment's QNN always writes one; per-block attribution needs it
        raise RuntimeError(f"QNN {record.qnn_version} wrote no op trace ({OP_TRACE})")
    return record
