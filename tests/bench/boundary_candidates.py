"""Rewrites of the float NCHW input boundary of an export's QDQ graph, estimated (issue 22).

The default export takes a float NCHW image: the HTP quantizes it (QNN's estimator puts that
Quantize on one HVX thread: the 1x3x224x224 tensor is 3 rows of 224 x 224 channels to the
channel-last HTP) and converts it to channel-last (3 channels padded to a 32-channel tile). Each
candidate here keeps the graph's input and output (float NCHW) and its function (the same
quantized integers: the test is that the CPU runs of the candidate and of the export's graph
give equal outputs on the held-out inputs), and changes only where and in which shape the
boundary work happens:

- `reshape-R`: the image reshaped to R before its Quantize (the same scale and zero point), and
  the quantized tensor reshaped back: a Quantize over many rows, on all HVX threads;
- `transpose-first`: the float image transposed to NHWC inside the graph before its Quantize.

Each is compiled for the estimator's proxy SoC with the product's options (`htp.estimate`:
graph optimization level 3) and estimated; `--sqnr` adds HTP-vs-fp32 SQNR (the candidate
compiled for the export's SoC and run on the x86 HTP emulator over the held-out inputs).
Every figure is QNN's estimate (SA8255P proxy for SM8550), not a device time.

Usage: python tests/bench/boundary_candidates.py OUT.json EXPORT_DIR [--candidates a,b] [--sqnr]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from swiftformer_qnn.htp.estimate import estimate_model  # noqa: E402
from swiftformer_qnn.measure.agreement import compare_outputs, run_cpu  # noqa: E402

# Shapes of the 3 x 224 x 224 values with 32 channels (one HTP channel granule, no padding) and
# many rows, which the HVX threads share.
RESHAPES = {"reshape-672x7x32": [1, 672, 7, 32], "reshape-147x32x32": [1, 147, 32, 32],
            "reshape-224x21x32": [1, 224, 21, 32]}


def _input_quantize(model: onnx.ModelProto) -> onnx.NodeProto:
    (x,) = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    (q,) = [n for n in model.graph.node if x.name in n.input]
    assert q.op_type == "QuantizeLinear", q.op_type
    return q


def reshape_before_quantize(model: onnx.ModelProto, shape: list[int]) -> None:
    """image -> Reshape(shape) -> Q -> DQ -> Reshape(back) -> (the export's Q): the EP groups the
    DQ/Reshape/Q into a uint8 Reshape, so the float image's Quantize runs in `shape`."""
    g = model.graph
    q = _input_quantize(model)
    image = q.input[0]
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    g.initializer.extend([numpy_helper.from_array(np.array(shape, np.int64), "boundary_shape"),
                          numpy_helper.from_array(np.array(dims, np.int64), "image_shape")])
    new = [helper.make_node("Reshape", [image, "boundary_shape"], ["image_rows"], name="boundary_reshape"),
           helper.make_node("QuantizeLinear", ["image_rows", q.input[1], q.input[2]], ["image_rows_q"],
                            name="boundary_quantize"),
           helper.make_node("DequantizeLinear", ["image_rows_q", q.input[1], q.input[2]], ["image_rows_dq"],
                            name="boundary_dequantize"),
           helper.make_node("Reshape", ["image_rows_dq", "image_shape"], ["image_back"], name="boundary_reshape_back")]
    q.input[0] = "image_back"
    for k, n in enumerate(new):
        g.node.insert(k, n)


def transpose_first(model: onnx.ModelProto) -> None:
    """image -> Transpose(NHWC) -> Q -> DQ -> Transpose(NCHW) -> (the export's Q)."""
    g = model.graph
    q = _input_quantize(model)
    image = q.input[0]
    new = [helper.make_node("Transpose", [image], ["image_nhwc"], perm=[0, 2, 3, 1], name="boundary_to_nhwc"),
           helper.make_node("QuantizeLinear", ["image_nhwc", q.input[1], q.input[2]], ["image_nhwc_q"],
                            name="boundary_quantize"),
           helper.make_node("DequantizeLinear", ["image_nhwc_q", q.input[1], q.input[2]], ["image_nhwc_dq"],
                            name="boundary_dequantize"),
           helper.make_node("Transpose", ["image_nhwc_dq"], ["image_back"], perm=[0, 3, 1, 2], name="boundary_to_nchw")]
    q.input[0] = "image_back"
    for k, n in enumerate(new):
        g.node.insert(k, n)


def split_quantize(model: onnx.ModelProto, axis: int, parts: int) -> None:
    """image -> Split(axis, parts) -> a Q -> DQ per part -> Concat -> (the export's Q): independent
    Quantizes the HTP may run on separate HVX threads (onnxruntime folds Reshape pairs away)."""
    g = model.graph
    q = _input_quantize(model)
    image = q.input[0]
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    sizes = [dims[axis] // parts] * parts
    sizes[-1] += dims[axis] - sum(sizes)
    g.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), "boundary_split"))
    parts_out = [f"image_part{k}" for k in range(parts)]
    new = [helper.make_node("Split", [image, "boundary_split"], parts_out, axis=axis, name="boundary_split")]
    for k, part in enumerate(parts_out):
        new += [helper.make_node("QuantizeLinear", [part, q.input[1], q.input[2]], [f"{part}_q"], name=f"boundary_quantize{k}"),
                helper.make_node("DequantizeLinear", [f"{part}_q", q.input[1], q.input[2]], [f"{part}_dq"],
                                 name=f"boundary_dequantize{k}")]
    new.append(helper.make_node("Concat", [f"{p}_dq" for p in parts_out], ["image_back"], axis=axis, name="boundary_concat"))
    q.input[0] = "image_back"
    for k, n in enumerate(new):
        g.node.insert(k, n)


