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
from .record import (
    COMPILE_RECORD,
    CONTEXT_BINARY,
    CONTEXT_ONNX,
    HTP_OUTPUTS,
    OP_TRACE,
    CompiledModel,
    CompileRecord,
    CompileSpec,
    traced_figures,
    write_compile_record,
)
from .session import HtpTarget, htp_session, onnxruntime_qnn_version, qnn_sdk_version
from .workers import take


def compile_key(target: HtpTarget, soc: str | None, subject: CompiledModel) -> dict:
    """What a compile's cache key names besides its input and toolchain: the target and what
    is compiled (the export's compile stage, `compile MODEL.onnx` and each version of a sweep)."""
    return {"soc": soc, "soc_model": target.soc_model, "htp_arch": target.htp_arch, "fp16": target.fp16,
            "graph_optimization_mode": target.graph_optimization_mode, "model": subject.model_dump()}


def compile_outputs(out_dir: Path) -> tuple[Path, ...]:
    """What a compile writes into `out_dir` (and removes again when it fails or is stopped)."""
    out_dir = Path(out_dir)
    return (out_dir / CONTEXT_ONNX, out_dir / CONTEXT_BINARY, out_dir / OP_TRACE, out_dir / COMPILE_RECORD)


def compile_model(spec: CompileSpec, *, then: Callable[[object], None] | None = None) -> CompileRecord:
    """The one compile, in this process: a (QDQ or, with fp16, float) ONNX -> QNN context binary
    for `spec.target`. Run it in a worker process (`compile_in_worker`) wherever a signal must
    be able to stop it: while QNN compiles, this process runs no Python and so no signal handler.

    Writes `model.ctx.onnx`, `model.ctx_qnn.bin`, QNN's op trace `qnn_op_trace.json` (where
    the release writes one) and `compile.json` (the returned record) into `spec.out_dir`, once:
    the op trace is written while compiling, so nothing is compiled twice. CPU fallback is
    disabled, so success means every node runs on the HTP. On failure nothing is left behind.
    `then(session)` gets the session that compiled, after `compile.json` is written (a
    cross-version worker runs its emulator check on it: the graph the binary holds, without
    loading that binary into a second session); what it raises propagates, the compile stays.
    With `spec.profile_csv` the compile itself is profiled (the estimator's outputs,
    `htp.estimate`); the CSV is complete once this returns (the session is gone).
    """
    model_path, out_dir, target = Path(spec.model), Path(spec.out_dir), spec.target
    out_dir.mkdir(parents=True, exist_ok=True)
    written = compile_outputs(out_dir)
    context_onnx, binary, trace, _ = written
    for stale in written:  # onnxruntime refuses to overwrite a context; a stale trace would mislead
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        session = htp_session(model_path, target, context_out=context_onnx, op_trace=True, op_trace_dir=out_dir,
                              profile_csv=spec.profile_csv, profiling_level=spec.profiling_level)
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
            soc=spec.soc if spec.soc is not None else _soc_name(target.soc_model),
            soc_model=target.soc_model,
            htp_arch=target.htp_arch,
            fp16=target.fp16,
            graph_optimization_mode=target.graph_optimization_mode,
            model=spec.subject,
            model_sha256=sha256_file(model_path),
            compile_s=round(compile_s, 3),
            context_binary_bytes=binary.stat().st_size,
            context_binary_sha256=sha256_file(binary),
            **(traced_figures(trace) if trace.is_file() else {}),
            bn_guard=spec.bn_guard,
            io=spec.io,
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


# --- the compile in a worker process of this environment ------------------------------------
# QNN compiles in native code, holding the GIL: a compile in this process (in any thread) keeps
# every signal handler from running until it ends (a graph declaring 1x4x100000x100000 compiled
# for over 5 minutes and ignored Ctrl-C and SIGTERM). A worker process is killed instead. Callers
# start its worker ahead (`htp.workers.start_ahead("compile")`) while earlier work runs, so the
# compile itself waits for no start-up.


def compile_in_worker(spec: CompileSpec, *, run_on: Path | None = None) -> CompileRecord:
    """`compile_model(spec)` in a worker process of this environment, which a signal stops:
    the wait is `core.interrupt.wait_child`, so SIGINT or SIGTERM kills the worker at once and
    removes what it wrote. A known error in the worker is raised here as itself.

    `run_on`: an .npz of one feed per graph input; the session that compiled then runs the graph
    once on the HTP emulator, and every output's value goes to `spec.out_dir / HTP_OUTPUTS`
    (a graph compiled to be run once, e.g. with taps: no second process, no context reload)."""
    from ..core.interrupt import wait_child
    from .record import CompileJob, read_compile_record

    worker = take("compile")
    written = compile_outputs(spec.out_dir)
    if run_on is not None:
        written += (Path(spec.out_dir) / HTP_OUTPUTS,)
    try:
        worker.send(CompileJob(spec=spec, inputs_npz=run_on).model_dump_json())
        result = worker.outcome(wait_child(worker.proc), f"compile of {Path(spec.model).name}")
        if "emulator_error" in result:
            raise ToolchainError(f"The HTP emulator could not run {Path(spec.model).name} once compiled: "
                                 f"{result['emulator_error']}")
        return read_compile_record(Path(spec.out_dir) / COMPILE_RECORD)
    except BaseException:
        for leftover in written:
            leftover.unlink(missing_ok=True)
        raise
    finally:
        worker.close()


def _soc_name(soc_model: int) -> str | None:
    return next((s.name for s in SOCS.values() if s.soc_model == soc_model), None)
