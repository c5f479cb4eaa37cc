"""Test helpers: models with trained-like weights and checkpoint files in every format.

Not a conftest: tests of other pieces import these to get realistic weights on disk.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from swiftformer_qnn.model.swiftformer import AttentionForm, build_model, realistic_init
from swiftformer_qnn.model.variants import Variant, get_variant
from swiftformer_qnn.model.weights import (
    _HEAD_NAMES,
    _STEM_LAYERS,
    ATTENTION_METADATA_KEY,
    CheckpointFormat,
    _block_names,
    _rename_prefix,
)

# The file type each format is usually distributed as.
DEFAULT_SUFFIX = {
    CheckpointFormat.UPSTREAM: ".pth",
    CheckpointFormat.HF: ".safetensors",
    CheckpointFormat.TIMM: ".pth",
    CheckpointFormat.NATIVE: ".safetensors",
}


# Our names -> a foreign format's: the inverse of `weights.to_native`, built from the same name
# tables, so a round trip checks the tables against each other; the tests check the foreign
# names against HF's and timm's own renaming rules.


def export_state_dict(
    model: nn.Module | Mapping[str, torch.Tensor], fmt: CheckpointFormat
) -> dict[str, torch.Tensor]:
    """Our model's (or our-named state dict's) weights in `fmt`'s naming; the inverse of `to_native`.

    A standalone encoder block exports as a bare block (e.g. HF's `SwiftFormerEncoderBlock` keys).
    """
    sd = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    fmt = CheckpointFormat(fmt)
    if fmt is CheckpointFormat.NATIVE:
        return dict(sd)
    names = _block_names(fmt)
    heads = _HEAD_NAMES[fmt]
    stem_index = {ours: idx for idx, ours in _STEM_LAYERS.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith("swiftformer_encoder."):
            new = _rename_prefix(key[len("swiftformer_encoder.") :], names)
        elif m := re.fullmatch(r"stem\.(conv1|norm1|conv2|norm2)\.(.+)", key):
            new = _foreign_stem(fmt, stem_index[m.group(1)], m.group(2))
        elif m := re.fullmatch(r"stage(\d+)\.downsample\.(.+)", key):
            new = _foreign_downsample(fmt, int(m.group(1)), m.group(2))
        elif m := re.fullmatch(r"stage(\d+)\.block(\d+)_[a-z_]+?\.(.+)", key):
            new = _foreign_block(fmt, int(m.group(1)), int(m.group(2)), _rename_prefix(m.group(3), names))
        elif m := re.fullmatch(r"head\.(norm|fc|dist_fc)\.(.+)", key):
            new = f"{heads[m.group(1)]}.{m.group(2)}"
        else:
            new = None
        if new is None:
            raise ValueError(f"no {fmt.value} name for {key!r}")  # a bug in this table, not user input
        out[new] = value
    return out


def _foreign_stem(fmt: CheckpointFormat, index: str, rest: str) -> str:
    prefix = {
        CheckpointFormat.UPSTREAM: "patch_embed",
        CheckpointFormat.HF: "swiftformer.patch_embed.patch_embedding",
        CheckpointFormat.TIMM: "stem",
    }[fmt]
    return f"{prefix}.{index}.{rest}"


def _foreign_downsample(fmt: CheckpointFormat, stage: int, rest: str) -> str:
    if fmt is CheckpointFormat.TIMM:
        return f"stages.{stage}.downsample.{rest}"
    network = "network" if fmt is CheckpointFormat.UPSTREAM else "swiftformer.encoder.network"
    return f"{network}.{2 * stage - 1}.{rest}"


def _foreign_block(fmt: CheckpointFormat, stage: int, index: int, inner: str | None) -> str | None:
    if inner is None:
        return None
    if fmt is CheckpointFormat.TIMM:
        return f"stages.{stage}.blocks.{index}.{inner}"
    if fmt is CheckpointFormat.UPSTREAM:
        return f"network.{2 * stage}.{index}.{inner}"
    return f"swiftformer.encoder.network.{2 * stage}.blocks.{index}.{inner}"


def as_variant(variant: Variant | str) -> Variant:
    return get_variant(variant) if isinstance(variant, str) else variant


def realistic_model(
    variant: Variant | str, *, seed: int = 0, form: AttentionForm | str = AttentionForm.NORMALIZE
) -> nn.Module:
    """Our model (eval mode) with layer scales in [0.1, 1] and non-trivial BN statistics."""
    return realistic_init(build_model(as_variant(variant), form), seed=seed)


def write_checkpoint(
    weights: nn.Module | Mapping[str, torch.Tensor],
    path: str | Path,
    fmt: CheckpointFormat | str = CheckpointFormat.NATIVE,
    *,
    wrapper: str | None = None,
    attention: AttentionForm | str | None = None,
) -> Path:
    """Write `weights` (our model or our-named state dict) in `fmt`'s naming to `path`.

    The suffix picks the container: `.safetensors`, else torch.save. `wrapper` nests the state
    dict as training scripts do (`{"model": ...}`); `attention` is recorded in native
    safetensors metadata, as our own exports do.
    """
    path = Path(path)
    state = {k: v.detach().clone().contiguous() for k, v in export_state_dict(weights, fmt).items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        if wrapper:
            raise ValueError("safetensors files have no wrapper")
        metadata = {ATTENTION_METADATA_KEY: AttentionForm(attention).value} if attention else None
        save_file(state, str(path), metadata=metadata)
    else:
        torch.save({wrapper: state} if wrapper else state, path)
    return path


def make_checkpoint(
    directory: str | Path,
    variant: Variant | str,
    fmt: CheckpointFormat | str,
    *,
    suffix: str | None = None,
    wrapper: str | None = None,
    seed: int = 0,
) -> tuple[Path, nn.Module]:
    """A realistic-random `variant` checkpoint in `fmt` under `directory`, and the model it came from."""
    fmt = CheckpointFormat(fmt)
    model = realistic_model(variant, seed=seed)
    tag = f"_{wrapper}" if wrapper else ""
    name = f"{as_variant(variant).name}_{fmt.value}{tag}{suffix or DEFAULT_SUFFIX[fmt]}"
    return write_checkpoint(model, Path(directory) / name, fmt, wrapper=wrapper), model


class CheckpointFiles:
    """Files of one realistic model in any format, each written on first use (tests share them)."""

    def __init__(self, directory: str | Path, variant: Variant | str, *, seed: int = 0):
        self.directory = Path(directory)
        self.variant = as_variant(variant)
        self.model = realistic_model(self.variant, seed=seed)
        self._paths: dict[tuple, Path] = {}

    def path(
        self, fmt: CheckpointFormat | str, suffix: str | None = None, wrapper: str | None = None
    ) -> Path:
        fmt = CheckpointFormat(fmt)
        suffix = suffix or DEFAULT_SUFFIX[fmt]
        key = (fmt, suffix, wrapper)
        if key not in self._paths:
            name = f"{self.variant.name}_{fmt.value}{'_' + wrapper if wrapper else ''}{suffix}"
            self._paths[key] = write_checkpoint(self.model, self.directory / name, fmt, wrapper=wrapper)
        return self._paths[key]


def training_checkpoint(state: Mapping[str, torch.Tensor], ema: Mapping[str, torch.Tensor]) -> dict:
    """What upstream's main.py saves: weights, EMA weights, optimizer state and its argparse args."""
    return {
        "model": dict(state),
        "model_ema": dict(ema),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]},
        "epoch": 299,
        "args": argparse.Namespace(model="SwiftFormer_XS", lr=1e-3, output_dir="out"),
    }


