"""SwiftFormer rewritten for the Snapdragon HTP: the same function, HTP-native ops.

`to_htp_form(model, input_shape)` builds it from the upstream-form model (`swiftformer_qnn.model.swiftformer`)
after its weights are loaded, so checkpoints are read in one place and both forms hold the same
weights.
What changes, and why (read from QNN's framework op trace of the compiled graphs):

- The efficient additive attention runs on the NCHW feature map: `to_query`, `to_key`, `proj`,
  `final` are 1x1 convolutions, `query @ w_g` is a (transposed) convolution to one channel, sums
  over tokens are spatial reductions. No reshape to tokens `[B, N, C]` and back.
- The L2 normalisations over channels (query, key) are an ONNX `LpNormalization` over the last
  axis of a channel-last view (`permute(0, 2, 3, 1)`): QNN lowers it to one `L2Norm`, and
  onnxruntime's layout transformer cancels the permutes against the NHWC transposes it puts
  around convolutions. On NCHW (axis 1) it stays wrapped in two Transposes; `F.normalize`
  exports as ReduceL2 + Div, which QNN decomposes with a float SquareRoot (a
  Dequantize/Quantize island).
- The normalisation over tokens (upstream `normalize(A, dim=1)`, A = q @ w_g * scale) is one
  `InstanceNormalization` (see `HtpAdditiveAttention`): 5 HTP ops (TransposeConv2d,
  InstanceNorm, DepthWiseConv2d, Mul, ReduceSum), no layout op; the block 28 ops, L1 192. Its
  scale and bias must be initializers: as Constant nodes (what onnxsim makes of values computed
  in `forward`) the quantizer treats them as activations and the HTP runs the op in float.
  What the op trace showed for the other ways (QNN 2.51, w8a8, encoder block 1x96x64x64, whose
  graph was 31 ops with two L2Norms for the token normalisation):
  - two L2Norms, over the map's rows then its height (the previous form): 8 ops per encoder
    (w_g conv, L2Norm, Mul, ReduceSum, w_g conv, L2Norm, Mul, ReduceSum); L1 204 ops.
  - `LayerNormalization` over all non-batch axes of a map of +-logits (mean exactly 0): the
    QNN EP refuses it on the HTP (LayerNorm and RmsNorm only over the last axis).
  - `GroupNormalization` (1 group) of that map (needs opset 21): compiles, but the EP groups no
    Q/DQ around it, so the HTP runs it in float: 3 float islands; onnxruntime's QNN
    preprocessing also inlines it into ReduceMean/Sub/Sqrt/Div.
  - the logits reshaped to `(B, 1, 1, HW)` around one L2Norm: 30 ops, 2 Reshapes and 1
    Transpose inside the graph; the query reshaped to tokens `(B, HW, 1, C)`: 28 ops with 1
    Reshape inside, and a (HW x 1) map the HTP tiles badly (context binary 377 KB vs 229 KB).
  - the QNN EP's L2NormFusion (ReduceL2 + Add + Div over several axes -> one L2Norm) fires only
    on float (unquantized) nodes, so on a QDQ graph it would be a float island.
- Layer scales are folded into the 1x1 convolutions before them; the head's two linears are
  merged into one (their average is one linear) after the mean pool. BatchNorms stay modules:
  onnxsim folds those after a conv, the BN-fold graph pass (`pipeline.fold_bn`) the rest.

Where the time goes in this form (QNN's estimator, SA8255P proxy for SM8550, QNN 2.51, w8a8,
issue 22; tables in profiles/reports/estimate-breakdown/): HVX, not HMX, bounds it. Of L1's
656 us, the GELUs (26 HVX table lookups) take 23.5% of the critical path, the 1x1 convolutions
(HMX) 20%, the query/key L2Norms 11.5%, the residual Adds 8.6%, and the float NCHW image's
Quantize and layout conversion 15.5%; of the block's 330 us, the float input and output
conversions take about half. The speed-ups kept are outside this module: QNN's graph
optimization level 3 for every compile (`htp.session.HtpTarget`) and native uint8 NHWC I/O
for callers who can feed it (`export --io uint8-nhwc`, `pipeline.native_io`). Tried here and
not kept (graph surgery on the QDQ model, then estimated):
  - the query and key L2Norms as RMSNorms (onnxruntime's `SimplifiedLayerNormalization`,
    scale 1/sqrt(C): the same function): L1 640 us (569-722) instead of 656 (588-737), the
    block 310 (280-346) instead of 330 (305-362): inside the estimate's own band; with native
    I/O and level 3 L1 479 instead of 485 and the block 221 instead of 218. Exporting it needs
    the `com.microsoft` domain carried through simplify, the BN fold and validation.
  - No cheaper form of GELU for the same function was found: QNN runs it as one 8-bit table
    lookup, the cheapest elementwise op the HTP has.

Module paths are kept (`stage2.block9_swiftformer_encoder.attention.to_query`), so ONNX node
names still say which block and part each op belongs to (`measure.attribution`).
"""

from __future__ import annotations

import copy
from enum import Enum

import torch
from torch import nn

