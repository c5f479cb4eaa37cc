"""Stage `compile`: QDQ (or float, for fp16) ONNX -> QNN context binary for the target SoC."""

from __future__ import annotations

import json
from pathlib import Path

from ..graph_cost import graph_cost
from ..qnn import OP_TRACE_FILE, HtpTarget, compile_context_binary

# What the compile stage writes: the EP-context wrapper, the QNN context binary, and QNN's
# framework op trace (HTP op -> ONNX nodes), which per-block attribution of profiles reads.
COMPILE_OUTPUTS = ("model.ctx.onnx", "model.ctx_qnn.bin", "qnn_op_trace.json")


def compile_stage(model: Path, out_dir: Path, target: HtpTarget) -> dict:
    compiled = compile_context_binary(model, out_dir / "model.ctx.onnx", target, op_trace=True)
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
        "context_binary_bytes": binary_bytes,
        "compile_s": round(compiled.compile_s, 3),
        "graph_cost": cost.model_dump(),
    }
