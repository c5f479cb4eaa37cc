"""SwiftFormer in PyTorch, as upstream (Amshaker/SwiftFormer) defines it since July 2023.

Module names are chosen so that an ONNX node name says which block it belongs to:
`/stage2/block9_swiftformer_encoder/attention/to_query/MatMul` is stage 2, block 9, a
SwiftFormerEncoder, inside its efficient additive attention. The per-block latency reports
(`swiftformer_qnn.measure.attribution`) read these names back, so renaming a module here
changes what the profiles attribute.
"""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn

from .variants import BlockKind, Variant

# Upstream's layer-scale init. It makes every residual branch nearly vanish (see
# `realistic_init` for weights that exercise quantization honestly).
LAYER_SCALE_INIT = 1e-5


class AttentionForm(str, Enum):
    """How the additive attention weights its queries.

    `normalize` is upstream today (July 2023 fix: L2-normalise the query weights over tokens).
    `softmax` is the first release, still used by HF transformers' port and the checkpoints
    converted from it: a softmax over a size-1 axis, so every query weighs 1.
    """

    NORMALIZE = "normalize"
    SOFTMAX = "softmax"


def block_name(index: int, kind: BlockKind) -> str:
    """The module name of block `index` of a stage, e.g. `block9_swiftformer_encoder`."""
    return f"block{index}_{kind.value}"


class Stem(nn.Module):
    """Two 3x3 stride-2 conv + BN + ReLU: 224 -> 56."""

    def __init__(self, out_chs: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, out_chs // 2, 3, stride=2, padding=1)
        self.norm1 = nn.BatchNorm2d(out_chs // 2)
        self.conv2 = nn.Conv2d(out_chs // 2, out_chs, 3, stride=2, padding=1)
        self.norm2 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(x)))


class Downsample(nn.Module):
    """Upstream `Embedding` between stages: 3x3 stride-2 conv + BN."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class ConvEncoder(nn.Module):
    """Depthwise 3x3, BN, 1x1, GELU, 1x1, layer scale, residual."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.BatchNorm2d(dim)
        self.pwconv1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv2d(hidden_dim, dim, 1)
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.layer_scale * y


class LocalRepresentation(ConvEncoder):
    """The SwiftFormerEncoder's local representation: a ConvEncoder with hidden width = dim."""

    def __init__(self, dim: int):
        super().__init__(dim, dim)


class EfficientAdditiveAttention(nn.Module):
    """Efficient additive attention on tokens (B, N, D), single head."""

    def __init__(self, dim: int, form: AttentionForm = AttentionForm.NORMALIZE):
        super().__init__()
        self.to_query = nn.Linear(dim, dim)
        self.to_key = nn.Linear(dim, dim)
        self.w_g = nn.Parameter(torch.randn(dim, 1))
        self.scale_factor = dim**-0.5
        self.proj = nn.Linear(dim, dim)
        self.final = nn.Linear(dim, dim)
        self.form = AttentionForm(form)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = F.normalize(self.to_query(x), dim=-1)
        key = F.normalize(self.to_key(x), dim=-1)
        weights = (query @ self.w_g) * self.scale_factor  # (B, N, 1)
        if self.form is AttentionForm.NORMALIZE:
            weights = F.normalize(weights, dim=1)
        else:
            weights = weights.softmax(dim=-1)
        global_query = torch.sum(weights * query, dim=1, keepdim=True)  # (B, 1, D)
        # Broadcasting over tokens is upstream's einops.repeat without the copy.
        return self.final(self.proj(global_query * key) + query)


class Mlp(nn.Module):
    """BN, 1x1 conv, GELU, 1x1 conv (upstream `Mlp`, the encoder's `linear`)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class SwiftFormerEncoder(nn.Module):
    """Local representation, efficient additive attention and an MLP, each with a layer scale."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, form: AttentionForm = AttentionForm.NORMALIZE):
        super().__init__()
        self.local_representation = LocalRepresentation(dim)
        self.attention = EfficientAdditiveAttention(dim, form)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.attention_scale = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dim, 1, 1))
        self.mlp_scale = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)
        b, c, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        attended = self.attention(tokens).reshape(b, h, w, c).permute(0, 3, 1, 2)
        x = x + self.attention_scale * attended
        return x + self.mlp_scale * self.mlp(x)


