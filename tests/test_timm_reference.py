"""Our SwiftFormer against timm's, the independent implementation of the normalize attention form.

The same upstream-format checkpoint file (realistic magnitudes: layer scales 0.1-1, BN statistics
away from identity) goes into timm through timm's own pretrained-file path (its
`checkpoint_filter_fn` renames upstream keys) and into ours through `load_weights`; both run on
the same inputs. timm's own state dict, written by timm, loads into ours too. The exported graphs
(`--graph htp` and `--graph faithful`, BatchNorm folded) are checked against timm as well.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from checkpoints import realistic_model, write_checkpoint
from timm_reference import StandInUsed, import_timm, timm_from_checkpoint

from swiftformer_qnn.measure.agreement import run_cpu
from swiftformer_qnn.model.swiftformer import AttentionForm, build_model, realistic_init
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.model.weights import CheckpointFormat, load_weights
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export

ATOL = 1e-4


def _upstream_file(tmp_path, variant_name: str, seed: int):
    """An upstream training checkpoint ({"model": state_dict}, `network.{i}.{j}` keys) of realistic weights."""
    return write_checkpoint(realistic_model(variant_name, seed=seed), tmp_path / f"{variant_name}.pth",
                            CheckpointFormat.UPSTREAM, wrapper="model")


def _ours(variant_name: str, path):
    model = build_model(get_variant(variant_name))
    loaded = load_weights(model, path, get_variant(variant_name))
    return model, loaded


def _inputs(resolution: int, seed: int) -> torch.Tensor:
    return torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))


def _assert_matches_timm(got: torch.Tensor, expected: torch.Tensor) -> None:
    # Realistic weights make the logits depend on the input; vanishing residual branches would not.
    assert (expected[0] - expected[1]).abs().max() > 0.1
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-4)


def test_the_torchvision_stand_in_plays_no_part():
    """timm imports with a stand-in torchvision whose every name refuses to be used, and the
    stand-in is gone from sys.modules afterwards."""
    import sys

    timm = import_timm()
    assert not [k for k, v in sys.modules.items() if k.startswith("torchvision") and v is not None]
    from timm.layers import create_norm

    with pytest.raises(StandInUsed):
        create_norm.FrozenBatchNorm2d(8)  # what timm imported from torchvision refuses to run
    assert "swiftformer_xs" in timm.list_models("swiftformer*")


def test_xs_at_224_matches_timm(tmp_path):
    path = _upstream_file(tmp_path, "xs", seed=11)
    reference = timm_from_checkpoint("xs", path)
    ours, loaded = _ours("xs", path)
    assert loaded.format is CheckpointFormat.UPSTREAM
    assert loaded.effective_attention is AttentionForm.NORMALIZE
    x = _inputs(224, seed=1)
    with torch.no_grad():
        _assert_matches_timm(ours(x), reference(x))


@pytest.mark.parametrize("variant_name", ["xs", "s", "l1", "l3"])
def test_every_variant_matches_timm_at_64(tmp_path, variant_name):
    path = _upstream_file(tmp_path, variant_name, seed=12)
    reference = timm_from_checkpoint(variant_name, path)
    ours, _ = _ours(variant_name, path)
    x = _inputs(64, seed=2)
    with torch.no_grad():
        _assert_matches_timm(ours(x), reference(x))


def test_softmax_form_differs_from_timm(tmp_path):
    """timm runs the normalize form: the first release's softmax form is measurably another model."""
    path = _upstream_file(tmp_path, "xs", seed=13)
    reference = timm_from_checkpoint("xs", path)
    model = build_model(get_variant("xs"))
    load_weights(model, path, get_variant("xs"), AttentionForm.SOFTMAX)
    x = _inputs(64, seed=3)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max() > 100 * ATOL


@torch.no_grad()
def test_timms_own_state_dict_loads_into_ours(tmp_path):
    """Weights named and written by timm's model itself (not by our export tables)."""
    timm = import_timm()
    reference = realistic_init(timm.create_model("swiftformer_xs"), seed=14)
    gen = torch.Generator().manual_seed(15)
    for name, p in reference.named_parameters():
        if name.endswith("gamma"):  # timm's LayerScale2d, which realistic_init does not know by name
            p.copy_(0.1 + 0.9 * torch.rand(p.shape, generator=gen))
    path = tmp_path / "timm_xs.pth"
    torch.save(reference.state_dict(), path)
    ours, loaded = _ours("xs", path)
    assert loaded.format is CheckpointFormat.TIMM
    x = _inputs(64, seed=4)
    _assert_matches_timm(ours(x), reference.eval()(x))


@pytest.mark.parametrize("graph", ["htp", "faithful"])
def test_exported_float_graph_matches_timm(tmp_path, graph):
    """What `export --weights upstream.pth --graph G` quantizes (the validated float ONNX: the
    HTP-ready form with BatchNorm folded by default, the literal graph for faithful) computes
    timm's SwiftFormer."""
    path = _upstream_file(tmp_path, "xs", seed=16)
    result = run_export(ExportRequest(variant="xs", weights=path, resolution=64, graph=graph, until=Until.ONNX,
                                      calibration_count=8, heldout_count=4, output_dir=tmp_path / "out"))
    validated = result.manifest.stage("validate").results.graph
    stage = "fold_bn" if validated == "model.fold.onnx" else "simplify"
    assert (graph, stage) in {("htp", "fold_bn"), ("faithful", "simplify")}
    onnx_path = result.artifact(stage, validated)
    x = _inputs(64, seed=5)
    with torch.no_grad():
        expected = timm_from_checkpoint("xs", path)(x).numpy()
    got = run_cpu(onnx_path, x.numpy())
    assert np.abs(expected[0] - expected[1]).max() > 0.1
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=1e-4)
