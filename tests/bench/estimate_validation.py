"""Does the estimate mean anything? QNN's HTP estimate (Hextimate, SA8255P proxy) of models whose
Galaxy S23 (SM8550) device time is published, model by model, as the ratio estimate/published.

Each model is built the way the tool's own export builds SwiftFormer: PyTorch -> ONNX at opset 20
(the tool's `export_onnx`), onnxsim (`simplify_onnx`), BatchNorms folded (`fold_stage`), QDQ with
onnxruntime's QNN config after `qnn_preprocess_model` (`quantize_qdq`) on the shipped calibration
photographs, the BN-overflow guard, then one compile for SM8550 with CPU fallback disabled
(`compile_model`: success means every node is on the HTP). Only then is the QDQ graph estimated,
and the estimate is kept only if its graph passes the checks the first quick graphs failed:
"Missing Ops" 0 and "Input Fill" (what the estimator streams in: weights) close to the quantized
weight bytes of the ONNX.

The timm architectures (random weights with trained-like magnitudes: the estimate depends on
shapes and encodings, not on values) are wrapped as quic/ai-hub-models wraps its ImageNet
classifiers: the input is an image in [0, 1] and the ImageNet normalization is the graph's first op.
SwiftFormer-L1 is exported with the tool's own command (`swiftformer-qnn export --until quantize`),
faithful graph (what the community measured) and HTP-ready graph (no published device time).

Published figures (quic/ai-hub-models v0.37.0, `qai_hub_models/models/<id>/perf.yaml`, device
"Samsung Galaxy S23", QAIRT 2.37; escorciav/SwiftFormer README, S23 Ultra, QNN 2.17) are AI Hub /
qnn-net-run inference times: end to end per inference on the phone, so they include what the
accelerator estimate leaves out (RPC to the DSP, input/output copies and conversions, the
framework's dispatch).

Usage: python tests/bench/estimate_validation.py OUT_DIR [--models resnet18,...] [--work DIR]
         [--calibration-count 16]
       (`nox -s estimate_validation -- OUT_DIR`; OUT_DIR gets estimate-validation.json and .md)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from swiftformer_qnn.core.targets import Precision, get_soc  # noqa: E402
from swiftformer_qnn.htp.compile import compile_model  # noqa: E402
from swiftformer_qnn.htp.record import CompileSpec  # noqa: E402
from swiftformer_qnn.htp.session import HtpTarget  # noqa: E402
from swiftformer_qnn.pipeline.compile import guarded_model  # noqa: E402
from swiftformer_qnn.pipeline.fold_bn import fold_stage  # noqa: E402
from swiftformer_qnn.pipeline.images import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    default_calibration_images,
    find_images,
    preprocess_all,
)
from swiftformer_qnn.pipeline.onnx_export import DEFAULT_OPSET, export_onnx, op_histogram, simplify_onnx  # noqa: E402
from swiftformer_qnn.pipeline.quantize import quantize_qdq  # noqa: E402

AI_HUB = "quic/ai-hub-models v0.37.0"
AI_HUB_DEVICE = "Samsung Galaxy S23"
AI_HUB_QAIRT = "2.37.0"
# Input Fill (bytes the estimator streams in before the graph runs) over the QDQ graph's quantized
# weight bytes: the L1 export's is 1.05; the broken quick graphs' were ~30x (float weights, or
# weights folded into huge constants). Outside this band the graph is not what it should be.
FILL_BAND = (0.8, 1.5)


@dataclass(frozen=True)
class Published:
    """One published device time and where it is written."""

    ms: float
    precision: str  # as published: w8a8, w8a16, float (AI Hub's float runs the HTP in fp16)
    runtime: str  # AI Hub's target runtime (qnn_dlc, tflite), or "qnn" for the community's
    layers: int | None  # the runtime's layer count on the NPU, as published (a structure check)
    device: str
    toolchain: str
    source: str  # repository, version and file
    sa8255p_ms: float | None = None  # the same file's figure on "SA8255 (Proxy)": the estimator's SoC


@dataclass(frozen=True)
class Model:
    name: str
    builder: str  # "timm:<name>" or "swiftformer:<graph form>"
    hard_activations: str = "as exported"  # or "relu6" (see _hard_activations_as_relu6)
    io: str = "hub"  # "hub": AI Hub's I/O (channel-last image; quantized I/O for QDQ); "tool": float NCHW in, float out
    note: str = ""

    def __post_init__(self) -> None:
        if self.io not in ("hub", "tool") or self.hard_activations not in ("as exported", "relu6"):
            raise ValueError(f"{self.name}: io {self.io!r}, hard_activations {self.hard_activations!r}")


@dataclass(frozen=True)
class Case:
    model: Model
    precision: Precision
    published: Published | None
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.model.name}/{self.precision.value}"


def _hub(model_id: str, precision: str, ms: float, layers: int, sa8255p_ms: float | None = None,
         runtime: str = "qnn_dlc") -> Published:
    return Published(ms, precision, runtime, layers, AI_HUB_DEVICE, f"QAIRT {AI_HUB_QAIRT}",
                     f"{AI_HUB} qai_hub_models/models/{model_id}/perf.yaml", sa8255p_ms)


COMMUNITY = Published(2.26, "w8a8", "qnn", None, "Samsung Galaxy S23 Ultra", "QNN 2.17",
                      "escorciav/SwiftFormer README.md (SwiftFormer_L1: 2.63 / 2.26 / 2.43 ms on QNN 2.16 / 2.17 / 2.18)")

RESNET18 = Model("resnet18", "timm:resnet18")
RESNET18_TOOL_IO = Model("resnet18+float-nchw-io", "timm:resnet18", io="tool",
                         note="the tool's I/O (float NCHW image in, float logits out): the HTP quantizes and "
                              "transposes the input itself, which the estimate then includes")
MOBILENET = Model("mobilenet_v3_large", "timm:mobilenetv3_large_100")
MOBILENET_RELU6 = Model("mobilenet_v3_large+relu6", "timm:mobilenetv3_large_100", hard_activations="relu6",
                        note="HardSwish/HardSigmoid written as relu6 (identical in float) so that every op has a "
                             "16-bit cost")
EFFICIENTFORMER = Model("efficientformer_l1", "timm:efficientformer_l1")
LEVIT = Model("levit_128s", "timm:levit_128s")
LEVIT_RELU6 = Model("levit_128s+relu6", "timm:levit_128s", hard_activations="relu6", note=MOBILENET_RELU6.note)
CONVNEXT = Model("convnext_tiny", "timm:convnext_tiny")
L1_FAITHFUL = Model("swiftformer_l1_faithful", "swiftformer:faithful", io="tool",
                    note="the community exported upstream's graph at opset 11 with QNN's converter; here the tool's "
                         "faithful graph at opset 20")
L1_HTP = Model("swiftformer_l1_htp", "swiftformer:htp", io="tool", note="the tool's HTP-ready graph: no published device time")

# Figures read from the files named (v0.37.0 tag; device "Samsung Galaxy S23", and "SA8255 (Proxy)"
# where that file has it); AI Hub's "float" runs on the HTP in fp16.
CASES: list[Case] = [
    Case(RESNET18, Precision.W8A8, _hub("resnet18", "w8a8", 0.541, 54, 0.547)),
    Case(RESNET18, Precision.FP16, _hub("resnet18", "float", 1.266, 53, 1.268)),
    Case(RESNET18_TOOL_IO, Precision.W8A8, _hub("resnet18", "w8a8", 0.541, 54, 0.547)),
    Case(RESNET18_TOOL_IO, Precision.FP16, _hub("resnet18", "float", 1.266, 53, 1.268)),
    Case(MOBILENET, Precision.W8A16, _hub("mobilenet_v3_large", "w8a16", 0.935, 145, 0.933)),
    Case(MOBILENET_RELU6, Precision.W8A16, _hub("mobilenet_v3_large", "w8a16", 0.935, 145, 0.933)),
    Case(MOBILENET, Precision.FP16, _hub("mobilenet_v3_large", "float", 0.932, 144, 0.935)),
    Case(EFFICIENTFORMER, Precision.W8A8, _hub("efficientformer", "w8a8", 0.746, 205, runtime="tflite"),
         note="AI Hub publishes no w8a8 qnn_dlc figure for it: the w8a8 TFLite (QNN delegate) one is compared"),
    Case(EFFICIENTFORMER, Precision.FP16, _hub("efficientformer", "float", 1.625, 173)),
    Case(LEVIT, Precision.W8A16, _hub("levit", "w8a16", 1.365, 342)),
    Case(LEVIT_RELU6, Precision.W8A16, _hub("levit", "w8a16", 1.365, 342)),
    Case(CONVNEXT, Precision.W8A16, _hub("convnext_tiny", "w8a16", 3.097, 222, 3.087)),
    Case(CONVNEXT, Precision.FP16, _hub("convnext_tiny", "float", 3.552, 239, 3.559)),
    Case(L1_FAITHFUL, Precision.W8A8, COMMUNITY),
    Case(L1_HTP, Precision.W8A8, None),
]


# --- building the graphs ---------------------------------------------------------------------


def _trained_like(model, seed: int = 0):
    """The tool's `realistic_init` (conv/linear/BatchNorm2d, SwiftFormer's scales) plus what timm
    models have beyond it: BatchNorm1d (LeViT) and LayerScale `gamma`s, whose 1e-5..1e-6 init would
    make the residual branches vanish (and with them the activation ranges the encodings see)."""
    import torch
    from torch import nn

    from swiftformer_qnn.model.swiftformer import (
        realistic_init,
        trained_like_batchnorm,
        trained_like_layer_scale,
    )

    realistic_init(model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            trained_like_batchnorm(m, gen)
    for name, p in model.named_parameters():
        if name.split(".")[-1] == "gamma" and p.ndim == 1:
            trained_like_layer_scale(p, gen)
    return model.eval()


def _fused_norms(model):
    """timm's own deploy fusion (`fuse()` of LeViT's ConvNorm / LinearNorm / NormLinear: a Linear or
    Conv with its BatchNorm folded in, exact in float), as a converter folds them for the device.
    LeViT's BatchNorm1d runs on a flattened rank-2 tensor, which the tool's `fold_stage` (written
    for SwiftFormer's rank-4 BNs) cannot rewrite: its depthwise-conv fallback needs spatial axes."""
    for name, module in list(model.named_modules()):
        if type(module).__name__ in ("ConvNorm", "LinearNorm", "NormLinear") and hasattr(module, "fuse"):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.fuse())
    return model.eval()


