"""Attribution of QNN ops to SwiftFormer blocks, on synthetic names (pure, no HTP)."""

from __future__ import annotations

import pytest

from swiftformer_qnn.core.errors import ProfileError, UsageError
from swiftformer_qnn.measure.attribution import (
    NodeTensors,
    attribute_op,
    attribute_ops,
    model_blocks,
    unattributed_share,
)
from swiftformer_qnn.measure.schema import (
    Attribution,
    LatencySource,
    ModelInfo,
    OpRecord,
    Profile,
    TargetInfo,
    ToolchainInfo,
    block_times,
)
from swiftformer_qnn.model.swiftformer import build_model
from swiftformer_qnn.model.variants import VARIANTS, get_variant

L1 = get_variant("l1")
XS = get_variant("xs")
ENC = get_variant("encoder")


def expected_from_module_path(path: str) -> tuple[str, str | None]:
    """(block, part) read off a dotted module path the plain way, independently of the regexes."""
    parts = path.split(".")
    if parts[0] in ("stem", "head"):
        return parts[0], None
    if parts[0] == "swiftformer_encoder":
        rest = parts[1:]
        block = "encoder"
    else:
        stage, sub, rest = parts[0], parts[1], parts[2:]
        if sub == "downsample":
            return f"{stage}.downsample", None
        block = f"{stage}.{sub.split('_', 1)[0]}"
        if "swiftformer_encoder" not in sub:
            return block, None
    branch = {"attention_scale": "attention", "mlp_scale": "mlp"}.get(rest[0], rest[0]) if rest else None
    return block, branch if branch in ("local_representation", "attention", "mlp") else None


def module_paths(variant):
    import torch

    with torch.device("meta"):  # names only: skip allocating and initialising weights
        model = build_model(variant)
    paths = [n for n, _ in model.named_modules() if n and "." in n or n in ("stem", "head")]
    paths += [n for n, _ in model.named_parameters()]
    return sorted(set(paths))


def name_styles(path: str, op: str = "Conv") -> dict[str, str]:
    """One module path as the names QNN profiles and AI Hub payloads show."""
    slash = "/" + path.replace(".", "/")
    underscored = "_" + path.replace(".", "_")
    return {
        "onnx": f"{slash}/{op}",
        "qnn_profile": f"{slash}/{op}_token_42:OpId_317 (cycles)",
        "qdq_output": f"{slash}/{op}_output_0_QuantizeLinear",
        "qdq_input": f"{slash}/{op}_output_0_DequantizeLinear/duplicated_token_3",
        "aihub": f"{underscored}_{op}",
        "aihub_suffixed": f"{underscored}_{op}:0",
        "dotted": f"{path}.{op.lower()}",
        "parameter_dq": f"{path}_DequantizeLinear",
    }


@pytest.mark.parametrize("variant_name", ["l1", "xs", "encoder"])
def test_every_module_of_the_model_is_attributed_by_name_in_every_style(variant_name):
    variant = get_variant(variant_name)
    blocks = model_blocks(variant)
    seen = set()
    for path in module_paths(variant):
        block, part = expected_from_module_path(path)
        for style, name in name_styles(path).items():
            att = attribute_op(name, [], variant)
            assert (att.block, att.part, att.via) == (block, part, "name"), (style, name, att)
            assert att.kind == blocks[block]
        seen.add(block)
    # Every block of the variant appears in the model (names and model_blocks agree).
    assert seen == set(blocks)


def test_model_blocks_order_and_kinds():
    for variant in VARIANTS.values():
        blocks = model_blocks(variant)
        if variant.is_encoder_block:
            assert blocks == {"encoder": "swiftformer_encoder"}
            continue
        ids = list(blocks)
        assert ids[0] == "stem" and ids[-1] == "head"
        assert len(ids) == 2 + sum(variant.depths) + len(variant.depths) - 1
        for i, depth in enumerate(variant.depths):
            assert (f"stage{i}.downsample" in blocks) == (i > 0)
            kinds = [blocks[f"stage{i}.block{j}"] for j in range(depth)]
            assert kinds == ["conv_encoder"] * (depth - 1) + ["swiftformer_encoder"]
    assert list(model_blocks(L1))[:6] == [
        "stem", "stage0.block0", "stage0.block1", "stage0.block2", "stage0.block3", "stage1.downsample"
    ]


