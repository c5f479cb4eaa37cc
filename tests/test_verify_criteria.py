"""verify's criteria and the localization's ranking, as pure logic on synthetic tensors (no device),
then on the HTP emulator: an unguarded BatchNorm flip too small for the output criteria fails
verify by its per-channel map and is named first; its guarded compile passes.

Synthetic tensors mimic what the taps of XS show (tests/bench/results/fidelity_matrix.json):
a BN in stage 2 whose input already differs between HTP and CPU by ~19 dB of accumulated
w8a8 noise, one channel's folded bias sign-flipped by the EP.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from checkpoints import realistic_model

from swiftformer_qnn.core.targets import Precision
from swiftformer_qnn.measure.agreement import compare_outputs, run_cpu
from swiftformer_qnn.pipeline.localize import (
    MAX_MAP_MISMATCH_DB,
    ChannelMap,
    Tap,
    TensorFigures,
    _finding,
    affine_fits,
    channel_map,
    describe,
    fits_channel_map,
    rank,
    sqnr_db,
)
from swiftformer_qnn.pipeline.verify import _hint, channel_map_failures, output_failures

RNG = np.random.default_rng(0)


def _quantize(y: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.round(y / scale), -128, 127) * scale  # an 8-bit activation grid


def _bn_case(noise_db: float = 19.0, flip: bool = False, positions=(14, 14), channels: int = 112):
    """(x_cpu, y_cpu, x_htp, y_htp) around one BN: the HTP's input already noisy (`noise_db` SQNR),
    both outputs on the same 8-bit grid; with `flip`, the EP's sign-flipped largest bias."""
    x_cpu = RNG.standard_normal((1, channels, *positions))
    noise = RNG.standard_normal(x_cpu.shape) * 10 ** (-noise_db / 20)
    x_htp = x_cpu + noise
    slope = (1.0 + 0.2 * RNG.standard_normal(channels)).reshape(1, -1, 1, 1)
    bias = (0.3 * RNG.standard_normal(channels)).reshape(1, -1, 1, 1)
    scale = float(np.max(np.abs(slope * x_cpu + bias))) / 127
    y_cpu = _quantize(slope * x_cpu + bias, scale)
    htp_bias = bias.copy()
    if flip:
        c = int(np.argmax(bias.ravel()))  # the overflow hits the largest positive folded bias
        htp_bias[0, c] = -bias[0, c]
    y_htp = _quantize(slope * x_htp + htp_bias, scale)
    return x_cpu, y_cpu, x_htp, y_htp, int(np.argmax(bias.ravel())), bias.ravel()


def test_affine_fits_recover_each_channels_map():
    x = RNG.standard_normal((1, 3, 5, 5))
    a, b = np.array([0.5, 2.0, -1.0]), np.array([0.1, -0.3, 0.8])
    slope, intercept = affine_fits(x, a.reshape(1, 3, 1, 1) * x + b.reshape(1, 3, 1, 1))
    np.testing.assert_allclose(slope, a)
    np.testing.assert_allclose(intercept, b)
    flat = np.ones((1, 2, 3, 3))  # a constant input: no slope to fit, the mean is the map
    slope, intercept = affine_fits(flat, 4 * flat)
    np.testing.assert_allclose(slope, 0)
    np.testing.assert_allclose(intercept, 4)


def test_a_flipped_bias_is_a_map_mismatch_and_upstream_noise_is_not():
    x_cpu, y_cpu, x_htp, y_htp, _, _ = _bn_case(flip=False)
    clean = channel_map(x_cpu, y_cpu, x_htp, y_htp)
    # Whole-tensor agreement is poor (noise from upstream), yet the op itself computes the same map.
    assert sqnr_db(y_cpu, y_htp) < 22
    assert clean.mismatch_db < MAX_MAP_MISMATCH_DB - 10

    x_cpu, y_cpu, x_htp, y_htp, flipped, bias = _bn_case(flip=True)
    corrupt = channel_map(x_cpu, y_cpu, x_htp, y_htp)
    assert corrupt.channel == flipped and corrupt.mismatch_db > MAX_MAP_MISMATCH_DB + 10
    assert corrupt.cpu[1] == pytest.approx(bias[flipped], abs=0.02)
    assert corrupt.htp[1] == pytest.approx(-bias[flipped], abs=0.02)
    # The same flip costs the whole tensor little more than the noise already there: what a
    # per-tensor drop misses.
    assert sqnr_db(y_cpu, y_htp) > 10


