"""Checkpoint loading: every format, the quirks of real files, and one-line errors.

Key names are checked against rules we did not write: HF's conversion script
(`convert_swiftformer_original_to_hf.py`, upstream -> HF, restated below and applied to HF's own
model's state dict) and timm's own `checkpoint_filter_fn` (upstream -> timm).
"""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest
import torch
from checkpoints import (
    CheckpointFiles,
    export_state_dict,
    hf_reference_model,
    make_checkpoint,
    realistic_model,
    training_checkpoint,
    write_checkpoint,
)

from swiftformer_qnn.core.errors import WeightsError
from swiftformer_qnn.model.swiftformer import (
    AttentionForm,
    EfficientAdditiveAttention,
    build_model,
    set_attention_form,
)
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.model.weights import (
    CheckpointFormat,
    detect_format,
    load_checkpoint_file,
    load_weights,
    to_native,
)

XS = get_variant("xs")
X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def xs(tmp_path_factory):
    """One realistic XS model and its files, shared: the machine is small and shared."""
    return CheckpointFiles(tmp_path_factory.mktemp("xs"), XS, seed=7)


_BLANKS: dict = {}


def blank(variant, form=AttentionForm.NORMALIZE):
    """A `variant` model whose every weight is NaN, so anything a load misses poisons the output.

    One instance per variant, reused: building re-runs the random init, the slowest step here.
    """
    if variant not in _BLANKS:
        _BLANKS[variant] = build_model(variant)
    model = _BLANKS[variant]
    set_attention_form(model, form)
    with torch.no_grad():
        for t in itertools.chain(model.parameters(), model.buffers()):
            if t.is_floating_point():
                t.fill_(float("nan"))
    return model


def _logits(model, x=X):
    with torch.no_grad():
        return model(x)


def _forms(model):
    return {m.form for m in model.modules() if isinstance(m, EfficientAdditiveAttention)}


def _error(model, path, variant=XS, **kwargs) -> str:
    with pytest.raises(WeightsError) as info:
        load_weights(model, path, variant, **kwargs)
    line = info.value.one_line()
    assert "\n" not in line
    return line


# --- every format ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "suffix", "wrapper"),
    [
        (CheckpointFormat.UPSTREAM, ".pth", None),
        (CheckpointFormat.UPSTREAM, ".pth", "model"),
        (CheckpointFormat.HF, ".safetensors", None),
        (CheckpointFormat.HF, ".bin", None),
        (CheckpointFormat.TIMM, ".pth", None),
        (CheckpointFormat.NATIVE, ".pth", None),
        (CheckpointFormat.NATIVE, ".safetensors", None),
    ],
)
def test_each_format_loads_to_identical_outputs(xs, fmt, suffix, wrapper):
    path, source = xs.path(fmt, suffix, wrapper), xs.model
    model = blank(XS)
    # One attention form for all, so only the weights can make outputs differ.
    loaded = load_weights(model, path, XS, AttentionForm.NORMALIZE)
    assert loaded.format is fmt
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert torch.equal(_logits(model), _logits(source))


def test_upstream_names_follow_hf_conversion_rules():
    """HF's model renamed back by HF's own upstream->HF rules must be our upstream export."""

    def hf_rename(key: str) -> str:  # restated from transformers' convert_swiftformer_original_to_hf.py
        key = key.replace(".pwconv", ".point_wise_conv").replace(".dwconv", ".depth_wise_conv")
        key = key.replace(".Proj.", ".proj.")
        key = key.replace("patch_embed", "swiftformer.patch_embed.patch_embedding")
        if "network" in key:
            parts = key.split(".")
            if parts[2].isdigit():
                key = f"swiftformer.encoder.network.{parts[1]}.blocks.{parts[2]}." + ".".join(parts[3:])
            else:
                key = key.replace("network", "swiftformer.encoder.network")
        return key

    hf_state = hf_reference_model(XS, seed=2).state_dict()
    upstream = export_state_dict(to_native(hf_state, CheckpointFormat.HF), CheckpointFormat.UPSTREAM)
    renamed = {hf_rename(k): v for k, v in upstream.items()}
    assert renamed.keys() == hf_state.keys()
    assert all(torch.equal(renamed[k], hf_state[k]) for k in hf_state)
    # Spot checks against upstream's models/swiftformer.py module tree.
    assert upstream["network.1.proj.weight"].shape == (56, 48, 3, 3)  # Embedding into stage 1
    assert upstream["patch_embed.3.weight"].shape == (48, 24, 3, 3)
    assert upstream["network.6.3.layer_scale_1"].shape == (220, 1, 1)
    assert "network.0.2.attn.Proj.weight" in upstream and "dist_head.weight" in upstream


