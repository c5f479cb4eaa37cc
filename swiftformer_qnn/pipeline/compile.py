"""Stage `compile`: QDQ (or float, for fp16) ONNX -> QNN context binary for the target SoC."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from ..graph_cost import graph_cost
from ..qnn import OP_TRACE_FILE, HtpTarget, compile_context_binary
from .bn_guard import protect

# What the compile stage writes: the EP-context wrapper, the QNN context binary, and QNN's
# framework op trace (HTP op -> ONNX nodes), which per-block attribution of profiles reads.
COMPILE_OUTPUTS = ("model.ctx.onnx", "model.ctx_qnn.bin", "qnn_op_trace.json")


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


def compile_stage(model: Path, out_dir: Path, target: HtpTarget) -> dict:
    source, guard = guarded_model(model, out_dir)
    try:
        compiled = compile_context_binary(source, out_dir / "model.ctx.onnx", target, op_trace=True)
    finally:
        if source != model:
            source.unlink(missing_ok=True)
    if compiled.context_binary != out_dir / "model.ctx_qnn.bin":
        # The EPContext node references the binary by this name; renaming it would break the pair.
        raise RuntimeError(f"unexpected context binary name {compiled.context_binary.name}")
    binary_bytes = (out_dir / "model.ctx_qnn.bin").stat().st_size
    # What the graph costs on the HTP (ops by type, layout ops, float islands), from QNN's op trace.
    cost = graph_cost(json.loads((out_dir / OP_TRACE_FILE).read_text()), binary_bytes)
    return {
        "qnn_sdk_version": compiled.qnn_sdk_version,
        "ep_sdk_version": compiled.ep_sdk_version,
        "soc_model": target.soc_model,
        "htp_arch": target.htp_arch,
        "fp16": target.fp16,
        "source_nodes": compiled.source_nodes,
        "htp_nodes": compiled.htp_nodes,
        "htp_fraction": compiled.htp_fraction,
        "htp_coverage_basis": "compiled with CPU fallback disabled: onnxruntime assigned every node to the QNN EP",
        **compiled.extra,  # htp_op_count, htp_op_types from QNN's op trace
        "bn_guard": guard,
        "context_binary_bytes": binary_bytes,
        "compile_s": round(compiled.compile_s, 3),
        "graph_cost": cost.model_dump(),
    }