# Rows as the HTP emulator profiled SwiftFormer-XS (op name, ONNX Source Ops), trimmed.
def sources(text: str) -> list[str]:
    return text.split(";")


@pytest.mark.parametrize(
    ("name", "nodes", "block", "part"),
    [
        # Gemm renamed by QNN preprocessing: only the bias parameter names the module.
        (
            "Gemm_1",
            "_v_711_DequantizeLinear;onnx::MatMul_830_DequantizeLinear;"
            "stage0.block2_swiftformer_encoder.attention.to_query.bias_DequantizeLinear;Gemm_1;_v_969_QuantizeLinear",
            "stage0.block2",
            "attention",
        ),
        # F.normalize fused into LpNormalization: the tensor it writes names the module.
        (
            "LpNormalization_fused_ReduceL2_6",
            "/stage3/block3_swiftformer_encoder/attention/to_query/Add_output_0_DequantizeLinear;"
            "LpNormalization_fused_ReduceL2_6;/stage3/block3_swiftformer_encoder/attention/Div_output_0_QuantizeLinear",
            "stage3.block3",
            "attention",
        ),
        # The token reshape: only the activation it reads names a module (the block, no part).
        (
            "Reshape_0",
            "/stage0/block2_swiftformer_encoder/Transpose_output_0_DequantizeLinear;Reshape_0;_v_711_QuantizeLinear",
            "stage0.block2",
            None,
        ),
        # A reshape whose input is the attention's: deciding evidence is the activation read.
        (
            "Reshape_5",
            "/stage0/block2_swiftformer_encoder/attention/Mul_2_output_0_DequantizeLinear;Reshape_5;_v_977_QuantizeLinear",
            "stage0.block2",
            "attention",
        ),
        # The head's layout transpose.
        (
            "Transpose_token_710",
            "/head/norm/BatchNormalization_output_0_DequantizeLinear;Transpose_token_710;QuantizeLinear_token_713",
            "head",
            None,
        ),
        # The graph input's bare Quantize: the stem's input conversion.
        ("image_QuantizeLinear", "image_QuantizeLinear", "stem", None),
        # The graph output's bare Dequantize: the head's output conversion.
        ("logits_DequantizeLinear", "logits_DequantizeLinear", "head", None),
    ],
)
def test_renamed_ops_are_attributed_through_the_op_trace(name, nodes, block, part):
    att = attribute_op(f"{name}:OpId_134 (cycles)", sources(nodes), XS)
    assert att == Attribution(block=block, kind=model_blocks(XS)[block], part=part, via="op_trace")


# A float (fp16) graph as QNN preprocessing leaves it: renamed nodes, no Q/DQ nodes, and a
# trace that names only the nodes themselves. The model file says what they read and write.
FLOAT_GRAPH = {
    "Gemm_1": NodeTensors(
        written=("_v_969",),
        params=("onnx::MatMul_830", "stage0.block2_swiftformer_encoder.attention.to_query.bias"),
        read=("_v_711",),
    ),
    "LpNormalization_fused_ReduceL2_0": NodeTensors(
        written=("/stage0/block2_swiftformer_encoder/attention/Div_output_0",),
        read=("/stage0/block2_swiftformer_encoder/attention/to_query/Add_output_0",),
    ),
    "Reshape_0": NodeTensors(
        written=("_v_711",), params=("_v_shape",), read=("/stage0/block2_swiftformer_encoder/Transpose_output_0",)
    ),
    "Reshape_5": NodeTensors(written=("_v_977",), read=("/stage0/block2_swiftformer_encoder/attention/Mul_2_output_0",)),
    "Gemm_6": NodeTensors(written=("_v_979",), params=("stage0.block2_swiftformer_encoder.attention.proj.bias",), read=("_v_977",)),
    "Reshape_7": NodeTensors(written=("/stage0/block2_swiftformer_encoder/attention/proj/Add_output_0",), read=("_v_979",)),
    "/stage1/block0_conv_encoder/Add": NodeTensors(
        written=("/stage1/block0_conv_encoder/Add_output_0",),
        read=("/stage1/downsample/norm/BatchNormalization_output_0", "/stage1/block0_conv_encoder/pwconv2/Conv_output_0"),
    ),
}


