"""`diagnose`: where in the network quantization and the compiled binary lose the model.

For an export directory: the output of each block (stem, downsamples, every ConvEncoder and
SwiftFormerEncoder, head) on one held-out input, compared fp32 -> CPU QDQ -> HTP emulator, and
the op where the HTP departs from the CPU (`localize`), as a typed `Diagnosis`
(written as JSON and Markdown by `report.diagnosis`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from pydantic import BaseModel

from ..core.errors import UsageError
from ..htp.bn_guard import guarded_model
from ..htp.session import HtpTarget
from ..measure.agreement import cpu_session, sqnr_db
from ..measure.attribution import model_blocks
from ..model.variants import get_variant
from .artifacts import read_manifest
from .compile import GUARDED_MODEL
from .localize import as_native_io, block_of, divergence, run_taps, taps
from .requests import ExportedRequest, IoFormat

REQUIRED = (("quantize", "model.qdq.onnx"), ("inputs", "heldout.npy"))


class BlockFidelity(BaseModel):
    block: str
    kind: str | None
    tensor: str  # the block's last quantized activation
    fp32_available: bool  # the float graph has this tensor (QNN preprocessing renames a few)
    cpu_qdq_vs_fp32_db: float | None  # None: identical outputs (or no fp32 value)
    htp_vs_fp32_db: float | None
    htp_vs_cpu_qdq_db: float | None


class Diagnosis(BaseModel):
    export_dir: str
    variant: str
    precision: str
    graph: str  # the float graph the QDQ model was made from
    sample: str
    blocks: list[BlockFidelity]
    divergence: dict  # where the HTP departs from the CPU (localize.divergence)


def _db(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def diagnose_export(export_dir: Path, running: Callable[[], None] | None = None) -> Diagnosis:
    """`running()`: called once the export is checked, before its models run (the long part)."""
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise UsageError(f"{export_dir} is not a directory.", hint="Pass an export directory (swiftformer-qnn export ..., --until quantize or later).")
    manifest = read_manifest(export_dir)
    if manifest is None or not isinstance(manifest.request, ExportedRequest):
        raise UsageError(f"{export_dir} holds no export manifest of this tool.",
                         hint="Pass a directory written by `swiftformer-qnn export`.")
    # Every file through the manifest (ExportManifest.artifact checks its size and SHA-256): a
    # model.qdq.onnx dropped into the directory is not the export's and is never diagnosed as it.
    graph = manifest.float_graph()
    missing = [f"{stage}/{name}" for stage, name in REQUIRED
               if not (manifest.stage(stage) and name in manifest.stage(stage).outputs)]
    if missing or graph is None:
        raise UsageError(f"{export_dir}: the export has no {', '.join(missing or ['float graph'])}.",
                         hint="Diagnose an export made with --until quantize or later (the default runs everything).")
    req = manifest.request
    if req.precision == "fp16":
        raise UsageError("An fp16 export has no quantized tensors to compare.", hint="Diagnose a quantized export: w8a8, w8a16 or mixed.")

    shape = req.input_shape
    block = req.variant == "encoder"
    variant = get_variant(req.variant, encoder_dim=shape[1] if block else None, encoder_hw=shape[2] if block else None)
    target = HtpTarget(req.soc_model, req.htp_arch)
    sample = np.load(manifest.artifact(export_dir, "inputs", "heldout.npy"))[:1]
    qdq_path = manifest.artifact(export_dir, "quantize", "model.qdq.onnx")
    float_graph = manifest.artifact(export_dir, *graph)
    if running is not None:
        running()
    with tempfile.TemporaryDirectory() as tmp:
        # What the compile stage compiled (model.qdq.onnx after the BN guard), kept by the guard
        # stage (by the compile stage in earlier exports); one made before either kept it is guarded here.
        kept = [s for s in ("guard", "compile") if manifest.stage(s) is not None and GUARDED_MODEL in manifest.stage(s).outputs]
        if kept:
            compiled = manifest.artifact(export_dir, kept[0], GUARDED_MODEL)
        else:
            compiled, _ = guarded_model(qdq_path, Path(tmp))
        model = onnx.load(str(compiled))
        # `--io uint8-nhwc`: the graph and the input as the export's binary has and takes them.
        fed = as_native_io(model, sample) if req.io == IoFormat.UINT8_NHWC.value else sample
        chosen, cpu, htp = run_taps(model, fed, target, taps(model))

    # Each block's last quantized activation (taps are in execution order).
    last: dict[str, int] = {}
    kinds: dict[str, str | None] = {}
    for k, t in enumerate(chosen):
        where = block_of(t.producer.name if t.producer is not None else t.tensor, variant)
        if where.get("block") and where["block"] != "other":
            last[where["block"]] = k
            kinds[where["block"]] = where.get("block_kind")

    order = [b for b in model_blocks(variant) if b in last]
    fp32 = _float_values(float_graph, sample, [chosen[last[b]].tensor for b in order])
    blocks = []
    for b in order:
        k = last[b]
        ref = fp32.get(chosen[k].tensor)
        blocks.append(BlockFidelity(
            block=b, kind=kinds[b], tensor=chosen[k].tensor, fp32_available=ref is not None,
            cpu_qdq_vs_fp32_db=_db(sqnr_db(ref, cpu[k])) if ref is not None else None,
            htp_vs_fp32_db=_db(sqnr_db(ref, htp[k])) if ref is not None else None,
            htp_vs_cpu_qdq_db=_db(sqnr_db(cpu[k], htp[k]))))
    return Diagnosis(export_dir=str(export_dir), variant=variant.name, precision=req.precision, graph=graph[1],
                     sample="heldout.npy[0]", blocks=blocks,
                     divergence=divergence(model, chosen, cpu, htp, variant))


def _float_values(graph: Path, sample: np.ndarray, tensors: list[str]) -> dict[str, np.ndarray]:
    """The fp32 graph's values of `tensors` (those it has under the same name)."""
    model = onnx.load(str(graph))
    produced = {o for n in model.graph.node for o in n.output}
    # The quantizer renames a graph output's producer tensor `<output>_QuantizeLinear_Input`.
    original = {t: t.removesuffix("_QuantizeLinear_Input") for t in tensors}
    names = [t for t in dict.fromkeys(original.values()) if t in produced]
    have = {o.name for o in model.graph.output}
    for t in names:
        if t not in have:
            model.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    sess = cpu_session(model.SerializeToString())
    values = dict(zip(names, sess.run(names, {model.graph.input[0].name: sample}), strict=True))
    return {t: values[o] for t, o in original.items() if o in values}
