"""The export pipeline on small models, for real: torch export, onnxsim, QDQ quantization,
QNN context-binary compile for SM8550, and the binary run on the HTP emulator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from swiftformer_qnn.core.atomic import sha256_file
from swiftformer_qnn.core.errors import (
    CalibrationError,
    ExportValidationError,
    HtpUnsupportedError,
    OutputDirError,
    QuantizationFidelityError,
    UsageError,
)
from swiftformer_qnn.htp.compile import compile_model
from swiftformer_qnn.htp.record import CompileRecord, CompileSpec, read_compile_record
from swiftformer_qnn.htp.session import HtpTarget, qnn_sdk_version
from swiftformer_qnn.model.swiftformer import build_model, realistic_init
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
from swiftformer_qnn.pipeline.artifacts import read_manifest
from swiftformer_qnn.pipeline.images import default_heldout_images, find_images, preprocess_all
from swiftformer_qnn.pipeline.onnx_export import export_onnx, simplify_onnx
from swiftformer_qnn.pipeline.validate import torch_outputs, validate_onnx

SMALL = dict(calibration_count=8, heldout_count=4)


def _xs(tmp_path: Path, **kw) -> ExportRequest:
    return ExportRequest(variant="xs", resolution=64, output_dir=tmp_path / "xs", **{**SMALL, **kw})


@pytest.fixture(scope="module")
def xs_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("xs")
    events = []
    result = run_export(_xs(out), progress=events.append)
    return result, events


def test_xs_export_compiles_for_sm8550_and_runs_on_the_emulator(xs_export):
    result, events = xs_export
    m = result.manifest
    assert [s.name for s in m.stages] == ["export", "simplify", "fold_bn", "inputs", "reference", "validate", "quantize",
                                          "guard", "compile", "estimate", "cpu_qdq", "verify"]
    # Every stage was visible to the progress display, start and end, and started only once the
    # stages it reads had ended (stages that do not need each other overlap).
    from swiftformer_qnn.pipeline.orchestrator import NEEDS

    assert sorted(e.stage for e in events if e.status == "start") == sorted(s.name for s in m.stages)
    started = {e.stage: i for i, e in enumerate(events) if e.status == "start"}
    ended = {e.stage: i for i, e in enumerate(events) if e.status in ("done", "cached")}
    assert ended.keys() == started.keys()
    for stage, i in started.items():
        assert all(ended[before] < i for before in NEEDS[stage] if before in ended), stage
        assert i < ended[stage]

    # The export says what QNN's estimator makes of the compiled graph, labelled with its proxy.
    est = m.stage("estimate").results
    assert est.label == "estimated (QNN Hextimate, SA8255P proxy for SM8550)" and est.proxy_soc_model == 52
    assert est.us > 0 and est.us_lower <= est.us <= est.us_upper and est.unmapped_share == 0
    assert (result.directory / "estimate.json").is_file()

    compiled = read_compile_record(result.directory / "compile.json")  # the one record of the compile
    assert compiled == m.results("compile", CompileRecord)
    assert (compiled.soc, compiled.soc_model, compiled.htp_arch) == ("sm8550", 43, 73)
    assert (compiled.model.variant, compiled.model.precision, compiled.model.input_shape) == ("xs", "w8a8",
                                                                                             [1, 3, 64, 64])
    # Every node on the HTP is certain by construction (CPU fallback disabled); what QNN built is measured.
    assert compiled.cpu_fallback_disabled and "every node is on the HTP" in compiled.placement
    qdq_nodes = len(onnx.load(str(result.directory / "model.qdq.onnx"), load_external_data=False).graph.node)
    assert 0 < compiled.htp_op_count < qdq_nodes
    assert sum(compiled.htp_op_types.values()) == compiled.htp_op_count
    assert {"Conv2d", "DepthWiseConv2d", "FullyConnected", "Gelu"} <= set(compiled.htp_op_types)
    assert compiled.qnn_version == qnn_sdk_version()
    assert compiled.ep_sdk_version.startswith("v" + qnn_sdk_version())
    assert compiled.model_sha256 == m.stage("quantize").outputs["model.qdq.onnx"].sha256

    ctx = onnx.load(str(result.directory / "model.ctx.onnx"))
    assert [n.op_type for n in ctx.graph.node] == ["EPContext"]
    binary = result.directory / "model.ctx_qnn.bin"
    assert binary.stat().st_size == compiled.context_binary_bytes > 100_000
    assert sha256_file(binary) == compiled.context_binary_sha256

    # BatchNorm is folded before quantization (HTP-ready graph): none reaches the QNN EP.
    folded = m.stage("fold_bn").results
    assert folded.batchnorms_folded == 5 and folded.nodes == folded.nodes_before - 5
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(result.directory / "model.qdq.onnx")).graph.node}
    assert m.stage("validate").results.graph == "model.fold.onnx"
    assert compiled.bn_guard == {"batchnorms": 0, "exposed_batchnorms": 0, "corrupted_predicted": []}

    verify = m.stage("verify").results
    assert verify.emulator_vs_quantized_cpu.samples == 4
    assert verify.emulator_vs_quantized_cpu.cosine_min > 0.99
    assert verify.quantized_vs_fp32.samples == 4
    assert verify.quantized_vs_fp32.sqnr_db >= verify.min_sqnr_db


def test_manifest_records_request_tools_hashes_and_timings(xs_export):
    result, _ = xs_export
    data = json.loads((result.directory / "manifest.json").read_text())
    assert data["request"]["variant"] == "xs"
    assert data["request"]["input_shape"] == [1, 3, 64, 64]
    assert data["request"]["weights"] == "random-realistic(seed=0)"
    assert data["stages"][0]["results"]["attention"] == "normalize"
    for tool in ("torch", "onnx", "onnxruntime", "onnxruntime-qnn", "onnxsim"):
        assert data["tools"][tool] != "not installed"
    for stage in data["stages"]:
        assert stage["wall_s"] >= 0 and len(stage["key"]) == 64
        for out in stage["outputs"].values():
            assert (result.directory / out["path"]).stat().st_size == out["bytes"]
    assert data["stages"][1]["inputs"]["export/model.onnx"] == data["stages"][0]["outputs"]["model.onnx"]["sha256"]


def test_same_request_reuses_the_directory_and_another_directory_reuses_the_stage_cache(xs_export, tmp_path):
    result, _ = xs_export
    again = run_export(_xs(result.directory.parent))
    assert again.reused and again.manifest.request_key == result.manifest.request_key

    elsewhere = run_export(_xs(tmp_path))
    assert not elsewhere.reused
    assert all(s.cached for s in elsewhere.manifest.stages)
    assert (tmp_path / "xs" / "model.ctx_qnn.bin").read_bytes() == (result.directory / "model.ctx_qnn.bin").read_bytes()


def test_an_existing_directory_of_another_request_is_refused_unless_forced(xs_export, tmp_path):
    result, _ = xs_export
    other = _xs(result.directory.parent, precision="w8a16", until=Until.QUANTIZE)
    before = (result.directory / "manifest.json").read_text()
    with pytest.raises(OutputDirError, match="--force"):
        run_export(other)
    assert (result.directory / "manifest.json").read_text() == before

    # --force replaces another request's export; a folder this tool did not make, never.
    forced_dir = tmp_path / "f"
    forced_dir.mkdir()
    (forced_dir / "somebody-elses.txt").write_text("x")
    for force in (False, True):
        with pytest.raises(OutputDirError, match="replaces only what it made"):
            run_export(ExportRequest(variant="xs", resolution=64, until=Until.ONNX, output_dir=forced_dir, force=force,
                                     **SMALL))
    assert (forced_dir / "somebody-elses.txt").read_text() == "x"
    run_export(_xs(tmp_path, until=Until.ONNX))
    with pytest.raises(OutputDirError, match="--force"):
        run_export(_xs(tmp_path, until=Until.ONNX, heldout_count=3))
    done = run_export(_xs(tmp_path, until=Until.ONNX, heldout_count=3, force=True))
    assert done.manifest.request.heldout.count == 3


def test_a_failing_stage_leaves_no_output_directory(tmp_path, monkeypatch):
    import swiftformer_qnn.pipeline.orchestrator as orch

    def boom(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(orch._Run, "_stage_quantize", boom)
    req = ExportRequest(variant="encoder", resolution=16, output_dir=tmp_path / "enc", use_cache=False, **SMALL)
    with pytest.raises(KeyboardInterrupt):
        run_export(req)
    assert list(tmp_path.iterdir()) == []


def test_encoder_block_is_calibrated_on_the_activations_l1_feeds_it(tmp_path):
    req = ExportRequest(variant="encoder", resolution=16, until=Until.QUANTIZE, output_dir=tmp_path / "enc", **SMALL)
    result = run_export(req)
    calib = np.load(result.directory / "calibration.npy")
    assert calib.shape == (8, 96, 16, 16)

    # Independently: L1 (seed 0, realistic magnitudes, as the pipeline builds it without --weights)
    # run by hand up to stage1's encoder.
    torch.manual_seed(0)
    l1 = realistic_init(build_model(get_variant("l1")), seed=0)
    images = find_images(Path(result.manifest.request.calibration.root), 8)
    pixels = torch.from_numpy(preprocess_all(images, 16 * 8))
    with torch.no_grad():
        x = l1.stage0(l1.stem(pixels))
        x = l1.stage1.downsample(x)
        x = l1.stage1.block1_conv_encoder(l1.stage1.block0_conv_encoder(x))
    np.testing.assert_allclose(calib, x.numpy(), rtol=1e-4, atol=1e-5)
    assert "activations at the input of SwiftFormer-L1 stage1.block2_swiftformer_encoder" in (
        result.manifest.stage("inputs").results.calibration.what
    )


def test_a_mismatch_the_batchnorm_fold_introduced_is_named(tmp_path, monkeypatch):
    """Validate runs the simplified graph only when the folded one fails, to say which step
    introduced the mismatch: here the fold (one folded weight off), so the simplified graph passes."""
    from swiftformer_qnn.pipeline import fold_bn

    real = fold_bn.fold_stage

    def broken_fold(src, out):
        report = real(src, out)
        model = onnx.load(str(out))
        conv_weight = next(i for i in model.graph.initializer if len(i.dims) == 4)
        arr = onnx.numpy_helper.to_array(conv_weight).copy()
        arr.flat[0] += 1.0
        conv_weight.CopyFrom(onnx.numpy_helper.from_array(arr, conv_weight.name))
        onnx.save(model, str(out))
        return report

    monkeypatch.setattr(fold_bn, "fold_stage", broken_fold)
    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))  # no earlier test's fold is reused
    with pytest.raises(ExportValidationError, match="does not match PyTorch.*the fold introduced it"):
        run_export(_xs(tmp_path, until=Until.ONNX))


def test_validation_fails_on_a_broken_graph(tmp_path):
    variant = get_variant("encoder", encoder_hw=16)
    model = realistic_init(build_model(variant))
    export_onnx(model, variant.input_shape(), tmp_path / "m.onnx", is_encoder_block=True)
    simplify_onnx(tmp_path / "m.onnx", tmp_path / "s.onnx")
    heldout = np.random.default_rng(0).standard_normal((3, 96, 16, 16)).astype(np.float32)
    ref = torch_outputs(model, heldout)
    figures, outputs = validate_onnx(tmp_path / "s.onnx", ref, heldout, variant)
    assert figures["max_abs_diff"] < 1e-3 and np.allclose(outputs, ref, atol=1e-3)

    broken = onnx.load(str(tmp_path / "s.onnx"))
    conv_weight = next(i for i in broken.graph.initializer if len(i.dims) == 4)
    arr = onnx.numpy_helper.to_array(conv_weight).copy()
    arr.flat[0] += 1.0  # one weight off by one
    conv_weight.CopyFrom(onnx.numpy_helper.from_array(arr, conv_weight.name))
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    with pytest.raises(ExportValidationError, match="does not match PyTorch"):
        validate_onnx(tmp_path / "broken.onnx", ref, heldout, variant)


def test_htp_rejection_names_the_op_and_the_module(tmp_path):
    variant = get_variant("encoder", encoder_hw=16)
    export_onnx(build_model(variant), variant.input_shape(), tmp_path / "m.onnx", is_encoder_block=True, opset=17)
    simplify_onnx(tmp_path / "m.onnx", tmp_path / "s.onnx")
    with pytest.raises(HtpUnsupportedError) as err:
        compile_model(CompileSpec(model=tmp_path / "s.onnx", out_dir=tmp_path / "out", target=HtpTarget(fp16=True)))
    msg = err.value.one_line()
    assert "Erf at swiftformer_encoder.mlp.act" in msg and "--opset 20" in msg
    assert list((tmp_path / "out").iterdir()) == []  # no context, binary, trace or record left behind


def test_realistic_weights_w8a16_is_more_faithful_than_w8a8(tmp_path):
    variant = get_variant("xs")
    ckpt = tmp_path / "xs_native.pth"
    torch.save(realistic_init(build_model(variant), seed=3).state_dict(), ckpt)
    figures = {}
    for precision in ("w8a8", "w8a16"):
        r = run_export(ExportRequest(variant="xs", resolution=64, weights=ckpt, precision=precision,
                                     output_dir=tmp_path / precision, min_sqnr=0, **SMALL))
        figures[precision] = r.manifest.stage("verify").results.quantized_vs_fp32.sqnr_db
    assert figures["w8a16"] > figures["w8a8"] + 3, figures


def test_min_sqnr_fails_the_export_and_writes_nothing(tmp_path):
    req = ExportRequest(variant="encoder", resolution=16, output_dir=tmp_path / "enc", min_sqnr=200, **SMALL)
    with pytest.raises(QuantizationFidelityError, match="--min-sqnr 200"):
        run_export(req)
    assert not (tmp_path / "enc").exists()


def test_fp16_compiles_the_float_graph_with_the_htp_fp16_mode(tmp_path):
    r = run_export(ExportRequest(variant="encoder", resolution=16, precision="fp16", output_dir=tmp_path / "e", **SMALL))
    assert read_compile_record(r.directory / "compile.json").fp16 is True
    q = r.manifest.stage("verify").results.quantized_vs_fp32
    assert q.measured_on.startswith("HTP emulator") and q.sqnr_db > 30
    assert "calibration.npy" not in r.manifest.stage("inputs").outputs


def test_calibration_folder_problems(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="No usable image"):
        run_export(_xs(tmp_path, calibration=empty))
    mixed = tmp_path / "mixed" / "nested"
    mixed.mkdir(parents=True)
    (mixed / "notes.bin").write_bytes(b"\x00\x01")
    (mixed / "broken.jpg").write_bytes(b"not a jpeg")
    for p in sorted(default_heldout_images().glob("*.jpg"))[:3]:
        (mixed / p.name).write_bytes(p.read_bytes())
    found = find_images(tmp_path / "mixed")
    assert len(found.files) == 3 and len(found.skipped) == 2
    with pytest.raises(CalibrationError, match="does not exist"):
        run_export(_xs(tmp_path, calibration=tmp_path / "nope"))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"variant": "l2"}, "Unknown variant"),
        ({"precision": "int4"}, "Unknown precision"),
        ({"soc": "sm9999"}, "Unknown SoC"),
        ({"resolution": 70}, "multiple of 32"),
        ({"opset": 5}, "--opset 5 is outside 11..20"),
        ({"opset": 23}, "--opset 23 is outside 11..20"),
        ({"variant": "encoder", "encoder_dim": 0}, "--encoder-dim 0 must be a positive number"),
        ({"variant": "encoder", "resolution": 0}, "--resolution 0 must be a positive number"),
        ({"variant": "encoder", "encoder_dim": 100}, "No SwiftFormer stage is 100 channels wide"),
        ({"variant": "l1", "encoder_dim": 96}, "--encoder-dim applies only to --variant encoder"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, kw, match):
    with pytest.raises(UsageError, match=match):
        run_export(ExportRequest(output_dir=tmp_path / "x", **kw))
    assert not (tmp_path / "x").exists()


def test_read_manifest_ignores_foreign_directories(tmp_path):
    assert read_manifest(tmp_path) is None
    (tmp_path / "manifest.json").write_text('{"kind": "something-else"}')
    assert read_manifest(tmp_path) is None


def test_hf_checkpoint_exports_in_softmax_form_and_the_manifest_says_so(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from checkpoints import make_checkpoint

    ckpt, _ = make_checkpoint(tmp_path, "xs", "hf", suffix=".safetensors")
    r = run_export(ExportRequest(variant="xs", resolution=64, weights=ckpt, until=Until.ONNX,
                                 output_dir=tmp_path / "o", **SMALL))
    export = r.manifest.stage("export").results
    assert export.attention == "softmax"
    assert export.weights["format"] == "hf" and export.weights["implied_attention"] == "softmax"
    assert r.manifest.request.weights.startswith("sha256:")
    assert any("softmax" in n for n in r.notes)
    # Asking for the other form is a different request, recorded as such.
    n = run_export(ExportRequest(variant="xs", resolution=64, weights=ckpt, attention="normalize", until=Until.ONNX,
                                 output_dir=tmp_path / "n", **SMALL))
    assert n.manifest.stage("export").results.attention == "normalize"
    assert n.manifest.stage("export").key != r.manifest.stage("export").key


def test_encoder_block_from_a_full_l1_checkpoint_calibrates_on_that_l1(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from checkpoints import make_checkpoint

    ckpt, l1 = make_checkpoint(tmp_path, "l1", "upstream", suffix=".pth")
    r = run_export(ExportRequest(variant="encoder", resolution=16, weights=ckpt, until=Until.ONNX,
                                 output_dir=tmp_path / "o", **SMALL))
    assert any("stage1" in n for n in r.notes)
    assert any("Calibration activations come from SwiftFormer-L1 with the given weights" in n for n in r.notes)
    heldout = np.load(r.directory / "heldout.npy")
    images = find_images(default_heldout_images(), 4)
    with torch.no_grad():
        x = l1.stage1.downsample(l1.stage0(l1.stem(torch.from_numpy(preprocess_all(images, 128)))))
        x = l1.stage1.block1_conv_encoder(l1.stage1.block0_conv_encoder(x))
    np.testing.assert_allclose(heldout, x.numpy(), rtol=1e-4, atol=1e-4)


def test_a_cached_file_edited_in_an_output_directory_is_not_reused(tmp_path):
    first = run_export(ExportRequest(variant="encoder", resolution=16, until=Until.ONNX, output_dir=tmp_path / "a", **SMALL))
    # Output files are copies, and cache hits are verified by hash: an in-place edit poisons nothing.
    with open(first.directory / "model.sim.onnx", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    second = run_export(ExportRequest(variant="encoder", resolution=16, until=Until.ONNX, output_dir=tmp_path / "b", **SMALL))
    assert second.manifest.stage("export").cached and second.manifest.stage("simplify").cached
    assert (second.directory / "model.sim.onnx").read_bytes() != (first.directory / "model.sim.onnx").read_bytes()


def test_another_min_sqnr_verifies_again_from_the_same_cpu_outputs(tmp_path):
    first = run_export(ExportRequest(variant="encoder", resolution=16, output_dir=tmp_path / "a", **SMALL))
    again = run_export(ExportRequest(variant="encoder", resolution=16, output_dir=tmp_path / "b", min_sqnr=5, **SMALL))
    assert again.manifest.stage("cpu_qdq").cached and not again.manifest.stage("verify").cached
    cpu = np.load(again.directory / "heldout_qdq_cpu.npy")
    assert cpu.shape[0] == np.load(again.directory / "heldout.npy").shape[0] == SMALL["heldout_count"]
    assert cpu.tobytes() == np.load(first.directory / "heldout_qdq_cpu.npy").tobytes()


def test_changed_code_is_not_served_from_the_cache(tmp_path, monkeypatch):
    import swiftformer_qnn.core.cache as cache

    run_export(ExportRequest(variant="encoder", resolution=16, until=Until.ONNX, output_dir=tmp_path / "a", **SMALL))
    monkeypatch.setattr(cache, "_CODE_VERSION", cache.code_version() + "-edited")
    again = run_export(ExportRequest(variant="encoder", resolution=16, until=Until.ONNX, output_dir=tmp_path / "b", **SMALL))
    assert not any(s.cached for s in again.manifest.stages)


def test_the_code_version_covers_every_source_file(tmp_path):
    """variants.py, which no stage's hand-kept file list named, changes the key like any other file."""
    import shutil

    import swiftformer_qnn
    from swiftformer_qnn.core.cache import source_tree_hash

    pkg = tmp_path / "swiftformer_qnn"
    shutil.copytree(Path(swiftformer_qnn.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = source_tree_hash(pkg)
    assert source_tree_hash(pkg) == before  # deterministic
    variants = pkg / "model" / "variants.py"
    variants.write_text(variants.read_text().replace("(48, 56, 112, 220)", "(48, 56, 112, 224)", 1))
    assert variants.read_text() != (Path(swiftformer_qnn.__file__).parent / "model" / "variants.py").read_text()
    assert source_tree_hash(pkg) != before
    (pkg / "pipeline" / "new_stage.py").write_text("X = 1\n")
    assert len({before, source_tree_hash(pkg)}) == 2


def test_identical_outputs_give_an_exact_sqnr_that_survives_json():
    from swiftformer_qnn.measure.agreement import compare_outputs, sqnr_below

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    same = json.loads(json.dumps(compare_outputs(x, x.copy(), classify=True)))
    assert same["exact"] and same["sqnr_db"] is None and not sqnr_below(same, 100)
    zero = compare_outputs(np.zeros((1, 3)), np.ones((1, 3)), classify=False)
    assert zero["sqnr_db"] is None and not zero["exact"] and sqnr_below(zero, 0) and zero["cosine_min"] == 0.0
    noisy = compare_outputs(x, x + 0.01, classify=False)
    assert 40 < noisy["sqnr_db"] < 60 and not sqnr_below(noisy, 30) and sqnr_below(noisy, 70)


def test_the_pytorch_models_are_gone_before_the_calibration(tmp_path, monkeypatch):
    """The calibration and verify are the export's peaks of memory. The block and the L1 that
    feeds its calibration are no longer held once the reference stage has their outputs, before
    the quantize stage begins: the reference waits here for the quantize to begin, in vain."""
    import gc
    import threading
    import weakref

    import swiftformer_qnn.model.swiftformer as swiftformer
    import swiftformer_qnn.pipeline.quantize as quantize
    import swiftformer_qnn.pipeline.validate as validate

    built, alive_at_calibration, quantizing, began = [], [], threading.Event(), []
    build, real_quantize, real_reference = swiftformer.build_model, quantize.quantize_qdq, validate.torch_outputs

    def tracked(*args, **kw):
        model = build(*args, **kw)
        built.append(weakref.ref(model))
        return model

    def quantize_qdq(*args, **kw):
        quantizing.set()
        gc.collect()
        alive_at_calibration.extend(ref() is not None for ref in built)
        return real_quantize(*args, **kw)

    def torch_outputs(*args, **kw):
        began.append(quantizing.wait(timeout=2))
        return real_reference(*args, **kw)

    monkeypatch.setattr(swiftformer, "build_model", tracked)
    monkeypatch.setattr(quantize, "quantize_qdq", quantize_qdq)
    monkeypatch.setattr(validate, "torch_outputs", torch_outputs)
    run_export(ExportRequest(variant="encoder", resolution=16, until=Until.QUANTIZE, output_dir=tmp_path / "enc",
                             use_cache=False, **SMALL))
    assert len(built) == 2  # the block, and the L1 whose activations calibrate it
    assert began == [False]
    assert alive_at_calibration == [False, False]


def test_the_reference_runs_beside_the_fold_and_the_quantize_beside_validate(tmp_path, monkeypatch):
    """PyTorch's reference does not wait for onnxsim and the fold, and the calibration does not
    wait for validate: the fold waits here until the reference has begun, and validate's
    onnxruntime run until the quantize has begun; neither would begin if the one waited for held it."""
    import threading

    import swiftformer_qnn.measure.agreement as agreement
    import swiftformer_qnn.pipeline.fold_bn as fold_bn
    import swiftformer_qnn.pipeline.quantize as quantize
    import swiftformer_qnn.pipeline.validate as validate

    referencing, quantizing, waited = threading.Event(), threading.Event(), {}
    real_fold, real_quantize = fold_bn.fold_stage, quantize.quantize_qdq
    real_reference, real_run_cpu = validate.torch_outputs, agreement.run_cpu

    def fold_stage(*args, **kw):
        waited["fold"] = referencing.wait(timeout=30)
        return real_fold(*args, **kw)

    def quantize_qdq(*args, **kw):
        quantizing.set()
        return real_quantize(*args, **kw)

    def torch_outputs(*args, **kw):
        referencing.set()
        return real_reference(*args, **kw)

    def run_cpu(*args, **kw):  # validate's onnxruntime run of the float graph
        waited["validate"] = quantizing.wait(timeout=30)
        return real_run_cpu(*args, **kw)

    monkeypatch.setattr(fold_bn, "fold_stage", fold_stage)
    monkeypatch.setattr(quantize, "quantize_qdq", quantize_qdq)
    monkeypatch.setattr(validate, "torch_outputs", torch_outputs)
    monkeypatch.setattr(agreement, "run_cpu", run_cpu)
    run_export(_xs(tmp_path, until=Until.QUANTIZE, use_cache=False))
    assert waited == {"fold": True, "validate": True}


def test_a_validate_failure_beside_the_quantize_stops_the_export_there(tmp_path, monkeypatch):
    """Validate fails while the quantize runs beside it: its error is the one raised, no stage
    after the quantize begins (nothing is compiled from a graph validate refused), no worker is
    left waiting and no output folder is left."""
    import swiftformer_qnn.pipeline.validate as validate
    from swiftformer_qnn.htp import workers

    monkeypatch.setattr(validate, "torch_outputs", lambda model, inputs: np.full((inputs.shape[0], 1000), 5, np.float32))
    request = _xs(tmp_path, use_cache=False)
    begun = []
    with pytest.raises(ExportValidationError, match="does not match PyTorch"):
        run_export(request, lambda e: begun.append(e.stage) if e.status == "start" else None)
    assert "quantize" in begun
    assert not {"guard", "compile", "estimate", "cpu_qdq", "verify"} & set(begun)
    assert not workers._ahead
    assert not request.output_dir.exists()


def test_the_compile_and_the_estimate_take_the_workers_started_during_the_quantize(tmp_path, monkeypatch):
    """Their start-up (interpreter, imports) runs beside the quantize stage, not inside the
    compile and estimate stages, and not before validate is done (validate and the calibration
    together are the export's peak of memory); none is left waiting after the export."""
    from swiftformer_qnn.htp import workers

    workers.discard_ahead()  # one left waiting by an earlier test would pass for this export's
    taken, ended, started = [], set(), []
    real_take, real_start_ahead = workers.take, workers.start_ahead

    def start_ahead(command):
        started.append((command, "validate" in ended))
        real_start_ahead(command)

    def progress(event):
        if event.status in ("done", "cached"):
            ended.add(event.stage)

    monkeypatch.setattr(workers, "start_ahead", start_ahead)

    def take(command):
        taken.append((command, bool(workers._ahead.get(command))))  # was one waiting?
        return real_take(command)

    monkeypatch.setattr("swiftformer_qnn.htp.compile.take", take)
    monkeypatch.setattr(workers, "take", take)  # the estimate's
    run_export(ExportRequest(variant="encoder", resolution=16, output_dir=tmp_path / "enc", use_cache=False, **SMALL),
               progress)
    assert sorted(taken) == [("compile", True), ("estimate", True)]
    assert sorted(set(started)) == [("compile", True), ("estimate", True)]


def test_workers_started_for_stages_found_in_the_cache_do_not_wait_through_verify(tmp_path, monkeypatch):
    from swiftformer_qnn.htp import workers

    monkeypatch.setenv("SWIFTFORMER_QNN_CACHE", str(tmp_path / "cache"))
    request = dict(variant="encoder", resolution=16, **SMALL)
    run_export(ExportRequest(output_dir=tmp_path / "first", **request))
    waiting = []

    def progress(event):
        if event.stage == "verify" and event.status == "start":
            waiting.append(sorted(workers._ahead))

    result = run_export(ExportRequest(output_dir=tmp_path / "second", **request), progress)
    assert all(s.cached for s in result.manifest.stages)  # validate's end or the quantize's start still started both
    assert waiting == [[]]


def test_a_refused_compile_leaves_no_worker_waiting(tmp_path):
    """`compile MODEL.onnx` starts its worker before its checks; a refusal ends it."""
    from swiftformer_qnn.htp import workers
    from swiftformer_qnn.pipeline import CompileRequest, run_compile

    float_model = tmp_path / "float.onnx"
    export_onnx(build_model(get_variant("encoder")).eval(), get_variant("encoder").input_shape(16), float_model,
                is_encoder_block=True)
    with pytest.raises(UsageError, match="float model"):
        run_compile(CompileRequest(model=float_model, output_dir=tmp_path / "out"))
    assert not workers._ahead.get("compile")
    assert not (tmp_path / "out").exists()


def test_a_model_saved_with_a_newer_onnx_ir_than_onnxruntime_reads_is_refused_in_one_line(tmp_path):
    """onnxruntime's own refusal was its C++ signature cut mid-way, naming a stage-cache temp file."""
    from onnx import TensorProto, helper

    from swiftformer_qnn.pipeline import CompileRequest, run_compile

    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 99  # above what any onnxruntime reads
    path = tmp_path / "newer.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UsageError, match=r"The model is ONNX IR version 99; this onnxruntime reads up to IR version \d+") as err:
        run_compile(CompileRequest(model=path, fp16=True, output_dir=tmp_path / "out"))
    assert "set model.ir_version" in err.value.one_line()  # the hint, carried from the worker
    assert not (tmp_path / "out").exists()