def test_a_flip_seen_on_four_positions_still_separates():
    """The head BN at 64 px sees a 2x2 map: few points per channel fit."""
    x_cpu, y_cpu, x_htp, y_htp, _, _ = _bn_case(flip=False, positions=(2, 2), channels=220)
    assert channel_map(x_cpu, y_cpu, x_htp, y_htp).mismatch_db < MAX_MAP_MISMATCH_DB - 5
    x_cpu, y_cpu, x_htp, y_htp, flipped, _ = _bn_case(flip=True, positions=(2, 2), channels=220)
    corrupt = channel_map(x_cpu, y_cpu, x_htp, y_htp)
    assert corrupt.channel == flipped and corrupt.mismatch_db > MAX_MAP_MISMATCH_DB + 5


def test_a_one_by_one_map_is_too_small_to_fit_and_is_not_checked():
    """At --resolution 32 the last stage and the head run on 1x1 maps: one value per channel, so the
    fitted map is the value itself and a clean BN's upstream noise reads as a mismatch."""
    x_cpu, y_cpu, x_htp, y_htp, _, _ = _bn_case(noise_db=19.0, flip=False, positions=(1, 1), channels=220)
    assert channel_map(x_cpu, y_cpu, x_htp, y_htp).mismatch_db > MAX_MAP_MISMATCH_DB  # would fail a clean compile
    assert not fits_channel_map(y_cpu.shape) and not fits_channel_map((1, 220))
    assert fits_channel_map((1, 220, 2, 2)) and fits_channel_map((4, 220, 1, 1))


def test_a_batchnorm_suspected_for_a_drop_is_not_blamed_on_its_bias():
    """A BN can rank as a suspect for its SQNR drop while its own map agrees: the message must not
    print fitted biases as if they differed, nor give the bias-overflow hint."""
    node = onnx.helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="/stage1/norm/BN")
    tap = Tap("y", "y_q", node, np.ones(1), np.zeros(1), 8)
    ok_map = ChannelMap(3, MAX_MAP_MISMATCH_DB - 15, (1.0, 0.5), (1.0, 0.5))
    figures = TensorFigures(0, 12.0, 35.0, 8, ok_map)
    assert rank([figures]) == [figures]  # a drop of 23 dB
    cpu = RNG.standard_normal((1, 8, 4, 4))
    finding = _finding(tap, figures, cpu, cpu + 0.1 * RNG.standard_normal(cpu.shape), None)
    assert finding["why"] == "drop" and "fit_htp" not in finding and "channel_sqnr_db" in finding
    assert "maps differently" not in describe(finding)
    assert "bias overflow" not in _hint(finding)
    flipped = TensorFigures(0, 12.0, 35.0, 8, ChannelMap(3, -6.0, (1.0, 0.5), (1.0, -0.5)))
    blamed = _finding(tap, flipped, cpu, cpu, None)
    assert "maps differently" in describe(blamed) and "bias overflow" in _hint(blamed)


def _figures(index, sqnr, inputs, bits=8, mismatch=None):
    cmap = ChannelMap(3, mismatch, (1.0, 0.5), (1.0, -0.5)) if mismatch is not None else None
    return TensorFigures(index, sqnr, inputs, bits, cmap)


def test_rank_puts_a_map_mismatch_before_earlier_and_larger_drops():
    """XS w8a16 faithful, measured: an attention MatMul in stage 0 dropped 21.5 dB (63.2 -> 41.7) in
    clean runs too, ahead of the flipped BN in stage 2; the BN must come first."""
    matmul = _figures(10, 41.7, 63.2, bits=16)
    bn = _figures(80, 40.0, 44.0, bits=16, mismatch=-6.8)
    healthy_bn = _figures(120, 55.0, 56.0, bits=16, mismatch=-62.0)
    assert [f.index for f in rank([matmul, bn, healthy_bn])] == [80, 10]


def test_rank_orders_drops_by_size_and_caps_input_agreement_per_bit_width():
    early_small = _figures(1, 25.0, 36.0)  # 11 dB
    late_large = _figures(9, 10.0, 34.0)  # 24 dB
    near_exact_16 = _figures(5, 61.0, 90.0, bits=16)  # capped at 70: a 9 dB drop, rounding
    near_exact_8 = _figures(6, 29.0, 60.0)  # capped at 40: 11 dB, a real drop
    assert [f.index for f in rank([early_small, near_exact_16, near_exact_8, late_large])] == [9, 1, 6]
    assert rank([_figures(2, 30.0, 35.0), _figures(3, 50.0, math.inf)]) == []


