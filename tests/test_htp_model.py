"""The HTP-ready form computes the upstream model's function, and compiles to the graph it promises.

References are the upstream-form PyTorch model (`swiftformer_qnn.model.swiftformer`) with realistic weights
(layer scales 0.1-1, real BN statistics); compiled figures come from QNN's own op trace.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from checkpoints import make_checkpoint, realistic_model

from swiftformer_qnn.core.errors import UsageError
from swiftformer_qnn.measure.agreement import run_cpu
from swiftformer_qnn.measure.attribution import attribute_op
from swiftformer_qnn.model.htp_form import to_htp_form
from swiftformer_qnn.model.swiftformer import AttentionForm
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
from swiftformer_qnn.pipeline.onnx_export import export_onnx, simplify_onnx
from swiftformer_qnn.pipeline.validate import torch_outputs

# |onnx - torch| relative to the largest |torch output| (the bound for the HTP form).
MAX_RELATIVE_DIFF = 1e-5
SMALL = dict(calibration_count=8, heldout_count=4)


def _inputs(shape: tuple[int, ...], n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape[1:]), dtype=np.float32)


def _relative_diff(reference: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(got - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("form", list(AttentionForm))
@pytest.mark.parametrize("variant", ["xs", "s", "l1", "l3", "encoder"])
def test_htp_form_computes_the_upstream_function_in_pytorch(variant, form):
    model = realistic_model(variant, form=form)
    shape = get_variant(variant).input_shape(64 if variant != "encoder" else 32)
    x = torch.from_numpy(_inputs(shape))
    with torch.no_grad():
        ref, got = model(x), to_htp_form(model, shape)(x)
    assert _relative_diff(ref.numpy(), got.numpy()) <= MAX_RELATIVE_DIFF


@pytest.mark.parametrize("variant", ["xs", "s", "l1", "l3", "encoder"])
def test_htp_onnx_matches_the_upstream_pytorch_model(variant, tmp_path):
    """The simplified ONNX of the HTP form, on ONNX Runtime, against PyTorch's upstream form."""
    v = get_variant(variant)
    shape = v.input_shape(64)
    model = realistic_model(variant)
    export_onnx(to_htp_form(model, shape), shape, tmp_path / "m.onnx", is_encoder_block=v.is_encoder_block)
    simplify_onnx(tmp_path / "m.onnx", tmp_path / "m.sim.onnx")
    x = _inputs(shape)
    assert _relative_diff(torch_outputs(model, x), run_cpu(tmp_path / "m.sim.onnx", x)) <= MAX_RELATIVE_DIFF


def test_htp_onnx_has_no_token_reshapes_and_keeps_module_paths(tmp_path):
    import onnx

    v = get_variant("xs")
    export_onnx(to_htp_form(realistic_model(v), v.input_shape(64)), v.input_shape(64), tmp_path / "m.onnx",
                is_encoder_block=False)
    simplify_onnx(tmp_path / "m.onnx", tmp_path / "m.sim.onnx")
    nodes = onnx.load(str(tmp_path / "m.sim.onnx")).graph.node
    ops = {n.op_type for n in nodes}
    assert not ops & {"Reshape", "MatMul", "ReduceL2", "Div", "Sqrt", "Flatten"}
    # Per SwiftFormerEncoder: query and key L2Norms, one InstanceNormalization over the tokens
    # (its +-logits from one transposed convolution).
    assert sum(n.op_type == "LpNormalization" for n in nodes) == 2 * 4
    assert sum(n.op_type == "InstanceNormalization" for n in nodes) == sum(n.op_type == "ConvTranspose" for n in nodes) == 4
    # Every weight is an initializer: the quantizer quantizes a Constant node's output like an
    # activation, and QNN then runs the op (an InstanceNorm's scale, a conv's weight) in float.
    assert "Constant" not in ops
    assert sum(n.op_type == "Gemm" for n in nodes) == 1  # the head's two linears are one
    # Layer scales are folded: no Mul by a constant per-channel scale survives.
    attention = [n.name for n in nodes if "/attention/" in n.name]
    assert attention and all(n.startswith("/stage") and "_swiftformer_encoder/attention/" in n for n in attention)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_htp_form_leaves_the_upstream_model_untouched(training):
    # In train mode a forward pass would move the BN running statistics: the dry run that counts
    # tokens must not run on the caller's model.
    model = realistic_model("xs").train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    to_htp_form(model, (1, 3, 64, 64))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training is training
    with pytest.raises(TypeError):
        to_htp_form(torch.nn.Linear(2, 2), (1, 2))


def test_the_token_normalisation_is_built_for_one_map_size():
    model = realistic_model("encoder")
    htp = to_htp_form(model, (1, 96, 16, 16))
    with torch.no_grad(), pytest.raises(ValueError, match="built for 256 tokens, got a 8x8 map"):
        htp(torch.zeros(1, 96, 8, 8))


def test_unknown_graph_form_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="graph form"):
        run_export(ExportRequest(variant="xs", graph="fast", output_dir=tmp_path / "x"))


def test_a_checkpoint_loads_the_same_weights_into_both_forms(tmp_path):
    """One loader: both graph forms of an upstream checkpoint compute the checkpoint's model."""
    ckpt, model = make_checkpoint(tmp_path, "xs", "upstream", wrapper="model")
    outputs = {}
    for graph in ("htp", "faithful"):
        result = run_export(ExportRequest(variant="xs", resolution=64, weights=ckpt, graph=graph, until=Until.ONNX,
                                          output_dir=tmp_path / graph, **SMALL))
        assert result.manifest.request.graph == graph
        assert result.manifest.stage("export").results.graph == graph
        heldout = np.load(result.directory / "heldout.npy")
        outputs[graph] = (run_cpu(result.artifact("simplify", "model.sim.onnx"), heldout), heldout)
    reference = torch_outputs(model, outputs["htp"][1])
    for graph, (got, _) in outputs.items():
        assert _relative_diff(reference, got) <= (MAX_RELATIVE_DIFF if graph == "htp" else 1e-3), graph