def split_quantize_transpose(model: onnx.ModelProto, parts: int) -> None:
    """image -> Split(rows, parts) -> per part Q -> DQ -> Transpose(NHWC) -> Q -> DQ -> Concat(rows,
    NHWC) -> Transpose(NCHW) -> (the export's Q): each strip quantized and made channel-last on
    its own, which the layout transformer's NHWC transpose before the stem cancels."""
    g = model.graph
    q = _input_quantize(model)
    image, scale, zero = q.input[0], q.input[1], q.input[2]
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    sizes = [dims[2] // parts] * parts
    sizes[-1] += dims[2] - sum(sizes)
    g.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), "boundary_split"))
    strips = [f"image_strip{k}" for k in range(parts)]
    new = [helper.make_node("Split", [image, "boundary_split"], strips, axis=2, name="boundary_split")]
    for k, strip in enumerate(strips):
        new += [helper.make_node("QuantizeLinear", [strip, scale, zero], [f"{strip}_q"], name=f"boundary_quantize{k}"),
                helper.make_node("DequantizeLinear", [f"{strip}_q", scale, zero], [f"{strip}_dq"], name=f"boundary_dq{k}"),
                helper.make_node("Transpose", [f"{strip}_dq"], [f"{strip}_nhwc"], perm=[0, 2, 3, 1],
                                 name=f"boundary_to_nhwc{k}"),
                helper.make_node("QuantizeLinear", [f"{strip}_nhwc", scale, zero], [f"{strip}_nhwc_q"],
                                 name=f"boundary_quantize_nhwc{k}"),
                helper.make_node("DequantizeLinear", [f"{strip}_nhwc_q", scale, zero], [f"{strip}_nhwc_dq"],
                                 name=f"boundary_dq_nhwc{k}")]
    new += [helper.make_node("Concat", [f"{s}_nhwc_dq" for s in strips], ["image_nhwc"], axis=1, name="boundary_concat"),
            helper.make_node("QuantizeLinear", ["image_nhwc", scale, zero], ["image_nhwc_q"], name="boundary_quantize_all"),
            helper.make_node("DequantizeLinear", ["image_nhwc_q", scale, zero], ["image_nhwc_dq"], name="boundary_dq_all"),
            helper.make_node("Transpose", ["image_nhwc_dq"], ["image_back"], perm=[0, 3, 1, 2], name="boundary_to_nchw")]
    q.input[0] = "image_back"
    for k, n in enumerate(new):
        g.node.insert(k, n)


CANDIDATES = {"none": lambda m: None, "transpose-first": transpose_first,
              **{name: (lambda m, s=shape: reshape_before_quantize(m, s)) for name, shape in RESHAPES.items()},
              "split-h2": lambda m: split_quantize(m, 2, 2), "split-h4": lambda m: split_quantize(m, 2, 4),
              "split-h8": lambda m: split_quantize(m, 2, 8), "split-c3": lambda m: split_quantize(m, 1, 3),
              "split-transpose-h2": lambda m: split_quantize_transpose(m, 2),
              "split-transpose-h4": lambda m: split_quantize_transpose(m, 4),
              "split-transpose-h8": lambda m: split_quantize_transpose(m, 8)}


def htp_sqnr(model: Path, export: Path, work: Path) -> float | None:
    from swiftformer_qnn.htp.compile import compile_in_worker
    from swiftformer_qnn.htp.record import CompileSpec
    from swiftformer_qnn.htp.session import HtpTarget, htp_session

    # `model` is a rewrite of the export's guarded graph: compiled as it is, not guarded again.
    record = compile_in_worker(CompileSpec(model=model, out_dir=work, target=HtpTarget(), soc="sm8550"))
    session = htp_session(work / record.context_onnx, HtpTarget())
    heldout = np.load(export / "heldout.npy")
    name = session.get_inputs()[0].name
    got = np.concatenate([session.run(None, {name: heldout[i : i + 1]})[0] for i in range(len(heldout))])
    return compare_outputs(np.load(export / "heldout_fp32.npy"), got, classify=True)["sqnr_db"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("export", type=Path, help="an export directory (its compile/model.guarded.onnx is rewritten)")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--sqnr", action="store_true")
    a = ap.parse_args()
    base = a.export / "model.guarded.onnx"
    heldout = np.load(a.export / "heldout.npy")
    reference = run_cpu(base, heldout)
    rows = []
    for name in a.candidates.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            model = onnx.load(str(base))
            CANDIDATES[name](model)
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(model, str(path))
            same = bool(np.array_equal(run_cpu(path, heldout), reference))
            try:
                est = estimate_model(path, Path(tmp) / "estimate")
            except Exception as exc:  # noqa: BLE001 - a rewrite the HTP refuses is a result too
                rows.append({"candidate": name, "error": str(exc).splitlines()[0][:300]})
                print(name, "error", rows[-1]["error"], flush=True)
                continue
            row = {"candidate": name, "us": est.us, "us_lower": est.us_lower, "us_upper": est.us_upper,
                   "cycles": est.cycles, "missing_ops": est.missing_ops, "same_cpu_outputs": same}
            if a.sqnr:
                row["htp_vs_fp32_sqnr_db"] = htp_sqnr(path, a.export, Path(tmp) / "compile")
            rows.append(row)
            print(json.dumps(row), flush=True)
    a.out.write_text(json.dumps({"export": str(a.export), "estimator": "QNN Hextimate, SA8255P proxy for SM8550",
                                 "candidates": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