def _outputs(sqnr: float, shape=(4, 1000), seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(shape)
    noise = rng.standard_normal(shape)
    noise *= np.sqrt(np.sum(ref**2) / np.sum(noise**2) / 10 ** (sqnr / 10))
    return ref, ref + noise


def _output_figures(htp_vs_cpu: float, cpu_vs_fp32: float, htp_vs_fp32: float):
    cpu, htp = _outputs(htp_vs_cpu, seed=1)
    fp32a, cpu_b = _outputs(cpu_vs_fp32, seed=2)
    fp32b, htp_b = _outputs(htp_vs_fp32, seed=2)
    return (compare_outputs(cpu, htp, classify=True), compare_outputs(fp32b, htp_b, classify=True),
            compare_outputs(fp32a, cpu_b, classify=True))


def test_output_criteria_w8a16_floor_separates_the_measured_cells():
    # XS w8a16 faithful (a BN flipped): HTP vs CPU 34.0 dB, gap 1.4 dB; guarded: 49.9 dB.
    assert any("< 42 dB for w8a16" in f for f in output_failures(*_output_figures(34.0, 32.1, 30.7), Precision.W8A16))
    assert output_failures(*_output_figures(49.9, 32.1, 32.1), Precision.W8A16) == []


def test_output_criteria_cannot_see_a_small_w8a8_flip_and_pass_clean_htp_form_gaps():
    # XS w8a8 faithful n16 (a BN flipped): HTP vs CPU 27.5 dB, gap 0.8 dB: nothing at the output
    # tells it from a clean run (clean HTP-ready runs measured gaps up to 1.23 dB). The channel map does.
    assert output_failures(*_output_figures(27.5, 28.4, 27.6), Precision.W8A8) == []
    assert output_failures(*_output_figures(30.2, 29.6, 28.35), Precision.W8A8) == []
    # A gross loss still fails at the output (L1 w8a16 faithful: gap 7.8 dB).
    assert output_failures(*_output_figures(26.3, 33.4, 25.6), Precision.W8A8)


def test_channel_map_failure_names_node_and_channel():
    record = {"ops_checked": 5, "worst_node": "/stage2/block5_swiftformer_encoder/mlp/norm/BatchNormalization",
              "worst_channel": 72, "worst_mismatch_db": -6.9}
    fails = channel_map_failures(record, [_figures(0, 19.0, 19.5, mismatch=-6.9), _figures(1, 30, 31, mismatch=-35)])
    assert fails == ["on one of them, /stage2/block5_swiftformer_encoder/mlp/norm/BatchNormalization maps channel 72 "
                     "differently (-6.9 dB of its output's signal, above -20 dB)"]
    assert channel_map_failures(record | {"worst_mismatch_db": -35.1}, [_figures(0, 19, 19, mismatch=-35.1)]) == []
    assert channel_map_failures(None, []) == []


# --- On the HTP emulator ----------------------------------------------------------------------


def _xs_faithful_qdq(tmp_path, seed: int, precision: str, count: int):
    """XS at 64 px with realistic weights, the literal graph (BatchNorms in it), quantized."""
    from swiftformer_qnn.core.targets import get_precision
    from swiftformer_qnn.model.variants import get_variant
    from swiftformer_qnn.pipeline.calibrate import make_inputs
    from swiftformer_qnn.pipeline.images import (
        default_calibration_images,
        default_heldout_images,
        find_images,
    )
    from swiftformer_qnn.pipeline.onnx_export import export_onnx, simplify_onnx
    from swiftformer_qnn.pipeline.quantize import quantize_qdq

    v = get_variant("xs")
    export_onnx(realistic_model(v, seed=seed), v.input_shape(64), tmp_path / "m.onnx", is_encoder_block=False)
    simplify_onnx(tmp_path / "m.onnx", tmp_path / "m.sim.onnx")
    make_inputs(v, 64, find_images(default_calibration_images(), count), tmp_path / "calib.npy")
    make_inputs(v, 64, find_images(default_heldout_images(), 4, what="held-out"), tmp_path / "heldout.npy")
    quantize_qdq(tmp_path / "m.sim.onnx", np.load(tmp_path / "calib.npy"), tmp_path / "q.onnx", get_precision(precision))
    heldout = np.load(tmp_path / "heldout.npy")
    return tmp_path / "q.onnx", heldout, run_cpu(tmp_path / "m.sim.onnx", heldout)


def _compile_unguarded(qdq, out):
    from swiftformer_qnn.htp.compile import compile_model
    from swiftformer_qnn.htp.record import CompileSpec
    from swiftformer_qnn.htp.session import HtpTarget

    out.mkdir()
    compile_model(CompileSpec(model=qdq, out_dir=out, target=HtpTarget()))  # the EP directly: the pipeline's guard would rewrite the BN
    return out / "model.ctx.onnx"


def test_verify_fails_an_unguarded_small_flip_the_outputs_miss_and_passes_it_guarded(tmp_path):
    from swiftformer_qnn.core.errors import QuantizationFidelityError
    from swiftformer_qnn.htp.bn_guard import predict, protect
    from swiftformer_qnn.htp.session import HtpTarget, htp_session
    from swiftformer_qnn.model.variants import get_variant
    from swiftformer_qnn.pipeline.verify import verify_fidelity

    qdq, heldout, fp32 = _xs_faithful_qdq(tmp_path, seed=1, precision="w8a8", count=16)
    node = "/stage3/block3_swiftformer_encoder/mlp/norm/BatchNormalization"
    # The guard's arithmetic (independent of the emulator) says the EP flips this channel.
    assert [(f.node, f.channels) for f in predict(onnx.load(str(qdq))).findings] == [(node, [168])]
    ctx = _compile_unguarded(qdq, tmp_path / "ctx")

    # Small enough that the output criteria alone pass it.
    cpu = run_cpu(qdq, heldout)
    session = htp_session(ctx, HtpTarget())
    htp = np.concatenate([session.run(None, {"image": heldout[i : i + 1]})[0] for i in range(4)])
    del session
    assert output_failures(compare_outputs(cpu, htp, classify=True), compare_outputs(fp32, htp, classify=True),
                           compare_outputs(fp32, cpu, classify=True), Precision.W8A8) == []

    with pytest.raises(QuantizationFidelityError) as err:
        verify_fidelity(fp32, cpu, qdq, ctx, heldout, HtpTarget(), Precision.W8A8, classify=True, min_sqnr=10,
                        variant=get_variant("xs"))
    text = err.value.one_line()
    assert f"{node} maps channel 168 differently" in text
    assert "the HTP departs at stage3.block3 SwiftFormerEncoder / mlp: BatchNormalization" in text
    assert "folds BatchNorm" in text  # the hint: what helps

    model = onnx.load(str(qdq))
    protect(model)
    onnx.save(model, str(tmp_path / "guarded.onnx"))
    ctx = _compile_unguarded(tmp_path / "guarded.onnx", tmp_path / "guarded")
    result = verify_fidelity(fp32, run_cpu(tmp_path / "guarded.onnx", heldout), tmp_path / "guarded.onnx", ctx, heldout,
                             HtpTarget(), Precision.W8A8, classify=True, min_sqnr=10, variant=get_variant("xs"))
    maps = result["channel_maps"]
    assert maps["ops_checked"] == 5 and maps["worst_mismatch_db"] < MAX_MAP_MISMATCH_DB


def test_localization_names_the_flipped_bn_before_noisier_attention_ops_w8a16(tmp_path):
    """XS w8a16: the head BN flips; attention ops drop more than 10 dB below their inputs in clean
    w8a16 runs too, and come earlier in the graph."""
    from swiftformer_qnn.htp.bn_guard import predict
    from swiftformer_qnn.htp.session import HtpTarget
    from swiftformer_qnn.model.variants import get_variant
    from swiftformer_qnn.pipeline.localize import locate

    qdq, heldout, _ = _xs_faithful_qdq(tmp_path, seed=2, precision="w8a16", count=8)
    assert [f.node for f in predict(onnx.load(str(qdq))).findings] == ["/head/norm/BatchNormalization"]
    finding = locate(qdq, heldout[:1], HtpTarget(), get_variant("xs"))
    assert finding["node"] == "/head/norm/BatchNormalization" and finding["why"] == "channel map"
    assert finding["channel"] == 137 and finding["map_mismatch_db"] > MAX_MAP_MISMATCH_DB
    assert any(s["why"] == "drop" and "attention" in s["node"] for s in finding["suspects"][1:])


def test_a_faithful_export_whose_flip_the_guard_rewrote_passes_verify(tmp_path):
    """No false failure: verify's per-tensor run compiles the graph the compile stage compiled
    (after its BN guard), not the unguarded QDQ model."""
    from checkpoints import write_checkpoint

    from swiftformer_qnn.pipeline import ExportRequest, run_export

    weights = write_checkpoint(realistic_model("xs", seed=1), tmp_path / "xs.safetensors")
    result = run_export(ExportRequest(variant="xs", weights=weights, resolution=64, graph="faithful",
                                      calibration_count=16, heldout_count=4, output_dir=tmp_path / "out"))
    guard = result.manifest.stage("compile").results.bn_guard
    assert [(f["node"], f["channels"], f["action"]) for f in guard["corrupted_predicted"]] == [
        ("/stage3/block3_swiftformer_encoder/mlp/norm/BatchNormalization", [168], "rewritten")]
    maps = result.manifest.stage("verify").results.channel_maps
    assert maps.ops_checked == 5 and maps.worst_mismatch_db < MAX_MAP_MISMATCH_DB
