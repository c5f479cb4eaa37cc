"""Real HTP emulator profiles (onnxruntime-qnn): parsing QNN's CSV and attributing its ops."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest
from qdq_fixtures import input_name, make_float_model, make_qdq_model

from swiftformer_qnn.core.errors import ProfileError, ToolchainError, UsageError
from swiftformer_qnn.htp.session import HtpTarget, htp_session, qnn_sdk_version
from swiftformer_qnn.measure.attribution import model_blocks, unattributed_share
from swiftformer_qnn.measure.schema import ComputeUnit, LatencySource, ModelInfo, block_times, load_profile
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.profiling.emulator import (
    EMULATOR_DEVICE,
    OP_TRACE_JSON,
    PROFILE_CSV,
    made_by_emulator,
    parse_qnn_profile_csv,
    profile_on_emulator,
)

RESOLUTION = 64  # small enough for the default tier (one XS run takes a fraction of a second)
MAX_UNATTRIBUTED = 0.05


def feeds_for(variant, resolution):
    rng = np.random.default_rng(1)
    return {input_name(variant.name): rng.standard_normal(variant.input_shape(resolution)).astype(np.float32)}


def model_info(variant, resolution, precision="w8a8"):
    return ModelInfo(
        variant=variant.name,
        input_shape=list(variant.input_shape(resolution)),
        precision=precision,
        weights="realistic-random",
        opset=20,
    )


def emulate(model, variant, resolution, out_dir, cwd):
    """Profile with the working directory set to `cwd`, which QNN must leave untouched."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        return profile_on_emulator(
            model, feeds_for(variant, resolution), variant, model_info(variant, resolution), HtpTarget(), out_dir
        )
    finally:
        os.chdir(here)


@pytest.fixture(scope="session")
def xs_qdq(tmp_path_factory) -> Path:
    return make_qdq_model("xs", RESOLUTION, tmp_path_factory.mktemp("xs_qdq"))


@pytest.fixture(scope="session")
def xs_run(xs_qdq, tmp_path_factory):
    out, cwd = tmp_path_factory.mktemp("xs_profile"), tmp_path_factory.mktemp("cwd")
    return emulate(xs_qdq, get_variant("xs"), RESOLUTION, out, cwd), out, cwd


def execute_total_cycles(csv_path: Path) -> list[float]:
    with csv_path.open(newline="") as f:
        return [
            float(r["Time"]) for r in csv.DictReader(f) if r["Event Identifier"] == "Accelerator (execute) time (cycles)"
        ]


def test_emulator_profile_is_labelled_as_cycles_not_latency(xs_run, tmp_path):
    profile, out, _ = xs_run
    assert profile.source is LatencySource.EMULATOR and not profile.is_device_latency
    assert profile.latency is None
    assert profile.target.device == EMULATOR_DEVICE
    assert (profile.target.soc_model, profile.target.htp_arch, profile.target.chipset) == (
        43, 73, "qualcomm-snapdragon-8gen2"
    )
    assert profile.toolchain.qnn_version == qnn_sdk_version()
    assert profile.toolchain.runtime == "onnx"
    assert "NOT device latency" in profile.provenance.note
    assert all(op.execution_cycles is not None and op.execution_time_us is None for op in profile.ops)
    assert {op.compute_unit for op in profile.ops} == {ComputeUnit.NPU}
    assert load_profile(profile.save(tmp_path / "xs.profile.json")) == profile


def test_raw_qnn_output_is_kept_beside_the_profile_and_nothing_lands_in_the_cwd(xs_run):
    _, out, cwd = xs_run
    assert (out / PROFILE_CSV).is_file() and (out / OP_TRACE_JSON).is_file()
    assert made_by_emulator(out / PROFILE_CSV)  # the run says what made it: its CSV reads like a phone's
    assert list(cwd.iterdir()) == []


