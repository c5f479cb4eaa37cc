"""Yardstick for `export --until onnx`: the straight-line torch.onnx.export + onnxsim script a
user would write for SwiftFormer-L1 (transformers' implementation, as in
tests/bench/straight_pipeline.py). Usage: python straight_export_onnx.py OUTDIR"""
import os
import sys
import time

t0 = time.time()
# PyPI's torchvision (a test extra, through timm) is a CUDA build that cannot import beside the
# CPU torch, and transformers imports it when installed; SwiftFormer does not need it.
sys.modules.setdefault("torchvision", None)
import onnx  # noqa: E402
import onnxsim  # noqa: E402
import torch  # noqa: E402
from transformers import SwiftFormerConfig, SwiftFormerForImageClassification  # noqa: E402

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


class Wrap(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(pixel_values=x).logits


model = Wrap(SwiftFormerForImageClassification(SwiftFormerConfig(depths=[4, 3, 10, 5], embed_dims=[48, 96, 192, 384]))).eval()
torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), f"{out}/m.onnx", opset_version=20,
                  input_names=["image"], output_names=["logits"], dynamo=False)
sim, ok = onnxsim.simplify(onnx.load(f"{out}/m.onnx"))
onnx.save(sim, f"{out}/sim.onnx")
print(f"total={time.time() - t0:.2f}s")
