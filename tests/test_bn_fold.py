"""The BatchNorm-folding graph pass, on hand-built graphs (each placement of a BN the pass
handles) and on SwiftFormer-XS with realistic weights, checked by running both graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from swiftformer_qnn.measure.agreement import run_cpu
from swiftformer_qnn.pipeline.fold_bn import fold_batchnorms, fold_stage

RNG = np.random.default_rng(0)
C = 6


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def _bn_inits(prefix):
    # Trained-like statistics, far from the identity.
    return [_init(f"{prefix}.weight", 1 + 0.3 * RNG.standard_normal(C)), _init(f"{prefix}.bias", 0.5 * RNG.standard_normal(C)),
            _init(f"{prefix}.running_mean", RNG.standard_normal(C)), _init(f"{prefix}.running_var", 0.2 + RNG.random(C))]


def _bn(x, y, name="/blk/norm/BatchNormalization", prefix="blk.norm"):
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")],
                            [y], name=name, epsilon=1e-5)


def _model(nodes, inits, in_shape, out_shape):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _conv(x, y, name, cin, cout, k=1, pad=0, prefix=None):
    prefix = prefix or name
    inits = [_init(f"{prefix}.w", RNG.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)),
             _init(f"{prefix}.b", 0.1 * RNG.standard_normal(cout))]
    return helper.make_node("Conv", [x, f"{prefix}.w", f"{prefix}.b"], [y], name=name, kernel_shape=[k, k],
                            pads=[pad] * 4), inits


def _fold_and_compare(model, tmp_path, x_shape):
    src, dst = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(model, str(src))
    result = fold_stage(src, dst)
    x = RNG.standard_normal((2, *x_shape[1:])).astype(np.float32)
    want, got = run_cpu(src, x), run_cpu(dst, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    folded = onnx.load(str(dst))
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    return result, folded


def test_bn_after_a_conv_folds_into_that_conv(tmp_path):
    conv, inits = _conv("x", "c", "/blk/conv/Conv", 3, C, k=3, pad=1)
    model = _model([conv, _bn("c", "out")], inits + _bn_inits("blk.norm"), [1, 3, 8, 8], [1, C, 8, 8])
    result, folded = _fold_and_compare(model, tmp_path, [1, 3, 8, 8])
    assert result["folds"] == [{"batchnorm": "/blk/norm/BatchNormalization", "how": "into_producer_conv",
                                "into": ["/blk/conv/Conv"]}]
    assert [n.name for n in folded.graph.node] == ["/blk/conv/Conv"]
    assert result["nodes_before"] == 2 and result["nodes"] == 1


def test_mlp_norm_folds_into_the_following_pointwise_conv(tmp_path):
    # SwiftFormerEncoder's MLP: residual Add -> BN -> fc1 (1x1) -> Gelu -> fc2.
    add = helper.make_node("Add", ["x", "x"], ["a"], name="/blk/Add")
    fc1, i1 = _conv("n", "h", "/blk/mlp/fc1/Conv", C, 4 * C)
    gelu = helper.make_node("Gelu", ["h"], ["g"], name="/blk/mlp/act/Gelu")
    fc2, i2 = _conv("g", "out", "/blk/mlp/fc2/Conv", 4 * C, C)
    model = _model([add, _bn("a", "n", "/blk/mlp/norm/BatchNormalization", "blk.norm"), fc1, gelu, fc2],
                   i1 + i2 + _bn_inits("blk.norm"), [1, C, 5, 5], [1, C, 5, 5])
    model.opset_import[0].version = 20  # Gelu
    result, folded = _fold_and_compare(model, tmp_path, [1, C, 5, 5])
    assert result["folds"][0]["how"] == "into_consumer_conv" and result["folds"][0]["into"] == ["/blk/mlp/fc1/Conv"]
    assert [n.name for n in folded.graph.node] == ["/blk/Add", "/blk/mlp/fc1/Conv", "/blk/mlp/act/Gelu", "/blk/mlp/fc2/Conv"]


def test_head_bn_commutes_with_the_global_mean_into_both_linears(tmp_path):
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, C, -1])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-1])
    nodes = [_bn("x", "n", "/head/norm/BatchNormalization", "head.norm"),
             helper.make_node("Reshape", ["n", "shape"], ["r"], name="/head/Reshape"),
             helper.make_node("ReduceMean", ["r", "axes"], ["p"], name="/head/ReduceMean", keepdims=0)]
    inits = _bn_inits("head.norm")
    for name in ("fc", "dist_fc"):
        inits += [_init(f"head.{name}.weight", RNG.standard_normal((10, C))), _init(f"head.{name}.bias", RNG.standard_normal(10))]
        nodes.append(helper.make_node("Gemm", ["p", f"head.{name}.weight", f"head.{name}.bias"], [name], name=f"/head/{name}/Gemm", transB=1))
    nodes.append(helper.make_node("Add", ["fc", "dist_fc"], ["out"], name="/head/Add"))
    model = _model(nodes, inits, [1, C, 4, 4], [1, 10])
    model.opset_import[0].version = 18  # ReduceMean axes as an input
    model.graph.initializer.extend([shape, axes])
    result, _ = _fold_and_compare(model, tmp_path, [1, C, 4, 4])
    assert result["folds"] == [{"batchnorm": "/head/norm/BatchNormalization", "how": "into_gemm_through_mean",
                                "into": ["/head/fc/Gemm", "/head/dist_fc/Gemm"]}]


@pytest.mark.parametrize("after", ["relu", "padded_conv", "graph_output"])
def test_a_bn_with_nowhere_to_fold_becomes_a_depthwise_conv(tmp_path, after):
    if after == "relu":
        nodes, inits = [helper.make_node("Relu", ["n"], ["out"], name="/blk/Relu")], []
    elif after == "padded_conv":  # padding would see the BN's shift at the borders: not foldable
        conv, inits = _conv("n", "out", "/blk/conv/Conv", C, C, k=3, pad=1)
        nodes = [conv]
    else:
        nodes, inits = [], []
    bn_out = "out" if after == "graph_output" else "n"
    model = _model([helper.make_node("Relu", ["x"], ["a"], name="/blk/pre/Relu"), _bn("a", bn_out)] + nodes,
                   inits + _bn_inits("blk.norm"), [1, C, 6, 6], [1, C, 6, 6])
    result, folded = _fold_and_compare(model, tmp_path, [1, C, 6, 6])
    assert result["folds"][0]["how"] == "depthwise_conv"
    dw = next(n for n in folded.graph.node if n.name == "/blk/norm/Conv")  # the module path is kept
    assert dw.op_type == "Conv" and helper.get_attribute_value(next(a for a in dw.attribute if a.name == "group")) == C


def test_swiftformer_xs_folds_its_five_standalone_batchnorms_exactly(tmp_path):
    from swiftformer_qnn.model.swiftformer import build_model, realistic_init
    from swiftformer_qnn.model.variants import get_variant
    from swiftformer_qnn.pipeline.onnx_export import export_onnx, simplify_onnx
    from swiftformer_qnn.pipeline.validate import torch_outputs

    v = get_variant("xs")
    model = realistic_init(build_model(v), seed=1)
    export_onnx(model, v.input_shape(64), tmp_path / "m.onnx", is_encoder_block=False)
    simplify_onnx(tmp_path / "m.onnx", tmp_path / "s.onnx")
    report, folded = fold_batchnorms(onnx.load(str(tmp_path / "s.onnx")))
    # onnxsim folded the BNs that follow convs; what is left: 4 encoder mlp.norm and the head norm.
    assert [(f.batchnorm.split("/")[1], f.how) for f in report.folds] == [
        ("stage0", "into_consumer_conv"), ("stage1", "into_consumer_conv"), ("stage2", "into_consumer_conv"),
        ("stage3", "into_consumer_conv"), ("head", "into_gemm_through_mean")]
    assert report.nodes == report.nodes_before - 5
    onnx.save(folded, str(tmp_path / "f.onnx"))
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    want = torch_outputs(model, x)  # PyTorch, not the graph the pass started from
    np.testing.assert_allclose(run_cpu(tmp_path / "f.onnx", x), want, rtol=1e-3, atol=2e-4 * np.abs(want).max())
