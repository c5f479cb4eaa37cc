"""The SwiftFormer variants the tool builds, declared once.

Widths, depths and the published figures come from the SwiftFormer paper (ICCV 2023) and
the upstream repository (Amshaker/SwiftFormer, models/swiftformer.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..core.errors import UsageError


class BlockKind(str, Enum):
    """The two kinds of block a SwiftFormer stage is made of."""

    CONV_ENCODER = "conv_encoder"
    SWIFTFORMER_ENCODER = "swiftformer_encoder"


@dataclass(frozen=True)
class Variant:
    """One exportable model: a full SwiftFormer or the standalone encoder block."""

    name: str
    title: str
    widths: tuple[int, ...] = ()
    depths: tuple[int, ...] = ()
    # Published (paper) figures, for `swiftformer-qnn variants` and the param-count test.
    published_params_m: float | None = None
    published_gmacs: float | None = None
    published_top1: float | None = None
    # The standalone encoder block: its channel count and its input's spatial size.
    encoder_dim: int | None = None
    encoder_hw: int | None = None
    mlp_ratio: float = 4.0
    # SwiftFormerEncoders per stage (upstream `vit_num`): the last block of each stage.
    vit_num: int = 1

    @property
    def is_encoder_block(self) -> bool:
        return self.encoder_dim is not None

    def input_shape(self, resolution: int | None = None) -> tuple[int, int, int, int]:
        """Batch-1 NCHW input; `resolution` overrides the spatial size (tests use small ones)."""
        if self.is_encoder_block:
            hw = resolution or self.encoder_hw
            return (1, self.encoder_dim, hw, hw)
        hw = resolution or 224
        return (1, 3, hw, hw)

    def block_kinds(self, stage: int) -> list[BlockKind]:
        """Kinds of the blocks of one stage, in order (the last `vit_num` are SwiftFormerEncoders)."""
        depth = self.depths[stage]
        return [
            BlockKind.SWIFTFORMER_ENCODER if depth - j <= self.vit_num else BlockKind.CONV_ENCODER
            for j in range(depth)
        ]


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("xs", "SwiftFormer-XS", (48, 56, 112, 220), (3, 3, 6, 4), 3.5, 0.6, 75.7),
        Variant("s", "SwiftFormer-S", (48, 64, 168, 224), (3, 3, 9, 6), 6.1, 1.0, 78.5),
        Variant("l1", "SwiftFormer-L1", (48, 96, 192, 384), (4, 3, 10, 5), 12.1, 1.6, 80.9),
        Variant("l3", "SwiftFormer-L3", (64, 128, 320, 512), (4, 4, 12, 6), 28.5, 4.0, 83.0),
        # The community's Android measurement: SwiftFormerEncoder(dim=96, mlp_ratio=4) on 1x96x64x64.
        Variant("encoder", "SwiftFormerEncoder block", encoder_dim=96, encoder_hw=64),
    )
}


def get_variant(name: str, *, encoder_dim: int | None = None, encoder_hw: int | None = None) -> Variant:
    """Look a variant up by name; `encoder_dim`/`encoder_hw` reshape the standalone block."""
    key = name.lower().strip()
    if key not in VARIANTS:
        raise UsageError(
            f"Unknown variant {name!r}.", hint=f"Choose one of: {', '.join(VARIANTS)}."
        )
    variant = VARIANTS[key]
    if encoder_dim is not None and not variant.is_encoder_block:
        raise UsageError("--encoder-dim applies only to --variant encoder.")
    for name, value in (("--encoder-dim", encoder_dim), ("--resolution", encoder_hw)):
        if value is not None and value < 1:
            raise UsageError(f"{name} {value} must be a positive number.")
    if variant.is_encoder_block and (encoder_dim is not None or encoder_hw is not None):
        from dataclasses import replace

        variant = replace(
            variant,
            encoder_dim=encoder_dim if encoder_dim is not None else variant.encoder_dim,
            encoder_hw=encoder_hw if encoder_hw is not None else variant.encoder_hw,
        )
    return variant