# --- compiled: both forms of XS with realistic weights, small resolution -------------------------


@pytest.fixture(scope="module")
def xs_both_forms(tmp_path_factory):
    out = tmp_path_factory.mktemp("xs-forms")
    ckpt, _ = make_checkpoint(out, "xs", "upstream")
    return {graph: run_export(ExportRequest(variant="xs", resolution=64, weights=ckpt, graph=graph,
                                            output_dir=out / graph, **SMALL))
            for graph in ("htp", "faithful")}


def _htp_vs_fp32_sqnr(result) -> float:
    """The compiled binary on the HTP emulator against the float ONNX, over the held-out inputs."""
    import onnx

    from swiftformer_qnn.htp.session import HtpTarget, htp_session
    from swiftformer_qnn.measure.agreement import compare_outputs

    heldout = np.load(result.artifact("inputs", "heldout.npy"))
    fp32 = np.load(result.artifact("validate", "heldout_fp32.npy"))
    name = onnx.load(str(result.artifact("quantize", "model.qdq.onnx")), load_external_data=False).graph.input[0].name
    session = htp_session(result.artifact("compile", "model.ctx.onnx"), HtpTarget())
    emulated = np.concatenate([session.run(None, {name: heldout[i : i + 1]})[0] for i in range(len(heldout))])
    sqnr = compare_outputs(fp32, emulated, classify=True)["sqnr_db"]
    print(f"{result.manifest.request.graph}: HTP-vs-fp32 SQNR {sqnr:.2f} dB")
    return sqnr


def test_htp_graph_is_no_less_accurate_on_the_htp_than_the_faithful_one(xs_both_forms):
    """Realistic weights, w8a8: the HTP-ready graph (BNs folded away) against the faithful one
    (BNs kept, the overflow guard rewriting any it predicts to flip)."""
    sqnr = {g: _htp_vs_fp32_sqnr(r) for g, r in xs_both_forms.items()}
    assert sqnr["htp"] >= sqnr["faithful"], sqnr


def test_htp_graph_cost_is_recorded_and_lower(xs_both_forms):
    records = {g: r.manifest.stage("compile").results for g, r in xs_both_forms.items()}
    htp, faithful = records["htp"].graph_cost, records["faithful"].graph_cost
    assert records["htp"].htp_op_count < records["faithful"].htp_op_count
    assert htp.float_islands == 0 < faithful.float_islands
    assert htp.layout_ops == htp.boundary_layout_ops <= 1 < faithful.layout_ops  # the image's NCHW -> NHWC only
    assert records["htp"].htp_op_types.get("Reshape", 0) == 0
    assert not {"ElementWiseSquareRoot", "ElementWiseDivide"} & set(records["htp"].htp_op_types)
    r = records["htp"]
    assert r.context_binary_bytes == (xs_both_forms["htp"].directory / "model.ctx_qnn.bin").stat().st_size
    assert sum(r.htp_op_types.values()) == r.htp_op_count


def test_every_htp_op_of_the_htp_graph_is_attributed_to_its_block(xs_both_forms):
    result = xs_both_forms["htp"]
    trace = json.loads((result.directory / "qnn_op_trace.json").read_text())
    ops = [m for g in trace["subgraph_traces"] for m in g["op_mappings"]]
    parts: dict[str, set] = {}
    unattributed = []
    for m in ops:
        sources = [s["name"] for s in m["sources"] if s["type"] == "OP"]
        att = attribute_op(m["dst_name"], sources, "xs")
        if att.block == "other":
            unattributed.append(m["dst_qnn_op_type"])
        if att.kind == "swiftformer_encoder" and att.part:
            parts.setdefault(att.block, set()).add(att.part)
    # Only the image input's NCHW -> NHWC Transpose names no module (in the faithful graph too).
    assert unattributed == ["Transpose"]
    # Each of XS's four SwiftFormerEncoders shows its three parts.
    assert len(parts) == 4 and all(p == {"local_representation", "attention", "mlp"} for p in parts.values())


# --- full size (slow): SwiftFormer-L1 at 224, realistic weights ----------------------------------


@pytest.fixture(scope="module")
def l1_both_forms(tmp_path_factory):
    out = tmp_path_factory.mktemp("l1-forms")
    ckpt, _ = make_checkpoint(out, "l1", "upstream")
    return {graph: run_export(ExportRequest(variant="l1", weights=ckpt, graph=graph, heldout_count=4,
                                            output_dir=out / graph))
            for graph in ("htp", "faithful")}


@pytest.mark.slow
def test_l1_htp_graph_on_the_htp(l1_both_forms):
    """The issue's structural targets (at most 195 HTP ops, no BatchNorm, no float island, at
    most 4 layout ops) and SQNR no lower than the faithful graph's."""
    htp = l1_both_forms["htp"].manifest.stage("compile").results
    faithful = l1_both_forms["faithful"].manifest.stage("compile").results
    assert htp.htp_op_types.get("Batchnorm", 0) == 0 < faithful.htp_op_types.get("Batchnorm", 0)
    assert htp.graph_cost.float_islands == 0 and htp.graph_cost.layout_ops == htp.graph_cost.boundary_layout_ops <= 1
    assert htp.htp_op_count <= 195 < faithful.htp_op_count
    sqnr = {g: _htp_vs_fp32_sqnr(r) for g, r in l1_both_forms.items()}
    assert sqnr["htp"] >= sqnr["faithful"], sqnr
