"""Reading an ONNX graph: its constants, one reader for every graph pass (the BN fold, the BN
guard, the localization), so an initializer and a `Constant` node are read alike; and which
nodes read each tensor."""

from __future__ import annotations

import onnx
from onnx import numpy_helper


def constant_array(initializer: onnx.TensorProto | None, producer: onnx.NodeProto | None):
    """The value of a constant tensor, given its initializer or the node producing it (a
    `Constant` with a `value` tensor); None for anything computed. The graph passes (BN fold,
    BN guard, localization) read weights, scales and zero points through this."""
    if initializer is not None:
        return numpy_helper.to_array(initializer)
    if (producer is not None and producer.op_type == "Constant" and producer.attribute
            and producer.attribute[0].name == "value"):
        return numpy_helper.to_array(producer.attribute[0].t)
    return None


def readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Per tensor name, the nodes that read it, in graph order."""
    found: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            found.setdefault(i, []).append(n)
    return found
