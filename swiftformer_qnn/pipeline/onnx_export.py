"""Stages `export` (PyTorch -> ONNX) and `simplify` (onnxsim)."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import onnx

# Opset 20 exports nn.GELU as a native `Gelu` node, which the QNN HTP accepts; below 20 it
# becomes an Erf pattern the HTP rejects (see the toolchain facts).
DEFAULT_OPSET = 20


def io_names(is_encoder_block: bool) -> tuple[str, str]:
    return ("features", "features_out") if is_encoder_block else ("image", "logits")


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def export_onnx(model, input_shape: tuple[int, ...], out: Path, *, is_encoder_block: bool, opset: int = DEFAULT_OPSET) -> dict:
    """Trace `model` at a fixed batch-1 shape. Node names keep module paths
    (`/stage2/block9_swiftformer_encoder/attention/...`), which per-block attribution reads."""
    import torch

    in_name, out_name = io_names(is_encoder_block)
    x = torch.zeros(input_shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        # dynamo=False: the TorchScript exporter names nodes after module paths; the dynamo
        # exporter's names do not say which block a node came from.
        torch.onnx.export(
            model, (x,), str(out), opset_version=opset, dynamo=False,
            input_names=[in_name], output_names=[out_name], do_constant_folding=True,
        )
    exported = onnx.load(str(out))
    return {"opset": opset, "nodes": len(exported.graph.node), "op_types": op_histogram(exported),
            "input": in_name, "output": out_name}


def simplify_onnx(src: Path, out: Path) -> dict:
    """onnxsim (constant folding, BN folding, shape inference), then drop its metadata_props:
    onnxruntime's `qnn_preprocess_model` raises a TypeError on models that carry them."""
    import onnxsim

    model = onnx.load(str(src))
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim could not verify the simplified model against the original")
    del simplified.metadata_props[:]
    onnx.save(simplified, str(out))
    return {"nodes_before": len(model.graph.node), "nodes": len(simplified.graph.node),
            "op_types": op_histogram(simplified)}