def _hard_activations_as_relu6(model):
    """nn.Hardswish / nn.Hardsigmoid -> x * relu6(x + 3) / 6 and relu6(x + 3) / 6 (identical in
    float). Why: onnxruntime's preprocessing turns HardSwish into HardSigmoid * x, and the
    estimator has no cost for the HTP's 16-bit Hardsigmoid (nor 16-bit HardSwish): the w8a16
    graphs then report "Missing Ops" > 0, an estimate that leaves those ops out. 8-bit has costs."""
    import torch.nn.functional as F
    from torch import nn

    class HardSigmoidRelu6(nn.Module):
        def forward(self, x):
            return F.relu6(x + 3.0) * (1.0 / 6.0)

    class HardSwishRelu6(nn.Module):
        def forward(self, x):
            return x * (F.relu6(x + 3.0) * (1.0 / 6.0))

    for name, module in list(model.named_modules()):
        swap = {nn.Hardswish: HardSwishRelu6, nn.Hardsigmoid: HardSigmoidRelu6}.get(type(module))
        if swap is not None:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, swap())
    return model


def _timm_classifier(model: Model):
    """timm's architecture behind AI Hub's ImageNet wrapper: a [0, 1] image, normalized in the graph."""
    import torch
    from timm_reference import import_timm
    from torch import nn

    net = _fused_norms(_trained_like(import_timm().create_model(model.builder.split(":", 1)[1], pretrained=False)))
    if model.hard_activations == "relu6":
        net = _hard_activations_as_relu6(net)

    class ImagenetClassifier(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

        def forward(self, image):
            if model.io == "hub":  # AI Hub compiles with --force_channel_last_input: the image arrives NHWC
                image = image.permute(0, 3, 1, 2)
            return self.net((image - self.mean) / self.std)

    return ImagenetClassifier(net).eval()


def calibration_images(count: int) -> np.ndarray:
    """The shipped calibration photographs at 224 px, as [0, 1] images (the wrapper normalizes)."""
    x = preprocess_all(find_images(default_calibration_images(), count, what="calibration"), 224)
    return (x * IMAGENET_STD.reshape(1, 3, 1, 1) + IMAGENET_MEAN.reshape(1, 3, 1, 1)).astype(np.float32)


def build_float(model: Model, out: Path) -> dict:
    """PyTorch -> opset-20 ONNX -> onnxsim -> BN fold (`model.float.onnx`), with the tool's own stage
    functions; for SwiftFormer-L1 nothing here (its export command builds it, see build_graph)."""
    facts: dict = {"weights": "random, trained-like magnitudes (realistic_init + BatchNorm1d + LayerScale)",
                   "hard_activations": model.hard_activations}
    t0 = time.perf_counter()
    shape = (1, 224, 224, 3) if model.io == "hub" else (1, 3, 224, 224)
    facts["export"] = export_onnx(_timm_classifier(model), shape, out / "model.onnx",
                                  is_encoder_block=False, opset=DEFAULT_OPSET)
    facts["simplify"] = simplify_onnx(out / "model.onnx", out / "model.sim.onnx")
    fold = fold_stage(out / "model.sim.onnx", out / "model.float.onnx")
    facts["fold_bn"] = {k: v for k, v in fold.items() if k != "folds"}
    facts["float_build_s"] = round(time.perf_counter() - t0, 1)
    for scratch in ("model.onnx", "model.sim.onnx"):
        (out / scratch).unlink()
    return facts


def build_graph(case: Case, out: Path, calibration: np.ndarray) -> tuple[Path, dict]:
    """The graph to compile and estimate for one case: QDQ (`quantize_qdq`: `qnn_preprocess_model`,
    then onnxruntime's QNN QDQ config, per-channel int8 weights) or, for fp16, the float graph."""
    if case.model.builder.startswith("swiftformer:"):
        return build_swiftformer(case, out, calibration.shape[0])
    if case.precision is Precision.FP16:
        return out / "model.float.onnx", {"graph": "float (the HTP runs it in fp16)"}
    qdq = out / f"model.{case.precision.value}.qdq.onnx"
    t0 = time.perf_counter()
    if case.model.io == "hub":
        calibration = np.ascontiguousarray(calibration.transpose(0, 2, 3, 1))
    facts = quantize_qdq(out / "model.float.onnx", calibration, qdq, case.precision)
    built = {"quantize": facts, "quantize_s": round(time.perf_counter() - t0, 1)}
    if case.model.io == "hub":
        built["quantized_io"] = quantized_io(qdq)
    return qdq, built


def quantized_io(qdq: Path) -> dict:
    """AI Hub's `--quantize_io`, on the QDQ graph: the graph input becomes the quantized tensor its
    QuantizeLinear produced and the output the quantized tensor its last DequantizeLinear read, so
    the conversions run in the application, not on the HTP (and not in the estimate)."""
    import onnx

    model = onnx.load(str(qdq))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    done = []
    for vi in g.input:
        readers = [n for n in g.node if vi.name in n.input]
        if len(readers) != 1:
            continue
        # The channel-last image goes through the wrapper's Transpose first, which the quantizer
        # leaves in float and quantizes after: input -> Transpose -> Q becomes input(quantized) ->
        # Transpose (a pure permutation: exact on the quantized values).
        moved = readers[0] if readers[0].op_type == "Transpose" else None
        after = [n for n in g.node if moved is not None and moved.output[0] in n.input]
        q = after[0] if moved is not None and len(after) == 1 else readers[0]
        if q.op_type != "QuantizeLinear":
            continue
        vi.type.tensor_type.elem_type = inits[q.input[2]].data_type
        if moved is not None:
            moved.output[0] = q.output[0]
        else:
            for n in g.node:
                n.input[:] = [vi.name if x == q.output[0] else x for x in n.input]
        g.node.remove(q)
        done.append(f"input {vi.name}" + (" (before its Transpose)" if moved is not None else ""))
    for vo in g.output:
        dq = next((n for n in g.node if vo.name in n.output), None)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        vo.type.tensor_type.elem_type = inits[dq.input[2]].data_type
        source = dq.input[0]
        g.node.remove(dq)
        for n in g.node:
            n.output[:] = [vo.name if x == source else x for x in n.output]
            n.input[:] = [vo.name if x == source else x for x in n.input]
        done.append(f"output {vo.name}")
    onnx.checker.check_model(model)
    onnx.save(model, str(qdq))
    return {"quantized": done}


def build_swiftformer(case: Case, out: Path, calibration_count: int) -> tuple[Path, dict]:
    """The tool's own export command, up to the QDQ graph."""
    graph = case.model.builder.split(":", 1)[1]
    export_dir = out / f"export-{case.precision.value}"
    cmd = [sys.executable, "-m", "swiftformer_qnn.cli", "export", "--variant", "l1", "--graph", graph,
           "--precision", case.precision.value, "--until", "quantize",
           "--calibration-count", str(calibration_count), "--output-dir", str(export_dir)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
    return export_dir / "model.qdq.onnx", {
        "weights": "random, trained-like magnitudes (the export's default)",
        "command": "swiftformer-qnn " + " ".join(cmd[4:-2]), "export_s": round(time.perf_counter() - t0, 1)}


# --- checking the graphs ---------------------------------------------------------------------


def weight_bytes(graph: Path, fp16: bool) -> dict:
    """What the HTP has to stream in as weights: the quantized constants feeding DequantizeLinear
    (int8 weights, int32 biases; their per-channel scales are not counted), or for an fp16 graph
    every float constant at 2 bytes. Also any float constant over 4 KiB that a compute op reads
    directly in a QDQ graph (a weight left unquantized, which is how the quick graphs' Input Fill
    exploded); Q/DQ scales are float by design and not counted there."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    dq_data = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    read_by_compute = {name for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                       for name in n.input}
    total, unquantized = 0, []
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if fp16:
            total += arr.size * 2 if arr.dtype.kind == "f" else arr.nbytes
        elif init.name in dq_data and arr.dtype.kind in "iu":
            total += arr.nbytes
        elif arr.dtype.kind == "f" and arr.nbytes > 4096 and init.name in read_by_compute:
            unquantized.append(init.name)
    return {"weight_bytes": total, "float_constants_over_4k": unquantized, "op_types": op_histogram(model)}


def compile_for_device(graph: Path, out: Path, fp16: bool) -> tuple[Path, dict]:
    """The tool's compile for SM8550 (BN guard, then CPU fallback disabled: every node on the HTP, or
    an error naming the nodes the HTP rejects). Returns the graph the compile used (the guard's
    rewrite, if it made one: the estimate must see the same graph) and what the compile says."""
    soc = get_soc("sm8550")
    source, guard = guarded_model(graph, out, name=f"{graph.stem}.bn-guarded.onnx")
    record = compile_model(CompileSpec(model=source, out_dir=out / f"sm8550-{graph.stem}",
                                          target=HtpTarget(soc.soc_model, soc.htp_arch, fp16=fp16), soc=soc.name))
    rewritten = [f["node"] for f in guard.get("corrupted_predicted", []) if f.get("action") == "rewritten"]
    return source, {"soc": soc.name, "placement": record.placement, "htp_ops": record.htp_op_count,
                    "htp_op_types": record.htp_op_types, "context_binary_bytes": record.context_binary_bytes,
                    "bn_guard_rewrote": rewritten, "compile_s": record.compile_s}


def estimate(graph: Path, work: Path, fp16: bool, qnn: str | None = None) -> dict:
    """The product's estimate of one graph (`htp.estimate.estimate_model`: one compile for the
    estimator's proxy SoC), with QNN `qnn` (an installed toolchain) or this environment's."""
    from swiftformer_qnn.htp.estimate import estimate_model

    t0 = time.perf_counter()
    e = estimate_model(graph, work, fp16=fp16, qnn=qnn)
    # AI Hub's wrapper normalizes the [0, 1] image in the graph (`/Sub`, `/Div` at its root): a
    # 3-channel tensor, padded to the HTP's 32-channel granules, whose share is worth seeing apart.
    normalization = sum(o.span_cycles for o in e.ops if o.name in ("/Sub", "/Div"))
    return {"us": round(e.us, 1), "image_normalization_us": _round(e.to_us(normalization)), "lower_us": _round(e.us_lower), "upper_us": _round(e.us_upper), "cycles": e.cycles,
            "us_converted_from_cycles": e.us_converted, "input_fill_bytes": e.input_fill_bytes,
            "missing_ops": e.missing_ops, "proxy_soc": e.proxy_soc, "label": e.label, "qnn_version": e.qnn_version,
            "estimate_s": round(time.perf_counter() - t0, 2)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def graph_problems(est: dict, weights: dict) -> list[str]:
    """Why an estimate cannot be trusted as one of this graph, or [] (the checks of the notes: every
    node on the HTP is the compile's; here Missing Ops and Input Fill against the weights)."""
    problems = []
    if est["missing_ops"]:
        problems.append(f"Missing Ops {est['missing_ops']}: the estimator has no cost for them and leaves them out")
    fill = est["input_fill_bytes"] / weights["weight_bytes"] if weights["weight_bytes"] else float("inf")
    if not FILL_BAND[0] <= fill <= FILL_BAND[1]:
        problems.append(f"Input Fill is {fill:.2f}x the weight bytes (expected {FILL_BAND[0]}-{FILL_BAND[1]})")
    if weights["float_constants_over_4k"]:
        problems.append(f"{len(weights['float_constants_over_4k'])} float constant(s) over 4 KiB read unquantized")
    return problems


# --- one run ---------------------------------------------------------------------------------


def run_case(case: Case, work: Path, calibration: np.ndarray, qnn_versions: list[str]) -> dict:
    out = work / case.model.name
    out.mkdir(parents=True, exist_ok=True)
    row: dict = {"case": case.key, "model": case.model.name, "builder": case.model.builder,
                 "hard_activations": case.model.hard_activations, "io": case.model.io,
                 # AI Hub's I/O form is the one its figures measure; the tool's form of the same model
                 # is shown for what the I/O conversions cost inside the estimate.
                 "comparable_form": case.model.io == "hub" or case.model.builder.startswith("swiftformer:"),
                 "precision": case.precision.value,
                 "note": "; ".join(n for n in (case.model.note, case.note) if n),
                 "published": asdict(case.published) if case.published else None}
    fp16 = case.precision is Precision.FP16
    try:
        if case.model.builder.startswith("timm:") and not (out / "model.float.onnx").is_file():
            row["float_build"] = build_float(case.model, out)
        graph, row["build"] = build_graph(case, out, calibration)
        weights = weight_bytes(graph, fp16)
        row["weight_bytes"] = weights["weight_bytes"]
        row["graph_op_types"] = weights["op_types"]
        compiled, row["device_compile"] = compile_for_device(graph, out, fp16)
        row["estimate"] = estimate(compiled, out / f"estimate-{case.precision.value}", fp16)
        row["estimate_by_qnn"] = {}
        for qnn in qnn_versions:  # the same graph estimated by other QNN releases (installed toolchains)
            try:
                by = estimate(compiled, out / f"estimate-{case.precision.value}-qnn{qnn}", fp16, qnn=qnn)
                row["estimate_by_qnn"][by["qnn_version"]] = by
            except Exception as exc:
                row["estimate_by_qnn"][qnn] = {"failed": f"{type(exc).__name__}: {exc}"[:500]}
    except Exception as exc:  # one model that cannot be built is reported, not the end of the run
        row["excluded"] = f"{type(exc).__name__}: {exc}".strip()[:2000]
        row["traceback"] = traceback.format_exc()[-3000:]
        return row
    est = row["estimate"]
    row["input_fill_over_weights"] = round(est["input_fill_bytes"] / weights["weight_bytes"], 3)
    row["problems"] = graph_problems(est, weights)
    if case.published:
        row["ratio"] = round(est["us"] / 1000 / case.published.ms, 3)
        if case.published.sa8255p_ms:
            row["ratio_to_sa8255p"] = round(est["us"] / 1000 / case.published.sa8255p_ms, 3)
    return row


def spread(ratios: list[float]) -> dict | None:
    if not ratios:
        return None
    return {"n": len(ratios), "median": round(statistics.median(ratios), 3), "min": min(ratios), "max": max(ratios),
            "geometric_mean": round(float(np.exp(np.mean(np.log(ratios)))), 3)}


def fit(rows: list[dict]) -> dict | None:
    """published_ms = a + b * estimate_ms by least squares: a is what every inference pays besides
    the accelerator's work (RPC, I/O), b how the estimate scales with the device. Few points: its
    residuals say how much to believe it."""
    if len(rows) < 3:
        return None
    x = np.array([r["estimate"]["us"] / 1000 for r in rows])
    y = np.array([r["published"]["ms"] for r in rows])
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    return {"n": len(rows), "intercept_ms": round(float(a), 3), "slope": round(float(b), 3),
            "residual_ms_max_abs": round(float(np.abs(resid).max()), 3),
            "r2": round(float(1 - (resid**2).sum() / ((y - y.mean()) ** 2).sum()), 3)}


def summarize(rows: list[dict]) -> dict:
    """The spread over the rows that count: a published figure, an estimate, no graph problem,
    and the same precision as published (fp16 estimates compare with AI Hub's "float")."""
    def counts(r):
        return (r.get("ratio") is not None and not r.get("problems") and "excluded" not in r
                and r["comparable_form"])

    def why_not(r):
        if r.get("excluded") or r.get("problems"):
            return r.get("excluded") or "; ".join(r["problems"])
        if r.get("ratio") is None:
            return "no published figure"
        return "the tool's float NCHW I/O (shows what the I/O conversions cost); AI Hub's form is the row counted"

    counted = [r for r in rows if counts(r)]
    quantized = [r for r in counted if r["precision"] != "fp16"]
    fp16 = [r for r in counted if r["precision"] == "fp16"]
    return {
        "counted": [r["case"] for r in counted],
        "not_counted": {r["case"]: why_not(r) for r in rows if not counts(r)},
        "ratio_all": spread([r["ratio"] for r in counted]),
        "ratio_quantized": spread([r["ratio"] for r in quantized]),
        "ratio_fp16": spread([r["ratio"] for r in fp16]),
        "ratio_to_sa8255p": spread([r["ratio_to_sa8255p"] for r in counted if r.get("ratio_to_sa8255p")]),
        "ratio_without_image_normalization": spread([
            round((r["estimate"]["us"] - (r["estimate"].get("image_normalization_us") or 0)) / 1000 / r["published"]["ms"], 3)
            for r in counted]),
        "fit_published_vs_estimate": fit(counted),
        "fit_published_vs_estimate_quantized": fit(quantized),
        "ratio_by_qnn": {v: spread([r["estimate_by_qnn"][v]["us"] / 1000 / r["published"]["ms"] for r in counted
                                    if "us" in r.get("estimate_by_qnn", {}).get(v, {})])
                         for v in sorted({v for r in counted for v in r.get("estimate_by_qnn", {})})},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="directory for estimate-validation.json and .md")
    ap.add_argument("--models", help="comma-separated model names (default: all)")
    ap.add_argument("--work", type=Path, help="keep the built graphs here (default: a temporary directory)")
    ap.add_argument("--calibration-count", type=int, default=16)
    ap.add_argument("--qnn", default="", help="also estimate every graph with these installed QNN toolchains "
                    "(comma-separated, e.g. 2.47,2.48,2.49,2.50)")
    args = ap.parse_args()
    wanted = set(args.models.split(",")) if args.models else None
    cases = [c for c in CASES if wanted is None or c.model.name in wanted]
    work = args.work or Path(tempfile.mkdtemp(prefix="sfq-estimate-validation-"))
    started = time.perf_counter()
    calibration = calibration_images(args.calibration_count)
    rows = []
    for case in cases:  # one at a time: the machine is shared
        print(f"[{time.strftime('%H:%M:%S')}] {case.key}", file=sys.stderr, flush=True)
        rows.append(run_case(case, work, calibration, [v for v in args.qnn.split(",") if v]))
        r = rows[-1]
        print("   ", r.get("excluded") or f"{r['estimate']['us']} us, ratio {r.get('ratio')}, problems {r['problems']}",
              file=sys.stderr, flush=True)
    estimated = [r for r in rows if "estimate" in r]
    result = {
        "what": "QNN HTP estimate (Hextimate) of models with published Galaxy S23 device times: estimate / published",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python tests/bench/estimate_validation.py " + " ".join(sys.argv[1:]),
        "git_commit": _git_commit(),
        "qnn_version": sorted({r["estimate"]["qnn_version"] for r in estimated}),
        "proxy_soc": sorted({r["estimate"]["proxy_soc"] for r in estimated}),
        "calibration_images": int(calibration.shape[0]),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "wall_s": round(time.perf_counter() - started, 1),
        "summary": summarize(rows),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "estimate-validation.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "estimate-validation.md").write_text(markdown(result))
    print(markdown(result))


def _git_commit() -> str | None:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def _ms(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        "# Estimate vs published device time",
        "",
        f"{result['what']}. Estimates: QNN {', '.join(result['qnn_version'])} (onnxruntime-qnn), proxy SoC "
        f"{', '.join(result['proxy_soc'])} for SM8550, accelerator execution time; published: end-to-end inference "
        f"times on the phone. Date {result['date']}, commit {result['git_commit']}, {result['calibration_images']} "
        f"calibration photographs. Command: `{result['command']}`.",
        "",
        "| model | precision | HTP ops (published layers) | estimated us (lower-upper) | of which image normalization us "
        "| Missing Ops | Input Fill / weights | published S23 ms (runtime) | published SA8255P ms | estimate / published "
        "| counted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        p = r.get("published") or {}
        if "excluded" in r:
            lines.append(f"| {r['model']} | {r['precision']} | | excluded: {r['excluded'][:200]} | | | | "
                         f"{_ms(p.get('ms'))} | | | no |")
            continue
        e, c = r["estimate"], r["device_compile"]
        pub = f"{_ms(p['ms'])} ({p['runtime']} {p['precision']})" if p else "none"
        counted = "yes" if r["case"] in s["counted"] else ("no: " + s["not_counted"][r["case"]])
        lines.append(
            f"| {r['model']} | {r['precision']} | {c['htp_ops']} ({p.get('layers') or ''}) | "
            f"{e['us']:.0f} ({e['lower_us']:.0f}-{e['upper_us']:.0f}) | {e['image_normalization_us']:.0f} | "
            f"{e['missing_ops']} | {r['input_fill_over_weights']:.2f} | "
            f"{pub} | {_ms(p.get('sa8255p_ms'))} | {r.get('ratio', '')} | {counted} |")
    lines += ["", "Spread of estimate / published over the counted rows:", ""]
    for label, key in (("all", "ratio_all"), ("quantized", "ratio_quantized"), ("fp16", "ratio_fp16"),
                       ("against SA8255P's own published time", "ratio_to_sa8255p"),
                       ("all, leaving the image normalization out of the estimate", "ratio_without_image_normalization")):
        v = s[key]
        if v:
            lines.append(f"- {label}: median {v['median']}, min {v['min']}, max {v['max']} "
                         f"(geometric mean {v['geometric_mean']}, n={v['n']})")
    for label, key in (("all", "fit_published_vs_estimate"), ("quantized", "fit_published_vs_estimate_quantized")):
        f = s[key]
        if f:
            lines.append(f"- least squares, {label}: published_ms = {f['intercept_ms']} + {f['slope']} x estimate_ms "
                         f"(n={f['n']}, R^2 {f['r2']}, largest residual {f['residual_ms_max_abs']} ms)")
    versions = sorted({v for r in result["rows"] for v in r.get("estimate_by_qnn", {})})
    if versions:
        lines += ["", "The same graphs estimated by other QNN releases (us; ratio spread over the counted rows):", "",
                  "| model | precision | " + " | ".join(versions) + " |", "|---|---|" + "---|" * len(versions)]
        for r in result["rows"]:
            by = r.get("estimate_by_qnn") or {}
            if by:
                lines.append(f"| {r['model']} | {r['precision']} | "
                             + " | ".join(str(by.get(v, {}).get("us", "failed")) for v in versions) + " |")
        for v, sp in s["ratio_by_qnn"].items():
            if sp:
                lines.append(f"- QNN {v}: estimate / published median {sp['median']}, min {sp['min']}, max {sp['max']}")
    lines += ["", "Sources of the published figures:", ""]
    for src in sorted({r["published"]["source"] for r in result["rows"] if r.get("published")}):
        lines.append(f"- {src}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
