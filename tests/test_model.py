"""Our PyTorch SwiftFormer is faithful: published sizes, and HF transformers as an independent reference.

HF's port is a separate implementation (its own module tree, its own loading) of the first
release, i.e. the softmax attention form. Its weights reach our model only through
`load_weights` reading the file HF itself wrote, so agreement checks our model and our HF
key mapping together against code we did not write.
"""

from __future__ import annotations

import pytest
import torch
from checkpoints import hf_config, hf_reference_block, hf_reference_model, realistic_model, write_checkpoint

from swiftformer_qnn.model.swiftformer import AttentionForm, build_model, set_attention_form
from swiftformer_qnn.model.variants import VARIANTS, get_variant
from swiftformer_qnn.model.weights import CheckpointFormat, load_weights

ATOL = 1e-4


@pytest.mark.parametrize("name", ["xs", "s", "l1", "l3"])
def test_param_count_matches_published(name):
    variant = VARIANTS[name]
    with torch.device("meta"):  # shapes only: skips the random init of up to 28M weights
        model = build_model(variant)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == variant.published_params_m


def test_features_are_stride_32_with_last_stage_width():
    variant = get_variant("xs")
    with torch.no_grad():
        features = build_model(variant).forward_features(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, variant.widths[-1], 2, 2)


def _compare_with_hf(directory, variant_name, resolution, seed=0):
    """HF's own model with realistic weights, saved by HF itself, loaded into ours; both run on x."""
    variant = get_variant(variant_name)
    hf = hf_reference_model(variant_name, seed=seed)
    hf.save_pretrained(directory)
    ours = build_model(variant)
    loaded = load_weights(ours, directory / "model.safetensors", variant)
    x = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = hf(pixel_values=x).logits
        got = ours(x)
    return loaded, expected, got, ours, x


@pytest.fixture(scope="module")
def xs_vs_hf(tmp_path_factory):
    return _compare_with_hf(tmp_path_factory.mktemp("hf_xs"), "xs", 64)


def test_xs_matches_hf_transformers_in_softmax_form(xs_vs_hf):
    loaded, expected, got, _, _ = xs_vs_hf
    assert loaded.format is CheckpointFormat.HF
    assert loaded.effective_attention is AttentionForm.SOFTMAX
    # Realistic weights make the logits depend on the input; a vanishing-residual model would not.
    assert (expected[0] - expected[1]).abs().max() > 0.1
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_normalize_form_differs_from_hf(xs_vs_hf):
    """The July 2023 attention fix changes the outputs, so running the wrong form is a real error."""
    _, expected, _, ours, x = xs_vs_hf
    set_attention_form(ours, AttentionForm.NORMALIZE)
    with torch.no_grad():
        normalized = ours(x)
    set_attention_form(ours, AttentionForm.SOFTMAX)
    assert (normalized - expected).abs().max() > 100 * ATOL


def test_hf_loads_our_export_with_its_own_loader(tmp_path):
    """Our weights, exported to HF names, load through `from_pretrained` with nothing missing."""
    from transformers import SwiftFormerForImageClassification

    ours = realistic_model("xs", seed=3, form=AttentionForm.SOFTMAX)
    directory = tmp_path / "export"
    directory.mkdir()
    hf_config("xs").save_pretrained(directory)
    write_checkpoint(ours, directory / "model.safetensors", CheckpointFormat.HF)
    hf, info = SwiftFormerForImageClassification.from_pretrained(directory, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf.eval()(pixel_values=x).logits, atol=ATOL, rtol=0)


def test_encoder_block_matches_hf_encoder_block(tmp_path):
    """The standalone block (`--variant encoder`) against HF's SwiftFormerEncoderBlock, bare keys."""
    from safetensors.torch import save_file

    variant = get_variant("encoder")
    hf_block = hf_reference_block(variant.encoder_dim, seed=1)
    path = tmp_path / "block.safetensors"
    save_file({k: v.contiguous() for k, v in hf_block.state_dict().items()}, str(path))
    ours = build_model(variant)
    loaded = load_weights(ours, path, variant)
    assert loaded.format is CheckpointFormat.HF
    x = torch.randn(1, variant.encoder_dim, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf_block(x), atol=ATOL, rtol=0)


@pytest.mark.slow
def test_l1_at_224_matches_hf_transformers(tmp_path):
    _, expected, got, _, _ = _compare_with_hf(tmp_path, "l1", 224, seed=5)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
