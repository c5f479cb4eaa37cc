"""Stage `inputs`: the calibration and held-out model inputs, as .npy tensors.

For a full model these are preprocessed photographs. For the standalone SwiftFormerEncoder
block they are the activations a full SwiftFormer produces at the input of the encoder block
of a stage with the same width, from the same photographs at the matching resolution:
quantization ranges calibrated on noise would not be the ranges the block sees in a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import UsageError
from ..model.variants import VARIANTS, BlockKind, Variant
from .images import ImageSet, preprocess_all

# Full variants searched, in order, for a stage as wide as the standalone block.
_HOSTS = ("l1", "xs", "s", "l3")


@dataclass(frozen=True)
class EncoderHost:
    """Where the standalone block sits in a full model: variant, stage and block index."""

    variant: Variant
    stage: int
    block: int

    @property
    def stride(self) -> int:
        return 4 * 2**self.stage  # stem /4, then /2 per downsample

    @property
    def module_path(self) -> str:
        return f"stage{self.stage}.block{self.block}_{BlockKind.SWIFTFORMER_ENCODER.value}"

    def describe(self) -> str:
        return f"{self.variant.title} {self.module_path}"


def encoder_host(dim: int) -> EncoderHost:
    for name in _HOSTS:
        v = VARIANTS[name]
        for i, width in enumerate(v.widths):
            if width == dim:
                kinds = v.block_kinds(i)
                return EncoderHost(v, i, kinds.index(BlockKind.SWIFTFORMER_ENCODER))
    widths = sorted({w for n in _HOSTS for w in VARIANTS[n].widths})
    raise UsageError(
        f"No SwiftFormer stage is {dim} channels wide, so there are no real activations to calibrate the block on.",
        hint=f"Use --encoder-dim one of {widths}.",
    )


class _Captured(Exception):
    """Raised by the hook: nothing after the block is needed, so the forward stops there."""


def capture_block_inputs(host_model, host: EncoderHost, images: np.ndarray, batch: int = 8) -> np.ndarray:
    """Run the full model's trunk on images and keep what enters the host encoder block."""
    import torch

    block = host_model.get_submodule(host.module_path)
    captured: list[np.ndarray] = []

    def hook(_module, args):
        captured.append(args[0].detach().numpy().copy())
        raise _Captured

    handle = block.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for i in range(0, images.shape[0], batch):
                try:
                    host_model.forward_features(torch.from_numpy(images[i : i + batch]))
                except _Captured:
                    pass
    finally:
        handle.remove()
    return np.concatenate(captured).astype(np.float32)


def make_inputs(
    variant: Variant,
    resolution: int,
    images: ImageSet,
    out: Path,
    *,
    host_model=None,
    host: EncoderHost | None = None,
) -> dict:
    """Write `out` (.npy, N x input shape) from `images`; returns a description for the manifest."""
    if variant.is_encoder_block:
        assert host is not None and host_model is not None
        pixels = preprocess_all(images, resolution * host.stride)
        tensors = capture_block_inputs(host_model, host, pixels)
        what = f"activations at the input of {host.describe()} from {pixels.shape[-1]}px photographs"
    else:
        tensors = preprocess_all(images, resolution)
        what = f"{resolution}px photographs, ImageNet mean/std, bicubic, crop_pct 0.95"
    np.save(out, tensors)
    return {"count": int(tensors.shape[0]), "shape": list(tensors.shape[1:]), "what": what,
            "skipped": [f"{p.name}: {why}" for p, why in images.skipped]}