from .swiftformer import (
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
    FAITHFUL = "faithful"  # the literal upstream graph (`swiftformer_qnn.model.swiftformer`)


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


class _InstanceNorm(torch.autograd.Function):
    """Instance normalisation (per channel over the map, always from the input's own statistics),
    exported as one ONNX `InstanceNormalization` node without torch's training-mode checks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:  # noqa: ARG004
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)

    @staticmethod
    def symbolic(g, x, scale, bias, eps: float):
        return g.op("InstanceNormalization", x, scale, bias, epsilon_f=eps)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """NCHW -> NHWC. Around convolutions onnxruntime's layout transformer cancels it against the
    transposes it inserts (the HTP runs channel-last), so it costs no op on the HTP."""
    return x.permute(0, 2, 3, 1)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


# Far below any |a|^2 / N that float32 tells apart from 0: exact; QNN's InstanceNorm needs it > 0.
_TOKEN_NORM_EPS = 1e-20


class HtpAdditiveAttention(nn.Module):
    """Efficient additive attention on a feature map; `final` carries the branch's layer scale.

    Between the 1x1 convolutions the attention works on channel-last views `(B, H, W, C)`, where
    the query and key normalisations are L2Norms over channels. The normalisation over tokens,
    a / |a| for the logits a = q @ w_g (N = H*W tokens), is an instance normalisation, which QNN
    runs quantized on the HTP: `w_g` is a transposed convolution (kernel 1x2, stride 1x2) that
    writes a and -a side by side, a (B, 1, H, 2W) map whose mean is exactly 0 and whose mean
    square is |a|^2 / N, so `InstanceNormalization` makes it +-a * sqrt(N) / |a|; `pick`, a 1x1
    convolution of stride 1x2 with weight 1/sqrt(N), keeps the +a columns: a / |a| on the map.
    The token count is fixed at build time (`tokens`), as the exported graph's input shape is.
    """

    def __init__(self, attn: EfficientAdditiveAttention, layer_scale: torch.Tensor, tokens: int):
        super().__init__()
        dim = attn.to_query.in_features
        self.form = attn.form
        self.tokens = tokens
        self.to_query = _conv1x1(attn.to_query)
        self.to_key = _conv1x1(attn.to_key)
        w_g = (attn.w_g.detach() * attn.scale_factor).reshape(dim, 1, 1, 1)
        self.w_g = nn.ConvTranspose2d(dim, 1, (1, 2), stride=(1, 2), bias=False)
        self.w_g.weight.data.copy_(torch.cat([w_g, -w_g], dim=3))
        # InstanceNormalization's scale and bias (parameters, so they export as initializers).
        self.token_norm_scale = nn.Parameter(torch.ones(1), requires_grad=False)
        self.token_norm_bias = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.pick = nn.Conv2d(1, 1, 1, stride=(1, 2), bias=False)
        self.pick.weight.data.fill_(tokens**-0.5)
        self.proj = _conv1x1(attn.proj)
        self.final = _conv1x1(attn.final, scale=layer_scale.reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = _LpNorm.apply(_channels_last(self.to_query(x)), 3)  # (B, H, W, C)
        key = _LpNorm.apply(_channels_last(self.to_key(x)), 3)
        if self.form is AttentionForm.NORMALIZE:
            # (A trace runs at the export's input shape, the one this form was built for.)
            if not torch.jit.is_tracing() and x.shape[2] * x.shape[3] != self.tokens:
                raise ValueError(f"built for {self.tokens} tokens, got a {x.shape[2]}x{x.shape[3]} map")
            signed = _InstanceNorm.apply(self.w_g(_channels_first(query)), self.token_norm_scale,
                                         self.token_norm_bias, _TOKEN_NORM_EPS)  # (B, 1, H, 2W): +-a sqrt(N) / |a|
            weights = _channels_last(self.pick(signed))  # (B, H, W, 1): a / |a|
            global_query = (weights * query).sum(dim=(1, 2), keepdim=True)  # (B, 1, 1, C)
        else:  # softmax over a size-1 axis: every token weighs 1
            global_query = query.sum(dim=(1, 2), keepdim=True)
        mixed = _channels_last(self.proj(_channels_first(global_query * key))) + query
        return self.final(_channels_first(mixed))


class HtpSwiftFormerEncoder(nn.Module):
    """Local representation, attention and MLP with their layer scales folded in."""

    def __init__(self, block: SwiftFormerEncoder, tokens: int):
        super().__init__()
        self.local_representation = HtpConvEncoder(block.local_representation)
        self.attention = HtpAdditiveAttention(block.attention, block.attention_scale.detach(), tokens)
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


def to_htp_form(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """The HTP-ready form of an upstream-form SwiftFormer or encoder block (eval mode), for
    inputs of `input_shape` (the token normalisation is built for each encoder's map size).

    The input model is left as it is; the result computes the same function with the same
    weights, rearranged (layer scales folded, head linears merged)."""
    if not isinstance(model, (SwiftFormer, EncoderBlockModel)):
        raise TypeError(f"to_htp_form takes a SwiftFormer or EncoderBlockModel, not {type(model).__name__}")
    htp = copy.deepcopy(model).eval()
    tokens = _tokens_per_encoder(htp, input_shape)
    with torch.no_grad():
        for parent_path, parent in list(htp.named_modules()):
            for name, child in list(parent.named_children()):
                path = f"{parent_path}.{name}" if parent_path else name
                if isinstance(child, SwiftFormerEncoder):
                    setattr(parent, name, HtpSwiftFormerEncoder(child, tokens[path]))
                elif type(child) is ConvEncoder:  # not LocalRepresentation: its encoder converts it
                    setattr(parent, name, HtpConvEncoder(child))
                elif isinstance(child, Head):
                    setattr(parent, name, HtpHead(child))
    return htp.eval()


def _tokens_per_encoder(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Tokens each SwiftFormerEncoder's attention sees on an input of `input_shape` (one dry
    run, of the copy in eval mode, so the caller's model and its BN statistics stay untouched),
    by the encoder's module path."""
    tokens: dict[str, int] = {}
    hooks = [enc.attention.register_forward_pre_hook(
                 lambda _module, args, path=path: tokens.__setitem__(path, args[0].shape[1]))
             for path, enc in model.named_modules() if isinstance(enc, SwiftFormerEncoder)]
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for h in hooks:
            h.remove()
    return tokens


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