@pytest.mark.parametrize(
    ("name", "nodes", "block", "part"),
    [
        ("Gemm_1", ["Gemm_1"], "stage0.block2", "attention"),  # by its bias
        ("LpNormalization_fused_ReduceL2_0", ["LpNormalization_fused_ReduceL2_0"], "stage0.block2", "attention"),
        ("Reshape_0", ["Reshape_0"], "stage0.block2", None),  # by the activation it reads
        ("Gemm_6_2", ["Reshape_5", "Gemm_6", "Reshape_7"], "stage0.block2", "attention"),  # a fusion group
        ("Gemm_1:OpId_55 (cycles)", [], "stage0.block2", "attention"),  # no trace: the op's own node
    ],
)
def test_float_graph_ops_are_placed_by_the_tensors_of_their_nodes(name, nodes, block, part):
    assert attribute_op(name, nodes, XS) == Attribution(block="other", via="none")  # names alone say nothing
    att = attribute_op(name, nodes, XS, graph=FLOAT_GRAPH)
    assert att == Attribution(block=block, kind="swiftformer_encoder", part=part, via="op_trace")


def test_graph_tensors_rank_like_their_qdq_spellings():
    # The residual Add writes block0's tensor but reads the downsample's: what it writes decides.
    att = attribute_op("Add_fused_9", ["/stage1/block0_conv_encoder/Add"], XS, graph=FLOAT_GRAPH)
    assert att.block == "stage1.block0"
    # Graph knowledge never overrides the op's name, and unknown nodes add nothing.
    assert attribute_op("/stage0/block0_conv_encoder/Add", ["Gemm_1"], XS, graph=FLOAT_GRAPH).block == "stage0.block0"
    assert attribute_op("Transpose_token_3", ["Transpose_token_3"], XS, graph=FLOAT_GRAPH).block == "other"
    ops = [op("Gemm_1", 2, "Gemm_1"), op("Transpose", 1, "Transpose")]
    assert [o.attribution.block for o in attribute_ops(ops, XS, graph=FLOAT_GRAPH)] == ["stage0.block2", "other"]


def test_ops_nothing_names_are_other():
    for name, nodes in [
        ("Transpose_token_402", "DequantizeLinear;Transpose_token_402;QuantizeLinear_token_711"),
        ("Input OpId_2 (cycles)", ""),
        ("Output", ""),
        ("Reshape_3", "_v_1_DequantizeLinear;Reshape_3;_v_2_QuantizeLinear"),
        # Lookalike words are not module tokens.
        ("systemic/headline/stages/heads_Conv", "stemless;overhead_QuantizeLinear;stage_DequantizeLinear"),
    ]:
        att = attribute_op(name, [n for n in nodes.split(";") if n], XS)
        assert att == Attribution(block="other", via="none"), name


def test_the_op_name_wins_over_the_trace():
    # The residual Add reads the previous block's output; its own name decides.
    att = attribute_op(
        "/stage0/block0_conv_encoder/Add",
        sources(
            "/stem/Relu_1_output_0_DequantizeLinear/duplicated;"
            "/stage0/block0_conv_encoder/pwconv2/Conv_output_0_DequantizeLinear;"
            "/stage0/block0_conv_encoder/Add;/stage0/block0_conv_encoder/Add_output_0_QuantizeLinear"
        ),
        XS,
    )
    assert att == Attribution(block="stage0.block0", kind="conv_encoder", via="name")
    # An op named after an earlier block keeps that block even if the trace says later.
    att = attribute_op("/stage1/downsample/proj/Conv", ["/stage1/block0_conv_encoder/Add"], XS)
    assert att.block == "stage1.downsample"


def test_stronger_trace_evidence_decides():
    # Weakest first. The downsample runs before the others, so the tier, not model order, decides.
    tiers = [
        "/stage1/block0_conv_encoder/Add_output_0_DequantizeLinear",  # activation read
        "stage1.block1_conv_encoder.pwconv1.weight_DequantizeLinear",  # parameter
        "/stage1/block2_swiftformer_encoder/local_representation/Add_output_0_QuantizeLinear",  # written
        "/stage1/downsample/proj/Conv",  # fused compute node
    ]
    expected = ["stage1.block0", "stage1.block1", "stage1.block2", "stage1.downsample"]
    for k in range(len(tiers)):
        given = tiers[: k + 1]
        for order in (given, given[::-1]):
            att = attribute_op("Fused_7", order, XS)
            assert (att.block, att.via) == (expected[k], "op_trace"), (k, order)