def test_timm_names_follow_timm_filter_rules(xs):
    """timm's own checkpoint_filter_fn applied to our upstream export gives our timm export, and
    exactly the keys of timm's model."""
    from timm_reference import import_timm

    timm = import_timm()
    from timm.models.swiftformer import checkpoint_filter_fn

    model = xs.model
    upstream = export_state_dict(model, CheckpointFormat.UPSTREAM)
    renamed = set(checkpoint_filter_fn({"model": upstream}, None))
    assert renamed == set(export_state_dict(model, CheckpointFormat.TIMM))
    assert renamed == set(timm.create_model("swiftformer_xs").state_dict())


@pytest.mark.parametrize(
    ("keys", "fmt"),
    [
        (
            ["patch_embed.0.weight", "network.0.0.dwconv.weight", "network.1.proj.weight", "dist_head.bias"],
            "upstream",
        ),
        (["swiftformer.encoder.network.0.blocks.0.depth_wise_conv.weight", "dist_head.bias"], "hf"),
        (["encoder.network.0.blocks.0.layer_scale", "patch_embed.patch_embedding.0.weight"], "hf"),
        (["stem.0.weight", "stages.1.downsample.proj.weight", "head_dist.bias"], "timm"),
        (["stem.conv1.weight", "stage0.block0_conv_encoder.dwconv.weight", "head.dist_fc.bias"], "native"),
        (["attn.Proj.weight", "linear.fc1.weight", "layer_scale_1"], "upstream"),  # bare blocks
        (["attn.proj.weight", "local_representation.depth_wise_conv.weight", "layer_scale_1"], "hf"),
        (["attn.proj.weight", "local_representation.dwconv.weight", "layer_scale_1.gamma"], "timm"),
        (["swiftformer_encoder.attention.w_g"], "native"),
        (["attention.w_g", "mlp.fc1.weight", "attention_scale"], "native"),
    ],
)
def test_detect_format(keys, fmt):
    assert detect_format(dict.fromkeys(keys, torch.zeros(1))) is CheckpointFormat(fmt)


def test_unknown_naming_names_keys_seen():
    with pytest.raises(WeightsError, match=r"keys seen: weight, bias"):
        detect_format(torch.nn.Linear(2, 2).state_dict())


# --- quirks of real files ----------------------------------------------------------------------


def test_training_checkpoint_loads_model_not_ema(tmp_path, xs):
    """Upstream's main.py output: weights next to EMA weights, optimizer state and argparse args."""
    model, ema = xs.model, realistic_model(XS, seed=2)
    path = tmp_path / "checkpoint.pth"
    torch.save(
        training_checkpoint(
            export_state_dict(model, CheckpointFormat.UPSTREAM),
            export_state_dict(ema, CheckpointFormat.UPSTREAM),
        ),
        path,
    )
    target = blank(XS)
    loaded = load_weights(target, path, XS)
    assert any("'model'" in note for note in loaded.notes)
    assert torch.equal(_logits(target), _logits(model))
    assert load_checkpoint_file(path).keys() == export_state_dict(model, CheckpointFormat.UPSTREAM).keys()


def test_data_parallel_prefix_and_ema_only_file(tmp_path, xs):
    source = xs.model
    path = tmp_path / "ema.pth"
    torch.save(
        {"model_ema": {f"module.{k}": v for k, v in export_state_dict(source, "upstream").items()}}, path
    )
    target = blank(XS)
    load_weights(target, path, XS)
    assert torch.equal(_logits(target), _logits(source))


