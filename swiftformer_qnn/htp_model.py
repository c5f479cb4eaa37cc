"""SwiftFormer rewritten for the Snapdragon HTP: the same function, HTP-native ops.

`to_htp_form(model)` builds it from the upstream-form model (`swiftformer_qnn.model`) after its
weights are loaded, so checkpoints are read in one place and both forms hold the same weights.
What changes, and why (read from QNN's framework op trace of the compiled graphs):

- The efficient additive attention runs on the NCHW feature map: `to_query`, `to_key`, `proj`,
  `final` are 1x1 convolutions, `query @ w_g` is a 1x1 convolution to one channel, sums over
  tokens are spatial reductions. No reshape to tokens `[B, N, C]` and back.
- Every L2 normalisation is an ONNX `LpNormalization` over one axis of a channel-last view
  (`permute(0, 2, 3, 1)`): QNN lowers it to one `L2Norm`, and onnxruntime's layout
  transformer cancels the permutes against the NHWC transposes it puts around convolutions.
  On NCHW (axis 1) it stays wrapped in two Transposes; `F.normalize` exports as ReduceL2 + Div,
  which QNN decomposes with a float SquareRoot (a Dequantize/Quantize island).
- The normalisation over tokens (upstream `normalize(A, dim=1)`) has no one-op form on a
  feature map: LpNormalization takes one axis, and QNN's RmsNorm (SimplifiedLayerNormalization)
  on the NPU only the last one. It goes through the rows of the map with two L2Norms (see
  `HtpAdditiveAttention`); exact in real numbers.
- Layer scales are folded into the 1x1 convolutions before them; the head's two linears are
  merged into one (their average is one linear) after the mean pool. BatchNorms stay modules:
  onnxsim folds those after a conv, the BN-fold graph pass (`pipeline.fold_bn`) the rest.

Module paths are kept (`stage2.block9_swiftformer_encoder.attention.to_query`), so ONNX node
names still say which block and part each op belongs to (`profiling.attribution`).
"""

from __future__ import annotations

import copy
from enum import Enum

import torch
from torch import nn

from .model import (
    AttentionForm,
    ConvEncoder,
    EfficientAdditiveAttention,
    EncoderBlockModel,
    Head,
    SwiftFormer,
    SwiftFormerEncoder,
)


class GraphForm(str, Enum):
    """The graph an export builds."""

    HTP = "htp"  # this module's HTP-ready form (default)
    FAITHFUL = "faithful"  # the literal upstream graph (`swiftformer_qnn.model`)