class Stage(nn.Module):
    """An optional downsample, then ConvEncoders, then the SwiftFormerEncoder(s)."""

    def __init__(self, variant: Variant, index: int, form: AttentionForm):
        super().__init__()
        dim = variant.widths[index]
        if index > 0:
            self.downsample = Downsample(variant.widths[index - 1], dim)
        self.block_names: list[str] = []
        for j, kind in enumerate(variant.block_kinds(index)):
            if kind is BlockKind.SWIFTFORMER_ENCODER:
                block: nn.Module = SwiftFormerEncoder(dim, variant.mlp_ratio, form)
            else:
                block = ConvEncoder(dim, int(dim * variant.mlp_ratio))
            name = block_name(j, kind)
            self.add_module(name, block)
            self.block_names.append(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        for name in self.block_names:
            x = getattr(self, name)(x)
        return x


class Head(nn.Module):
    """BN, global average pool, classifier and distillation linears averaged (inference form)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.fc = nn.Linear(dim, num_classes)
        self.dist_fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.norm(x).flatten(2).mean(-1)
        return (self.fc(pooled) + self.dist_fc(pooled)) / 2


class SwiftFormer(nn.Module):
    """The full classifier: stem, four stages, head. Input 1x3xHxW, output logits."""

    def __init__(self, variant: Variant, num_classes: int = 1000, form: AttentionForm = AttentionForm.NORMALIZE):
        super().__init__()
        self.variant = variant
        self.stem = Stem(variant.widths[0])
        self.stage_names = [f"stage{i}" for i in range(len(variant.depths))]
        for i, name in enumerate(self.stage_names):
            self.add_module(name, Stage(variant, i, form))
        self.head = Head(variant.widths[-1], num_classes)
        _upstream_init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class EncoderBlockModel(nn.Module):
    """The standalone SwiftFormerEncoder block (`--variant encoder`), as the community measured it."""

    def __init__(self, variant: Variant, form: AttentionForm = AttentionForm.NORMALIZE):
        super().__init__()
        self.variant = variant
        self.swiftformer_encoder = SwiftFormerEncoder(variant.encoder_dim, variant.mlp_ratio, form)
        _upstream_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.swiftformer_encoder(x)


def _upstream_init(model: nn.Module) -> None:
    """Upstream's init: truncated normal (std 0.02) for conv and linear weights, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(variant: Variant, form: AttentionForm | str = AttentionForm.NORMALIZE) -> nn.Module:
    """A fresh, randomly initialised model in eval mode."""
    form = AttentionForm(form)
    model = EncoderBlockModel(variant, form) if variant.is_encoder_block else SwiftFormer(variant, form=form)
    return model.eval()


def set_attention_form(model: nn.Module, form: AttentionForm | str) -> None:
    """Switch every attention in `model` to `form` (weights are the same for both forms)."""
    for m in model.modules():
        if isinstance(m, EfficientAdditiveAttention):
            m.form = AttentionForm(form)


@torch.no_grad()
def trained_like_batchnorm(bn: nn.modules.batchnorm._BatchNorm, gen: torch.Generator) -> None:
    """Statistics and affine terms away from identity, as a trained BatchNorm's are (any BatchNorm:
    the estimate's validation bench gives other models' BatchNorm1d the same)."""
    n = bn.num_features
    bn.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=gen))
    bn.bias.copy_(0.1 * torch.randn(n, generator=gen))
    bn.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
    bn.running_var.copy_(0.5 + torch.rand(n, generator=gen))


@torch.no_grad()
def trained_like_layer_scale(scale: nn.Parameter, gen: torch.Generator) -> None:
    """A layer scale drawn in [0.1, 1]: its 1e-5 init would make the residual branch vanish."""
    scale.copy_(0.1 + 0.9 * torch.rand(scale.shape, generator=gen))


@torch.no_grad()
def realistic_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights with trained-like magnitudes, for tests and benchmarks.

    Layer scales drawn in [0.1, 1] and non-trivial BN statistics, so residual branches
    matter and quantization error shows (the 1e-5 init hides it).
    """
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (1.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
        elif isinstance(m, nn.BatchNorm2d):
            trained_like_batchnorm(m, gen)
    for name, p in model.named_parameters():
        if name.endswith(("layer_scale", "attention_scale", "mlp_scale")):
            trained_like_layer_scale(p, gen)
        elif name.endswith("w_g"):
            p.copy_(torch.randn(p.shape, generator=gen))
    return model.eval()