def test_ops_are_the_csv_node_rows_of_the_run(xs_run):
    profile, out, _ = xs_run
    totals = execute_total_cycles(out / PROFILE_CSV)
    assert len(totals) == 1  # one run, a fresh CSV
    # QNN's per-op rows add up to its whole-graph cycle count.
    assert sum(op.execution_cycles for op in profile.ops) == pytest.approx(totals[0], rel=1e-9)
    names = [op.name for op in profile.ops]
    assert names[0] == "Input" and names[-1] == "Output"
    assert not any(re.search(r"OpId_\d+|\(cycles\)", n) for n in names)
    # The trace gives every op its QNN type and (graph I/O aside) its ONNX sources.
    assert "unknown" not in {op.op_type for op in profile.ops}
    assert {"Conv2d", "DepthWiseConv2d", "FullyConnected", "L2Norm", "Gelu"} <= {op.op_type for op in profile.ops}
    assert all(op.onnx_nodes for op in profile.ops if op.op_type not in ("Input", "Output"))


def test_xs_profile_is_attributed_to_every_block_in_model_order(xs_run):
    profile, _, _ = xs_run
    blocks = model_blocks("xs")
    assert unattributed_share(profile) < MAX_UNATTRIBUTED
    times = block_times(profile)
    assert [b for b in times if b != "other"] == list(blocks)
    for block, kind in blocks.items():
        assert times[block].op_count > 0 and times[block].time > 0, block
        if kind == "swiftformer_encoder":
            assert set(times[block].parts) == {"local_representation", "attention", "mlp"}, block
    # Ops the preprocessing renamed (fused normalize, Gemm from Linear) were found by the trace.
    traced = [op for op in profile.ops if op.attribution.via == "op_trace"]
    assert any(op.op_type == "L2Norm" for op in traced) and any(op.op_type == "FullyConnected" for op in traced)
    assert all(op.attribution.block != "other" for op in traced)


def test_parser_picks_one_run_of_several_and_fills_sources_from_the_trace(xs_run, tmp_path):
    profile, out, _ = xs_run
    lines = (out / PROFILE_CSV).read_text().splitlines()
    header, body = lines[0], lines[1:]
    first_exec = next(i for i, line in enumerate(body) if "Accelerator (execute) time (cycles)" in line)
    run = body[first_exec:]
    # A second run with every op twice as slow, and the ONNX Source Ops column blanked (what an
    # EP-context model profiled without its compile-time trace writes).
    doubled = []
    for line in run:
        fields = next(csv.reader([line]))
        if fields[1] == "NODE":
            fields[2] = str(int(fields[2]) * 2)
            fields[7] = ""
        doubled.append(",".join(f'"{f}"' if "," in f else f for f in fields))
    two_runs = tmp_path / "two_runs.csv"
    two_runs.write_text("\n".join([header, *body, *doubled]) + "\n")

    first = parse_qnn_profile_csv(two_runs, execution=0)
    assert [(o.name, o.execution_cycles, o.onnx_nodes) for o in first] == [(o.name, o.execution_cycles, o.onnx_nodes) for o in profile.ops]
    last_no_trace = parse_qnn_profile_csv(two_runs)
    assert [o.execution_cycles for o in last_no_trace] == [2 * o.execution_cycles for o in profile.ops]
    assert all(not o.onnx_nodes for o in last_no_trace)
    # Without the trace, types come from the ONNX names the ops still carry.
    assert {"Conv", "Gelu", "Gemm"} <= {o.op_type for o in last_no_trace}
    last = parse_qnn_profile_csv(two_runs, out / OP_TRACE_JSON)
    assert [(o.op_type, o.onnx_nodes) for o in last] == [(o.op_type, o.onnx_nodes) for o in profile.ops]
    with pytest.raises(ProfileError, match="no run 2"):
        parse_qnn_profile_csv(two_runs, execution=2)


def test_parser_refuses_what_is_not_a_detailed_qnn_profile(xs_run, tmp_path):
    _, out, _ = xs_run
    with pytest.raises(ProfileError, match="no such"):
        parse_qnn_profile_csv(tmp_path / "missing.csv")
    not_qnn = tmp_path / "other.csv"
    not_qnn.write_text("a,b\n1,2\n")
    with pytest.raises(ProfileError, match="not a QNN profile CSV"):
        parse_qnn_profile_csv(not_qnn)
    basic = tmp_path / "basic.csv"  # profiling_level=basic: whole-graph rows only
    basic.write_text("\n".join(line for line in (out / PROFILE_CSV).read_text().splitlines() if ",NODE," not in line) + "\n")
    with pytest.raises(ProfileError, match="no per-op"):
        parse_qnn_profile_csv(basic)
    bad_trace = tmp_path / "trace.json"
    bad_trace.write_text('{"schema_version": 2}')
    with pytest.raises(ProfileError, match="not a QNN framework op trace"):
        parse_qnn_profile_csv(out / PROFILE_CSV, bad_trace)


