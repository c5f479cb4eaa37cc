"""The one compile: a (QDQ or, with fp16, float) ONNX -> QNN context binary and its record.

Imports no onnx (the EP-context wrapper is read by `ep_context`): a toolchain's worker runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ..core.atomic import sha256_file
from ..core.errors import HtpUnsupportedError, ToolchainError
from ..core.targets import SOCS
from .ep_context import graph_nodes
from .graph_cost import graph_cost
from .record import (
    COMPILE_RECORD,
    CONTEXT_BINARY,
    CONTEXT_ONNX,
    OP_TRACE,
    CompiledModel,
    CompileRecord,
    write_compile_record,
)
from .session import HtpTarget, htp_session, onnxruntime_qnn_version, qnn_sdk_version


def compile_model(
    model_path: Path,
    out_dir: Path,
    target: HtpTarget,
    *,
    soc: str | None = None,
    model: CompiledModel | None = None,
    then: Callable[[object], None] | None = None,
    profile_csv: Path | None = None,
    profiling_level: str = "detailed",
) -> CompileRecord:
    """The one compile: a (QDQ or, with fp16, float) ONNX -> QNN context binary for `target`.

    Writes `model.ctx.onnx`, `model.ctx_qnn.bin`, QNN's op trace `qnn_op_trace.json` (where
    the release writes one) and `compile.json` (the returned record) into `out_dir`, once:
    the op trace is written while compiling, so nothing is compiled twice. CPU fallback is
    disabled, so success means every node runs on the HTP. On failure nothing is left behind.
    `then(session)` gets the session that compiled, after `compile.json` is written (a
    cross-version worker runs its emulator check on it: the graph the binary holds, without
    loading that binary into a second session); what it raises propagates, the compile stays.
    `profile_csv` profiles the compile itself at `profiling_level` (the estimator's outputs,
    `htp.estimate`); the CSV is complete once this returns (the session is gone).
    """
    model_path, out_dir = Path(model_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    context_onnx, binary, trace = out_dir / CONTEXT_ONNX, out_dir / CONTEXT_BINARY, out_dir / OP_TRACE
    written = (context_onnx, binary, trace, out_dir / COMPILE_RECORD)
    for stale in written:  # onnxruntime refuses to overwrite a context; a stale trace would mislead
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        session = htp_session(model_path, target, context_out=context_onnx, op_trace=True, op_trace_dir=out_dir,
                              profile_csv=profile_csv, profiling_level=profiling_level)
        compile_s = time.perf_counter() - started
        nodes = graph_nodes(context_onnx)
        ep_nodes = [n for n in nodes if n.op_type == "EPContext"]
        if not ep_nodes or len(ep_nodes) != len(nodes):
            raise HtpUnsupportedError(
                f"{context_onnx.name}: {len(nodes) - len(ep_nodes)} node(s) stayed outside the QNN context."
            )
        attrs = ep_nodes[0].strings
        cache = attrs.get("ep_cache_context", "")
        if cache != binary.name:
            # The EPContext node references the binary by this name; renaming it would break the pair.
            raise ToolchainError(f"onnxruntime-qnn named the context binary {cache!r}, expected {binary.name}.")
        import onnxruntime

        record = CompileRecord(
            qnn_version=qnn_sdk_version(),
            ep_sdk_version=attrs.get("ep_sdk_version"),
            onnxruntime=onnxruntime.__version__,
            onnxruntime_qnn=onnxruntime_qnn_version(),
            soc=soc if soc is not None else _soc_name(target.soc_model),
            soc_model=target.soc_model,
            htp_arch=target.htp_arch,
            fp16=target.fp16,
            graph_optimization_mode=target.graph_optimization_mode,
            model=model or CompiledModel(),
            model_sha256=sha256_file(model_path),
            compile_s=round(compile_s, 3),
            context_binary_bytes=binary.stat().st_size,
            context_binary_sha256=sha256_file(binary),
            **(_traced(trace, binary.stat().st_size) if trace.is_file() else {}),
        )
        write_compile_record(out_dir, record)
    except BaseException:
        for leftover in written:
            leftover.unlink(missing_ok=True)
        raise
    # The compile is done once its record is written: a check failing from here on is the
    # check's failure, and leaves the good compile in place.
    if then is not None:
        then(session)
    return record


def _soc_name(soc_model: int) -> str | None:
    return next((s.name for s in SOCS.values() if s.soc_model == soc_model), None)


def _traced(trace_path: Path, binary_bytes: int) -> dict:
    """The record's figures from QNN's op trace: HTP ops by type and the graph's cost."""
    import json

    cost = graph_cost(json.loads(Path(trace_path).read_text()), binary_bytes)
    return {"op_trace": Path(trace_path).name, "htp_op_count": cost.htp_op_count, "htp_op_types": cost.op_types,
            "graph_cost": cost}