class _LpNorm(torch.autograd.Function):
    """L2 normalisation over one axis, exported as one ONNX `LpNormalization` node.

    `F.normalize` exports as ReduceL2/Clip/Expand/Div, which onnxruntime's QNN preprocessing
    fuses only over the last axis and only sometimes (and the fused node loses its module-path
    name)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, axis: int) -> torch.Tensor:  # noqa: ARG004 - autograd signature
        return torch.nn.functional.normalize(x, dim=axis)

    @staticmethod
    def symbolic(g, x, axis: int):
        return g.op("LpNormalization", x, axis_i=axis, p_i=2)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """NCHW -> NHWC. Around convolutions onnxruntime's layout transformer cancels it against the
    transposes it inserts (the HTP runs channel-last), so it costs no op on the HTP."""
    return x.permute(0, 2, 3, 1)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


class HtpAdditiveAttention(nn.Module):
    """Efficient additive attention on a feature map; `final` carries the branch's layer scale.

    Between the 1x1 convolutions the attention works on channel-last views `(B, H, W, C)`,
    where each normalisation is an L2Norm over one axis. The normalisation over tokens,
    a / |a| for the logits a = q @ w_g, goes through the rows of the map:
    u = a / |row| (L2Norm over W), t_h = sum_w u q (B, H, 1, C), and w_g . t_h = sum_w u a
    = |row_h|, so s = L2Norm over H of w_g . t = |row| / |a| and the global query
    sum_n a_n q_n / |a| = sum_h s_h t_h. Every tensor that a layout permute touches has one
    consumer: a permuted tensor read twice leaves a requantizing Convert op on the HTP.
    """

    def __init__(self, attn: EfficientAdditiveAttention, layer_scale: torch.Tensor):
        super().__init__()
        dim = attn.to_query.in_features
        self.form = attn.form
        self.to_query = _conv1x1(attn.to_query)
        self.to_key = _conv1x1(attn.to_key)
        self.w_g = nn.Conv2d(dim, 1, 1, bias=False)
        self.w_g.weight.data.copy_((attn.w_g.detach() * attn.scale_factor).t().reshape(1, dim, 1, 1))
        self.proj = _conv1x1(attn.proj)
        self.final = _conv1x1(attn.final, scale=layer_scale.reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = _LpNorm.apply(_channels_last(self.to_query(x)), 3)  # (B, H, W, C)
        key = _LpNorm.apply(_channels_last(self.to_key(x)), 3)
        if self.form is AttentionForm.NORMALIZE:
            u = _LpNorm.apply(_channels_last(self.w_g(_channels_first(query))), 2)  # (B, H, W, 1)
            rows = (u * query).sum(dim=2, keepdim=True)  # (B, H, 1, C)
            s = _LpNorm.apply(_channels_last(self.w_g(_channels_first(rows))), 1)  # (B, H, 1, 1)
            global_query = (s * rows).sum(dim=1, keepdim=True)  # (B, 1, 1, C)
        else:  # softmax over a size-1 axis: every token weighs 1
            global_query = query.sum(dim=(1, 2), keepdim=True)
        mixed = _channels_last(self.proj(_channels_first(global_query * key))) + query
        return self.final(_channels_first(mixed))


class HtpSwiftFormerEncoder(nn.Module):
    """Local representation, attention and MLP with their layer scales folded in."""

    def __init__(self, block: SwiftFormerEncoder):
        super().__init__()
        self.local_representation = HtpConvEncoder(block.local_representation)
        self.attention = HtpAdditiveAttention(block.attention, block.attention_scale.detach())
        self.mlp = copy.deepcopy(block.mlp)
        _scale_conv_(self.mlp.fc2, block.mlp_scale.detach().reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)
        x = x + self.attention(x)
        return x + self.mlp(x)


class HtpConvEncoder(nn.Module):
    """ConvEncoder with its layer scale folded into `pwconv2`."""

    def __init__(self, block: ConvEncoder):
        super().__init__()
        self.dwconv = copy.deepcopy(block.dwconv)
        self.norm = copy.deepcopy(block.norm)
        self.pwconv1 = copy.deepcopy(block.pwconv1)
        self.act = nn.GELU()
        self.pwconv2 = copy.deepcopy(block.pwconv2)
        _scale_conv_(self.pwconv2, block.layer_scale.detach().reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))


class HtpHead(nn.Module):
    """BN, global mean pool, and the classifier and distillation linears merged into one.

    The BN stays before the pool as upstream has it: the BN-fold pass folds it through the
    mean into the linear."""

    def __init__(self, head: Head):
        super().__init__()
        self.norm = copy.deepcopy(head.norm)
        fc, dist = head.fc, head.dist_fc
        self.fc = nn.Linear(fc.in_features, fc.out_features)
        with torch.no_grad():
            self.fc.weight.copy_((fc.weight + dist.weight) / 2)
            self.fc.bias.copy_((fc.bias + dist.bias) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x).mean(dim=(2, 3)))


def to_htp_form(model: nn.Module) -> nn.Module:
    """The HTP-ready form of an upstream-form SwiftFormer or encoder block (eval mode).

    The input model is left as it is; the result computes the same function with the same
    weights, rearranged (layer scales folded, head linears merged)."""
    if not isinstance(model, (SwiftFormer, EncoderBlockModel)):
        raise TypeError(f"to_htp_form takes a SwiftFormer or EncoderBlockModel, not {type(model).__name__}")
    htp = copy.deepcopy(model)
    with torch.no_grad():
        for parent in list(htp.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, SwiftFormerEncoder):
                    setattr(parent, name, HtpSwiftFormerEncoder(child))
                elif type(child) is ConvEncoder:  # not LocalRepresentation: its encoder converts it
                    setattr(parent, name, HtpConvEncoder(child))
                elif isinstance(child, Head):
                    setattr(parent, name, HtpHead(child))
    return htp.eval()


def _conv1x1(linear: nn.Linear, scale: torch.Tensor | None = None) -> nn.Conv2d:
    """A token-wise linear as the 1x1 convolution it is on a feature map, times `scale` per output."""
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None)
    conv.weight.data.copy_(linear.weight.detach().reshape(*linear.weight.shape, 1, 1))
    if linear.bias is not None:
        conv.bias.data.copy_(linear.bias.detach())
    if scale is not None:
        _scale_conv_(conv, scale)
    return conv


def _scale_conv_(conv: nn.Conv2d, scale: torch.Tensor) -> None:
    """Fold a per-output-channel layer scale into `conv` (scale * conv(x) == conv'(x))."""
    conv.weight.data.mul_(scale.reshape(-1, 1, 1, 1))
    if conv.bias is not None:
        conv.bias.data.mul_(scale)

