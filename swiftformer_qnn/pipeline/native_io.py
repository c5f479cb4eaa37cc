"""`--io uint8-nhwc`: the compiled graph takes and gives its quantized tensors, channel-last.

A QDQ graph with float NCHW inputs makes the HTP quantize each input and convert it to its
channel-last tiled layout, and dequantize and transpose each output back. QNN's estimator
(issue 22) puts that boundary at 114 us of SwiftFormer-L1's 656 (the Quantize of the
1x3x224x224 image runs on one HVX thread, the NCHW -> NHWC Transpose pads 3 channels to a
32-channel tile) and at about half of the 1x96x64x64 encoder block's 330 us (its output
feature map is dequantized and transposed back too).

A caller who can feed the quantized tensor directly (a camera pipeline that writes uint8,
a model before this one on the HTP) skips that work: `native_io` rewrites the QDQ graph so
each input is the uint8 tensor its first QuantizeLinear would have made (same scale and zero
point), 4-D ones channel-last (NHWC), and each output is the uint8 tensor its last
DequantizeLinear would have read, 4-D ones channel-last. Values are the same integers the
float graph computes inside; only the conversions at the edges move to the caller, with the
scale and zero point each `IoTensor` states (the compile record keeps them, the export prints
them): x_q = clip(round(x / scale) + zero_point, 0, 255), x = (x_q - zero_point) * scale.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.onnx_graph import readers
from ..htp.record import IoTensor
from .requests import IoFormat

__all__ = ["IoFormat", "IoTensor", "native_io"]


def _scalar(model: onnx.ModelProto, name: str) -> float | int:
    init = next(i for i in model.graph.initializer if i.name == name)
    return numpy_helper.to_array(init).item()


def _quant_params(model: onnx.ModelProto, node: onnx.NodeProto) -> tuple[float, int, int]:
    """Scale, zero point and ONNX element type of a (De)QuantizeLinear with initializer parameters."""
    if len(node.input) < 3:
        raise ValueError(f"{node.name}: no zero point")
    init = next((i for i in model.graph.initializer if i.name == node.input[2]), None)
    if init is None or numpy_helper.to_array(init).size != 1:
        raise ValueError(f"{node.name}: per-channel or computed quantization at the graph's edge")
    return float(_scalar(model, node.input[1])), int(_scalar(model, node.input[2])), init.data_type


def _uint8_edge(model: onnx.ModelProto, node: onnx.NodeProto, role: str, index: int) -> IoTensor:
    """The graph's `index`-th input or output, whose (De)QuantizeLinear `node` moves to the caller,
    declared as the caller's uint8 tensor (4-D ones channel-last) in place, and said as an IoTensor."""
    edges = model.graph.input if role == "input" else model.graph.output
    edge = edges[index]
    scale, zero_point, elem = _quant_params(model, node)
    if elem != TensorProto.UINT8:
        raise ValueError(f"{role} {edge.name} is quantized to {TensorProto.DataType.Name(elem)}, not uint8 (use w8a8)")
    dims = [d.dim_value for d in edge.type.tensor_type.shape.dim]
    nhwc = len(dims) == 4
    shape = [dims[0], dims[2], dims[3], dims[1]] if nhwc else dims
    edges.remove(edge)
    edges.insert(index, helper.make_tensor_value_info(edge.name, TensorProto.UINT8, shape))
    return IoTensor(name=edge.name, role=role, shape=shape, nhwc=nhwc, scale=scale, zero_point=zero_point)


def native_io(model: onnx.ModelProto) -> list[IoTensor]:
    """Rewrite `model` (a QDQ graph, in place) to uint8 inputs and outputs, 4-D ones NHWC.

    Each graph input must feed exactly one QuantizeLinear, and each graph output come from a
    DequantizeLinear, with per-tensor uint8 parameters (what the QNN quantizer writes); a
    ValueError names what does not. The transposes added at the edges act on the quantized
    tensors; onnxruntime's layout transformer cancels them against the NHWC layout the HTP
    runs in, so the compiled graph has neither a Quantize nor a Transpose at its edges."""
    g = model.graph
    consumers = readers(g)
    producers = {o: n for n in g.node for o in n.output}
    spec: list[IoTensor] = []
    for index, name in enumerate([vi.name for vi in g.input]):
        users = consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != "QuantizeLinear":
            raise ValueError(f"input {name} does not feed exactly one QuantizeLinear")
        quantize = users[0]
        spec.append(_uint8_edge(model, quantize, "input", index))
        quantized = quantize.output[0]
        g.node.remove(quantize)
        if spec[-1].nhwc:  # the caller's NHWC uint8 -> the NCHW uint8 tensor the Quantize made
            g.node.insert(0, helper.make_node("Transpose", [name], [quantized], perm=[0, 3, 1, 2],
                                              name=f"{name}_from_nhwc"))
        else:
            for user in consumers.get(quantized, []):
                user.input[:] = [name if i == quantized else i for i in user.input]
    for index, name in enumerate([vo.name for vo in g.output]):
        dequantize = producers.get(name)
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            raise ValueError(f"output {name} does not come from a DequantizeLinear")
        spec.append(_uint8_edge(model, dequantize, "output", index))
        quantized = dequantize.input[0]
        if len(consumers.get(name, [])) == 0:
            g.node.remove(dequantize)
        else:
            raise ValueError(f"output {name} is also read inside the graph")
        if spec[-1].nhwc:
            g.node.append(helper.make_node("Transpose", [quantized], [name], perm=[0, 2, 3, 1],
                                           name=f"{name}_to_nhwc"))
        else:  # the quantized tensor itself becomes the output
            producer = producers[quantized]
            producer.output[:] = [name if o == quantized else o for o in producer.output]
            for user in consumers.get(quantized, []):
                user.input[:] = [name if i == quantized else i for i in user.input]
    onnx.checker.check_model(model)
    return spec