# --- HF transformers: the independent implementation -------------------------------------------


def hf_config(variant: Variant | str, num_labels: int = 1000):
    from transformers import SwiftFormerConfig

    v = as_variant(variant)
    return SwiftFormerConfig(depths=list(v.depths), embed_dims=list(v.widths), num_labels=num_labels)


@torch.no_grad()
def realistic_init_hf(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-like magnitudes on an HF model, through its own module tree.

    `realistic_init` covers convs, linears, BN and `layer_scale`/`w_g`; HF names the encoder
    block's two scales `layer_scale_1/2`, which it leaves at 1e-5, so fill those here.
    """
    realistic_init(model, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for name, p in model.named_parameters():
        if name.endswith(("layer_scale_1", "layer_scale_2")):
            p.copy_(0.1 + 0.9 * torch.rand(p.shape, generator=gen))
    return model.eval()


def hf_reference_model(variant: Variant | str, *, seed: int = 0) -> nn.Module:
    """HF's `SwiftFormerForImageClassification` for `variant`, with realistic random weights."""
    from transformers import SwiftFormerForImageClassification

    return realistic_init_hf(SwiftFormerForImageClassification(hf_config(variant)), seed=seed)


def hf_reference_block(dim: int, *, seed: int = 0) -> nn.Module:
    """HF's `SwiftFormerEncoderBlock` (our standalone encoder block) with realistic random weights."""
    from transformers.models.swiftformer.modeling_swiftformer import SwiftFormerEncoderBlock

    return realistic_init_hf(SwiftFormerEncoderBlock(hf_config("xs"), dim=dim), seed=seed)
