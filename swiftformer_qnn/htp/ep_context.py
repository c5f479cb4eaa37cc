"""Read the nodes of an EP-context ONNX (`model.ctx.onnx`) with protobuf alone.

A toolchain worker reads this tiny file once per compile. Importing `onnx` for it would cost
the worker ~0.5 s (onnx imports ml_dtypes), a sixth of an L1 compile-and-run, paid by every
QNN version of a sweep. protobuf is already there (onnxruntime depends on it), and a message
schema holding only the fields read here parses the real ONNX file: protobuf skips the rest.
Field numbers are onnx.proto's (ModelProto.graph = 7, GraphProto.node = 1, NodeProto.op_type = 4,
NodeProto.attribute = 5, AttributeProto.name = 1, AttributeProto.s = 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

_PACKAGE = "swiftformer_qnn.ep_context"


@dataclass(frozen=True)
class GraphNode:
    op_type: str
    strings: dict[str, str]  # the node's string attributes (other attribute kinds read as "")


@cache
def _model_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    schema = descriptor_pb2.FileDescriptorProto(name="swiftformer_qnn/ep_context.proto", package=_PACKAGE,
                                                syntax="proto2")
    messages = {
        "Attribute": (("name", 1, f.TYPE_STRING, None), ("s", 4, f.TYPE_BYTES, None)),
        "Node": (("op_type", 4, f.TYPE_STRING, None), ("attribute", 5, f.TYPE_MESSAGE, "Attribute")),
        "Graph": (("node", 1, f.TYPE_MESSAGE, "Node"),),
        "Model": (("graph", 7, f.TYPE_MESSAGE, "Graph"),),
    }
    repeated = {("Node", "attribute"), ("Graph", "node")}
    for message, fields in messages.items():
        m = schema.message_type.add(name=message)
        for name, number, kind, of in fields:
            field = m.field.add(name=name, number=number, type=kind,
                                label=f.LABEL_REPEATED if (message, name) in repeated else f.LABEL_OPTIONAL)
            if of:
                field.type_name = f".{_PACKAGE}.{of}"
    pool = descriptor_pool.DescriptorPool()  # a private pool: no clash with onnx's own schema
    pool.Add(schema)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Model"))


def graph_nodes(path: Path) -> list[GraphNode]:
    """The nodes of the ONNX model at `path`, in order (op type and string attributes)."""
    model = _model_class().FromString(Path(path).read_bytes())
    return [
        GraphNode(n.op_type, {a.name: a.s.decode(errors="replace") for a in n.attribute}) for n in model.graph.node
    ]