def test_vector_layer_scales_half_precision_and_no_bn_counters(tmp_path):
    """(dim,) layer scales, float16 storage and absent num_batches_tracked all carry the same weights."""
    source = realistic_model(XS, seed=6)
    state = {}
    for k, v in export_state_dict(source, CheckpointFormat.UPSTREAM).items():
        if k.endswith("num_batches_tracked"):
            continue
        if re.search(r"layer_scale(_\d)?$", k):
            v = v.flatten()
        state[k] = v.half() if v.is_floating_point() else v
    path = tmp_path / "quirky.pth"
    torch.save(state, path)
    target = blank(XS)
    loaded = load_weights(target, path, XS)
    assert any("Reshaped" in n for n in loaded.notes) and any("float16" in n for n in loaded.notes)
    with torch.no_grad():
        for p in source.parameters():
            p.copy_(p.half().float())
        for b in source.buffers():
            if b.is_floating_point():
                b.copy_(b.half().float())
    assert torch.equal(_logits(target), _logits(source))


# --- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    assert "does not exist" in _error(blank(XS), tmp_path / "nope.pth")


def test_directory_points_at_the_file_inside(tmp_path):
    hf_dir = tmp_path / "swiftformer-xs"
    hf_dir.mkdir()
    (hf_dir / "model.safetensors").write_bytes(b"")
    line = _error(blank(XS), hf_dir)
    assert "is a directory" in line and "model.safetensors" in line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"hello, I am a README\n",
            "weights.pth is not a readable PyTorch checkpoint (not torch.save data).",
        ),
        (b"", "weights.pth is empty."),
    ],
)
def test_not_a_checkpoint(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    assert _error(blank(XS), path).startswith(message)


def test_pickled_objects_are_refused_by_name(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    line = _error(blank(XS), path)
    assert "torch.nn.modules.linear.Linear" in line and "weights_only" in line


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_download(tmp_path, xs, suffix):
    with xs.path(CheckpointFormat.UPSTREAM, suffix).open("rb") as f:
        head = f.read(1000)
    path = tmp_path / f"partial{suffix}"
    path.write_bytes(head)
    assert "re-download" in _error(blank(XS), path).lower()


def test_wrong_variant_names_the_checkpoints_variant(xs):
    path = xs.path(CheckpointFormat.UPSTREAM)
    line = _error(blank(get_variant("l1")), path, get_variant("l1"))
    assert line.startswith(
        f"{path.name} is a SwiftFormer-XS checkpoint (stage widths 48/56/112/220, depths 3/3/6/4)"
    )
    assert "not L1" in line and "stage1.downsample.proj.weight (56,48,3,3) vs (96,48,3,3)" in line
    assert line.endswith("Pass --variant xs or the L1 weights.")


def test_truncated_keys_are_counted_and_named(tmp_path, xs):
    state = export_state_dict(xs.model, CheckpointFormat.HF)
    dropped = [k for k in state if k.startswith("swiftformer.encoder.network.6.blocks.3.")]
    for k in dropped:
        del state[k]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.bin"
    torch.save(state, path)
    line = _error(blank(XS), path)
    assert f"{len(dropped)} keys are missing, e.g. stage3.block3_swiftformer_encoder." in line
    assert "1 key is unexpected, e.g. extra.weight" in line


def test_other_class_count(tmp_path, xs):
    state = export_state_dict(xs.model, CheckpointFormat.TIMM)
    for k in ("head", "head_dist"):
        state[f"{k}.weight"], state[f"{k}.bias"] = torch.zeros(10, 220), torch.zeros(10)
    path = tmp_path / "finetuned.pth"
    torch.save(state, path)
    assert "10-class classifier" in _error(blank(XS), path)


def test_block_only_file_for_a_full_model(tmp_path):
    encoder = get_variant("encoder")
    path = write_checkpoint(realistic_model(encoder), tmp_path / "block.pth", CheckpointFormat.NATIVE)
    assert "--variant encoder" in _error(blank(XS), path)


# --- the standalone encoder block --------------------------------------------------------------


def test_encoder_from_full_l1_checkpoint_takes_stage1(tmp_path):
    l1 = get_variant("l1")
    path, source = make_checkpoint(tmp_path, l1, CheckpointFormat.UPSTREAM, seed=8)
    encoder = get_variant("encoder")
    block = blank(encoder)
    loaded = load_weights(block, path, encoder)
    assert any("stage1.block2_swiftformer_encoder" in n and "SwiftFormer-L1" in n for n in loaded.notes)
    x = torch.randn(1, 96, 16, 16)
    assert torch.equal(_logits(block, x), _logits(source.stage1.block2_swiftformer_encoder, x))


def test_encoder_dim_picks_the_matching_stage(xs):
    path, source = xs.path(CheckpointFormat.TIMM), xs.model
    encoder = get_variant("encoder", encoder_dim=112)
    block = blank(encoder)
    load_weights(block, path, encoder)
    x = torch.randn(1, 112, 8, 8)
    assert torch.equal(_logits(block, x), _logits(source.stage2.block5_swiftformer_encoder, x))


def test_encoder_without_a_matching_stage(xs):
    path = xs.path(CheckpointFormat.UPSTREAM)
    encoder = get_variant("encoder")
    line = _error(blank(encoder), path, encoder)
    assert "48/56/112/220" in line and "96" in line and "--encoder-dim 48" in line


@pytest.mark.parametrize("prefixed", [True, False])
def test_block_only_state_dict(tmp_path, prefixed):
    encoder = get_variant("encoder")
    source = realistic_model(encoder, seed=10)
    state = source.state_dict()
    if not prefixed:
        state = {k.removeprefix("swiftformer_encoder."): v for k, v in state.items()}
    path = tmp_path / "block.pth"
    torch.save(state, path)
    block = blank(encoder)
    load_weights(block, path, encoder)
    x = torch.randn(1, 96, 8, 8)
    assert torch.equal(_logits(block, x), _logits(source, x))


def test_encoder_block_of_another_dim(tmp_path):
    source = realistic_model(get_variant("encoder", encoder_dim=64))
    path = write_checkpoint(source, tmp_path / "block64.safetensors", CheckpointFormat.NATIVE)
    encoder = get_variant("encoder")
    assert "--encoder-dim 64" in _error(blank(encoder), path, encoder)


# --- attention form ----------------------------------------------------------------------------


def test_upstream_implies_normalize_and_mentions_old_downloads(xs):
    path = xs.path(CheckpointFormat.UPSTREAM)
    model = blank(XS, AttentionForm.SOFTMAX)
    loaded = load_weights(model, path, XS)
    assert (loaded.implied_attention, loaded.effective_attention) == (AttentionForm.NORMALIZE,) * 2
    assert _forms(model) == {AttentionForm.NORMALIZE}
    assert any("July 2023" in n and "--attention softmax" in n for n in loaded.notes)


def test_requested_form_overrides_and_is_noted(xs):
    path = xs.path(CheckpointFormat.UPSTREAM)
    model = blank(XS)
    loaded = load_weights(model, path, XS, AttentionForm.SOFTMAX)
    assert (loaded.implied_attention, loaded.effective_attention) == (
        AttentionForm.NORMALIZE,
        AttentionForm.SOFTMAX,
    )
    assert _forms(model) == {AttentionForm.SOFTMAX}
    assert any("as requested" in n for n in loaded.notes)


def test_hf_implies_softmax(xs):
    path = xs.path(CheckpointFormat.HF)
    model = blank(XS)
    loaded = load_weights(model, path, XS)
    assert loaded.effective_attention is AttentionForm.SOFTMAX and _forms(model) == {AttentionForm.SOFTMAX}
    assert not any("as requested" in n for n in loaded.notes)


def test_native_form_comes_from_file_metadata(tmp_path, xs):
    recorded = write_checkpoint(xs.model, tmp_path / "a.safetensors", attention=AttentionForm.SOFTMAX)
    unrecorded = xs.path(CheckpointFormat.NATIVE, ".pth")
    assert load_weights(blank(XS), recorded, XS).implied_attention is AttentionForm.SOFTMAX
    loaded = load_weights(blank(XS), unrecorded, XS)
    assert loaded.implied_attention is AttentionForm.NORMALIZE
    assert any("does not record" in n for n in loaded.notes)