def test_ep_context_model_is_attributed_through_its_compile_time_trace(xs_qdq, tmp_path):
    variant = get_variant("xs")
    with_trace, without = tmp_path / "with_trace", tmp_path / "without"
    for d, trace in ((with_trace, True), (without, False)):
        d.mkdir()
        htp_session(xs_qdq, HtpTarget(), context_out=d / "model.ctx.onnx", op_trace=trace)
    traced = emulate(with_trace / "model.ctx.onnx", variant, RESOLUTION, tmp_path / "p1", tmp_path)
    assert traced.toolchain.runtime == "precompiled_qnn_onnx"
    assert unattributed_share(traced) < MAX_UNATTRIBUTED
    assert (tmp_path / "p1" / OP_TRACE_JSON).is_file()

    names_only = emulate(without / "model.ctx.onnx", variant, RESOLUTION, tmp_path / "p2", tmp_path)
    assert "attributed by name only" in names_only.provenance.note
    assert not (tmp_path / "p2" / OP_TRACE_JSON).exists()
    renamed = [op for op in names_only.ops if op.name.startswith(("Gemm_", "LpNormalization"))]
    assert renamed and all(op.attribution.block == "other" for op in renamed)


def test_fp16_float_graph_is_attributed_through_the_model_file(tmp_path):
    # A float graph has no Q/DQ nodes named after tensors and its trace names only the
    # renamed nodes (Gemm_N, LpNormalization_fused_*): the model file places them.
    variant = get_variant("xs")
    model = make_float_model("xs", RESOLUTION, tmp_path / "float")
    profile = profile_on_emulator(
        model, feeds_for(variant, RESOLUTION), variant, model_info(variant, RESOLUTION, "fp16"),
        HtpTarget(fp16=True), tmp_path / "p",
    )
    assert profile.toolchain.runtime == "onnx" and profile.latency is None
    assert unattributed_share(profile) < MAX_UNATTRIBUTED
    renamed = [op for op in profile.ops if op.name.startswith(("Gemm_", "LpNormalization"))]
    assert renamed and all(op.attribution.block != "other" and op.attribution.part == "attention" for op in renamed)
    assert [b for b in block_times(profile) if b != "other"] == list(model_blocks(variant))


def test_the_standalone_encoder_block_is_one_block(tmp_path):
    variant = get_variant("encoder")
    model = make_qdq_model("encoder", 16, tmp_path / "qdq")
    profile = emulate(model, variant, 16, tmp_path / "p", tmp_path / "qdq")
    times = block_times(profile)
    assert list(times) == ["encoder"]
    assert set(times["encoder"].parts) == {"local_representation", "attention", "mlp"}


def test_a_failed_run_is_a_toolchain_error(xs_qdq, tmp_path):
    xs = get_variant("xs")
    with pytest.raises(UsageError, match="no such model"):
        profile_on_emulator(
            tmp_path / "absent.onnx", feeds_for(xs, RESOLUTION), xs, model_info(xs, RESOLUTION), HtpTarget(), tmp_path
        )
    with pytest.raises(ToolchainError, match="could not run"):
        profile_on_emulator(
            xs_qdq,
            {"pixels": np.zeros((1, 3, RESOLUTION, RESOLUTION), np.float32)},
            get_variant("xs"),
            model_info(get_variant("xs"), RESOLUTION),
            HtpTarget(),
            tmp_path,
        )


@pytest.mark.slow
def test_l1_at_224_is_attributed_to_every_block(tmp_path):
    variant = get_variant("l1")
    model = make_qdq_model("l1", 224, tmp_path / "qdq")
    profile = emulate(model, variant, 224, tmp_path / "p", tmp_path / "qdq")
    assert unattributed_share(profile) < MAX_UNATTRIBUTED
    times = block_times(profile)
    assert [b for b in times if b != "other"] == list(model_blocks(variant))
    for block, kind in model_blocks(variant).items():
        assert times[block].time > 0, block
        if kind == "swiftformer_encoder":
            assert set(times[block].parts) == {"local_representation", "attention", "mlp"}, block