def test_an_op_fused_across_blocks_goes_to_the_block_that_runs_last():
    nodes = [
        "/stage2/block4_conv_encoder/pwconv2/Conv",
        "/stage2/block5_swiftformer_encoder/local_representation/dwconv/Conv",
        "/stage2/block3_conv_encoder/Add",
    ]
    for order in (nodes, nodes[::-1]):
        att = attribute_op("Conv_fused_token_1", order, XS)
        assert att == Attribution(
            block="stage2.block5", kind="swiftformer_encoder", part="local_representation", via="op_trace"
        )
    # Same rule inside one name (a converter that concatenates fused names).
    assert attribute_op("_stem_conv2_Conv__stage0_block0_conv_encoder_dwconv_Conv", [], XS).block == "stage0.block0"
    assert attribute_op("_stage3_block3_swiftformer_encoder_Add_1__head_norm_BN", [], XS).block == "head"


def test_part_comes_from_the_branch_parameters_not_from_the_activations_read():
    # attention_scale * attention(x): the layer scale is the attention branch's.
    att = attribute_op(
        "/stage0/block2_swiftformer_encoder/Mul",
        sources(
            "stage0.block2_swiftformer_encoder.attention_scale_DequantizeLinear;"
            "/stage0/block2_swiftformer_encoder/Transpose_1_output_0_DequantizeLinear;"
            "/stage0/block2_swiftformer_encoder/Mul;/stage0/block2_swiftformer_encoder/Mul_output_0_QuantizeLinear"
        ),
        XS,
    )
    assert (att.block, att.part, att.via) == ("stage0.block2", "attention", "name")
    # x + attention branch: it reads the local representation's output but is the block's glue.
    att = attribute_op(
        "/stage0/block2_swiftformer_encoder/Add",
        sources(
            "/stage0/block2_swiftformer_encoder/local_representation/Add_output_0_DequantizeLinear/duplicated;"
            "/stage0/block2_swiftformer_encoder/Mul_output_0_DequantizeLinear;"
            "/stage0/block2_swiftformer_encoder/Add;/stage0/block2_swiftformer_encoder/Add_output_0_QuantizeLinear"
        ),
        XS,
    )
    assert (att.block, att.part) == ("stage0.block2", None)
    # Parts of another block never leak in.
    att = attribute_op("/stage1/block0_conv_encoder/dwconv/Conv", ["stage0.block2_swiftformer_encoder.mlp.fc2.bias_DequantizeLinear"], XS)
    assert att.part is None
    # An op spanning two branches of one block takes the later one.
    att = attribute_op("Fused_2", ["/stage0/block2_swiftformer_encoder/attention/final/Gemm", "/stage0/block2_swiftformer_encoder/mlp/norm/BatchNormalization"], XS)
    assert att.part == "mlp"


def test_the_standalone_encoder_variant():
    att = attribute_op("/swiftformer_encoder/attention/to_query/MatMul:OpId_3 (cycles)", [], ENC)
    assert att == Attribution(block="encoder", kind="swiftformer_encoder", part="attention", via="name")
    att = attribute_op("Gemm_1", ["swiftformer_encoder.attention.proj.bias_DequantizeLinear", "Gemm_1"], ENC)
    assert (att.block, att.part, att.via) == ("encoder", "attention", "op_trace")
    assert attribute_op("image_QuantizeLinear", ["image_QuantizeLinear"], ENC).block == "encoder"
    # The whole graph is the block: ops nothing names are still the encoder's, marked as such.
    att = attribute_op("Transpose_token_4", ["DequantizeLinear", "Transpose_token_4"], ENC)
    assert att == Attribution(block="encoder", kind="swiftformer_encoder", via="none")


