"""Yardstick for `export --variant l1`: the main job as a user would script it by hand, top to
bottom, with no caching, checks or records.

SwiftFormer-L1 (transformers' implementation, random weights) -> ONNX (opset 20) -> onnxsim ->
QDQ w8a8 calibrated on the shipped photographs -> QNN context binary for SM8550 (HTP v73)
through onnxruntime-qnn, every op on the HTP. `nox -s bench` times it in the same run as the
tool, so the ratio between the two is what counts.

Usage: python tests/bench/straight_pipeline.py OUTDIR [N_CALIBRATION_IMAGES]
"""

import sys
import time
from pathlib import Path

started = time.time()
# PyPI's torchvision (a test extra, through timm) is a CUDA build that cannot import beside the
# CPU torch, and transformers imports it when installed; SwiftFormer does not need it.
sys.modules.setdefault("torchvision", None)
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402
import onnxruntime_qnn  # noqa: E402
import onnxsim  # noqa: E402
import torch  # noqa: E402
from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize  # noqa: E402
from onnxruntime.quantization.execution_providers.qnn import (  # noqa: E402
    get_qnn_qdq_config,
    qnn_preprocess_model,
)
from PIL import Image  # noqa: E402
from transformers import SwiftFormerConfig, SwiftFormerForImageClassification  # noqa: E402

out = Path(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else 64
out.mkdir(parents=True, exist_ok=True)
photos = sorted((Path(__file__).resolve().parents[2] / "calibration" / "images").glob("*.jpg"))[:count]
seconds = {"import": time.time() - started}


class Logits(torch.nn.Module):
    """transformers returns a ModelOutput; the ONNX graph should return the logits tensor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return self.model(pixel_values=image).logits


t = time.time()
l1 = SwiftFormerConfig(depths=[4, 3, 10, 5], embed_dims=[48, 96, 192, 384])
model = Logits(SwiftFormerForImageClassification(l1)).eval()
torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), out / "model.onnx", opset_version=20,
                  input_names=["image"], output_names=["logits"], dynamo=False)
seconds["export"] = time.time() - t

t = time.time()
simplified, _ = onnxsim.simplify(onnx.load(out / "model.onnx"))
# onnxsim's metadata entries make onnxruntime's qnn_preprocess_model fail (TypeError on update).
del simplified.metadata_props[:]
onnx.save(simplified, out / "model.sim.onnx")
seconds["simplify"] = time.time() - t


def preprocess(path):
    """ImageNet eval transform: short side to 235 (crop_pct 0.95), centre crop 224, mean/std."""
    img = Image.open(path).convert("RGB")
    scale = 235 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    x = (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    return x.transpose(2, 0, 1)[None].astype(np.float32)


class Photos(CalibrationDataReader):
    def __init__(self):
        self.batches = iter([{"image": preprocess(p)} for p in photos])

    def get_next(self):
        return next(self.batches, None)


t = time.time()
to_quantize = out / "model.pp.onnx"
if not qnn_preprocess_model(out / "model.sim.onnx", to_quantize):
    to_quantize = out / "model.sim.onnx"
config = get_qnn_qdq_config(to_quantize, Photos(), activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QUInt8, per_channel=True)
quantize(to_quantize, out / "model.qdq.onnx", config)
seconds["quantize"] = time.time() - t

t = time.time()
onnxruntime.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
qnn = [d for d in onnxruntime.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
options = onnxruntime.SessionOptions()
options.add_provider_for_devices(qnn, {"backend_path": onnxruntime_qnn.get_qnn_htp_path(),
                                       "htp_arch": "73", "soc_model": "43"})  # SM8550
options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
options.add_session_config_entry("ep.context_enable", "1")
options.add_session_config_entry("ep.context_file_path", str(out / "model.ctx.onnx"))
options.add_session_config_entry("ep.context_embed_mode", "0")
onnxruntime.InferenceSession(str(out / "model.qdq.onnx"), options)
seconds["compile"] = time.time() - t

seconds["total"] = time.time() - started
print(f"{len(photos)} calibration photographs; " + " ".join(f"{k}={v:.2f}s" for k, v in seconds.items()))
