# ruff: noqa
"""Reference: the straight-line script a user would write by hand for the main job.

SwiftFormer-L1 (transformers' implementation, random weights) -> ONNX (opset 20)
-> onnxsim -> qnn_preprocess -> QDQ w8a8 with N calibration inputs
-> QNN HTP v73 / SM8550 context binary via onnxruntime-qnn.
Used only to time the project's `export --variant l1` against, in one run.
Usage: python naive_pipeline.py OUTDIR [N_CALIB]

Copied as handed to us, plus one line: hide PyPI's torchvision (a test extra, through timm),
a CUDA build that cannot import beside the CPU torch, which transformers imports when present
(tests/bench/straight_pipeline.py does the same).
"""
import os, sys, time
t0 = time.time()
sys.modules.setdefault("torchvision", None)
import numpy as np, onnx, onnxsim, torch
import onnxruntime as ort, onnxruntime_qnn as oq
from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize
from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model
from transformers import SwiftFormerConfig, SwiftFormerForImageClassification

out = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
os.makedirs(out, exist_ok=True)
stamp = {"import": time.time() - t0}

class Wrap(torch.nn.Module):
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x): return self.m(pixel_values=x).logits

t = time.time()
model = Wrap(SwiftFormerForImageClassification(SwiftFormerConfig(depths=[4, 3, 10, 5], embed_dims=[48, 96, 192, 384]))).eval()
torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), f"{out}/m.onnx", opset_version=20,
                  input_names=["image"], output_names=["logits"], dynamo=False)
stamp["export"] = time.time() - t
t = time.time()
sim, ok = onnxsim.simplify(onnx.load(f"{out}/m.onnx")); del sim.metadata_props[:]
onnx.save(sim, f"{out}/sim.onnx"); stamp["simplify"] = time.time() - t

class Reader(CalibrationDataReader):
    def __init__(self):
        rng = np.random.default_rng(0)
        self.it = iter([{"image": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(n)])
    def get_next(self): return next(self.it, None)

t = time.time()
src = f"{out}/pp.onnx" if qnn_preprocess_model(f"{out}/sim.onnx", f"{out}/pp.onnx") else f"{out}/sim.onnx"
cfg = get_qnn_qdq_config(src, Reader(), activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8, per_channel=True)
quantize(src, f"{out}/q.onnx", cfg); stamp["quantize"] = time.time() - t

t = time.time()
ort.register_execution_provider_library("QNNExecutionProvider", oq.get_library_path())
dev = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"][0]
so = ort.SessionOptions()
so.add_provider_for_devices([dev], {"backend_path": oq.get_qnn_htp_path(), "htp_arch": "73", "soc_model": "43"})
so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
so.add_session_config_entry("ep.context_enable", "1")
so.add_session_config_entry("ep.context_file_path", f"{out}/ctx.onnx")
so.add_session_config_entry("ep.context_embed_mode", "0")
ort.InferenceSession(f"{out}/q.onnx", so); stamp["compile"] = time.time() - t
stamp["total"] = time.time() - t0
print(" ".join(f"{k}={v:.2f}s" for k, v in stamp.items()))