@pytest.mark.parametrize(
    ("name", "variant"),
    [
        ("/stage3/block5_swiftformer_encoder/mlp/fc1/Conv", XS),  # XS stage 3 has 4 blocks
        ("/stage0/block0_swiftformer_encoder/attention/MatMul", L1),  # block 0 is a ConvEncoder
        ("/stage0/block3_conv_encoder/dwconv/Conv", L1),  # block 3 is L1's SwiftFormerEncoder
        ("/stage0/downsample/proj/Conv", L1),  # stage 0 has no downsample
        ("/stage4/block0_conv_encoder/Add", L1),  # four stages
        ("/swiftformer_encoder/mlp/fc1/Conv", L1),  # the standalone block's names
        ("/stage0/block0_conv_encoder/Add", ENC),
        ("/stem/conv1/Conv", ENC),
    ],
)
def test_names_of_another_variant_are_refused(name, variant):
    with pytest.raises(ProfileError, match="does not have"):
        attribute_op(name, [], variant)
    with pytest.raises(ProfileError):
        attribute_op("Gemm_9", [f"{name}_output_0_QuantizeLinear"], variant)


def test_two_digit_indices_and_case():
    l3 = get_variant("l3")
    assert attribute_op("/stage2/block10_conv_encoder/pwconv1/Conv", [], l3).block == "stage2.block10"
    assert attribute_op("/stage2/block11_swiftformer_encoder/mlp/fc1/Conv", [], l3).block == "stage2.block11"
    assert attribute_op("_STAGE2_BLOCK9_SWIFTFORMER_ENCODER_ATTENTION_W_G", [], L1) == Attribution(
        block="stage2.block9", kind="swiftformer_encoder", part="attention", via="name"
    )


def op(name: str, cycles: float | None, nodes: str = "") -> OpRecord:
    return OpRecord(name=name, op_type="X", execution_cycles=cycles, onnx_nodes=[n for n in nodes.split(";") if n])


def emulator_profile(ops: list[OpRecord]) -> Profile:
    return Profile(
        source=LatencySource.EMULATOR,
        model=ModelInfo(variant="xs", input_shape=[1, 3, 64, 64], precision="w8a8"),
        target=TargetInfo(device="HTP emulator (x86_64, onnxruntime-qnn)"),
        toolchain=ToolchainInfo(qnn_version="2.51.0"),
        ops=ops,
    )


def test_attribute_ops_returns_new_records_and_replaces_old_attributions():
    stale = op("/stem/conv1/Conv", 10).model_copy(update={"attribution": Attribution(block="head", kind="head")})
    ops = [stale, op("Gemm_1", 30, "stage0.block2_swiftformer_encoder.attention.to_query.bias_DequantizeLinear;Gemm_1")]
    out = attribute_ops(ops, XS)
    assert [o.attribution.block for o in out] == ["stem", "stage0.block2"]
    assert stale.attribution.block == "head"  # inputs untouched
    assert [o.name for o in out] == [o.name for o in ops] and [o.execution_cycles for o in out] == [10, 30]
    # Profiles name their variant (ModelInfo.variant); the name works as well as the Variant.
    assert attribute_ops(ops, "xs") == out
    with pytest.raises(UsageError):
        attribute_ops(ops, "xl")


def test_unattributed_share_and_block_times():
    ops = attribute_ops(
        [
            op("Input OpId_2", 5),
            op("image_QuantizeLinear", 15, "image_QuantizeLinear"),
            op("Transpose_token_402", 20, "DequantizeLinear;Transpose_token_402"),
            op("/stem/conv1/Conv", 40),
            op("/stage0/block2_swiftformer_encoder/attention/MatMul", 10),
            op("/stage0/block2_swiftformer_encoder/Add", 10),
            op("Reshape_0", 0, "/stage0/block2_swiftformer_encoder/Transpose_output_0_DequantizeLinear;Reshape_0"),
            op("never_timed", None),
        ],
        XS,
    )
    profile = emulator_profile(ops)
    assert unattributed_share(profile) == pytest.approx(25 / 100)
    times = block_times(profile)
    assert times["stem"].time == 55 and times["other"].time == 25 and times["other"].op_count == 3
    assert times["stage0.block2"].parts == {"attention": 10}
    assert times["stage0.block2"].op_count == 3
    # Ops without an attribution count as unattributed; an empty profile has nothing to lose.
    mixed = attribute_ops([op("/stem/conv1/Conv", 1)], XS) + [op("x", 3)]
    assert unattributed_share(emulator_profile(mixed)) == pytest.approx(0.75)
    assert unattributed_share(emulator_profile([])) == 0.0
