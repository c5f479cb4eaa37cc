"""The BatchNorm-overflow fidelity matrix (issue 10), as JSON.

For XS and L1 with realistic random weights (`model.realistic_init`: layer scales 0.1-1, BN
statistics away from identity), w8a8 and w8a16, calibration counts 8/16/32/64, three graph
forms compiled for SM8550 and run on the HTP emulator (4 shipped held-out photographs):

- `faithful`: the literal graph, compiled as onnxruntime-qnn takes it (no guard): the bug.
- `guarded`: the literal graph after the compile guard's per-channel rewrite.
- `folded`: the literal graph with BatchNorm folded before quantization (the `fold_bn` pass).
- `htp`: what `export` makes by default: the HTP-ready model form (`htp_model`), BN folded.

Per cell: CPU-QDQ-vs-fp32 and HTP-vs-fp32 SQNR (dB), the gap, HTP-vs-CPU SQNR, BNs the rule
flags, HTP op count and BatchNorm ops left; verify's criteria on it: the output criteria, and for
graphs with BatchNorm the per-channel map check (its worst BN, on held-out input 0, run on the
graph that was compiled), the verdict, and for failing cells the op the localization names
first and the seconds the check and localization took. `summary` gives, per variant and
precision, the corrupt cells' (a BN the guard's rule predicts flipped, compiled unguarded) and
the clean cells' extremes of each criterion, and the margins to its threshold. Also: the one-BN
reproduction before/after. Expensive (the emulator runs L1 at ~1.5 s/input).

Usage: python tests/bench/fidelity_matrix.py OUT.json [--variants xs,l1] [--counts 8,16,32,64]
       [--forms htp --update]  (re-measure one form in an existing OUT.json, e.g. after htp_model changed)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
logging.disable(logging.WARNING)

from swiftformer_qnn.core.targets import get_precision  # noqa: E402
from swiftformer_qnn.htp.bn_guard import predict, protect  # noqa: E402
from swiftformer_qnn.htp.compile import compile_model  # noqa: E402
from swiftformer_qnn.htp.record import CompileSpec  # noqa: E402
from swiftformer_qnn.htp.session import HtpTarget, htp_session  # noqa: E402
from swiftformer_qnn.measure.agreement import compare_outputs, run_cpu  # noqa: E402
from swiftformer_qnn.model.htp_form import to_htp_form  # noqa: E402
from swiftformer_qnn.model.swiftformer import build_model, realistic_init  # noqa: E402
from swiftformer_qnn.model.variants import get_variant  # noqa: E402
from swiftformer_qnn.pipeline.fold_bn import fold_stage  # noqa: E402
from swiftformer_qnn.pipeline.images import (  # noqa: E402
    default_calibration_images,
    default_heldout_images,
    find_images,
    preprocess_all,
)
from swiftformer_qnn.pipeline.localize import (  # noqa: E402
    MAX_MAP_MISMATCH_DB,
    divergence,
    run_taps,
    tensor_figures,
    worst_channel_map,
)
from swiftformer_qnn.pipeline.onnx_export import export_onnx, simplify_onnx  # noqa: E402
from swiftformer_qnn.pipeline.quantize import quantize_qdq  # noqa: E402
from swiftformer_qnn.pipeline.verify import (  # noqa: E402
    MAX_SQNR_GAP_DB,
    MIN_EMULATOR_SQNR_DB,
    channel_map_failures,
    output_failures,
)

HELDOUT = 4


def _htp(ctx: Path, x: np.ndarray) -> np.ndarray:
    s = htp_session(ctx, HtpTarget())
    return np.concatenate([s.run(None, {"image": x[i : i + 1]})[0] for i in range(len(x))])


def verify_criteria(qdq: Path, heldout, cpu_vs_htp: dict, htp_vs_fp32: dict, cpu_vs_fp32: dict, precision: str,
                    variant) -> dict:
    """verify's verdict on a cell, criterion by criterion; the localization where it fails."""
    p = get_precision(precision)
    out = {"output_failures": output_failures(cpu_vs_htp, htp_vs_fp32, cpu_vs_fp32, p), "channel_maps": None}
    model = onnx.load(str(qdq))
    figures = []
    if any(n.op_type == "BatchNormalization" for n in model.graph.node):
        t = time.perf_counter()
        chosen, cpu, htp = run_taps(model, heldout[:1], HtpTarget())
        figures = tensor_figures(model, chosen, cpu, htp)
        out["channel_maps"] = worst_channel_map(chosen, figures) | {"seconds": round(time.perf_counter() - t, 1)}
        out["channel_map_failures"] = channel_map_failures(out["channel_maps"], figures)
    out["verify_fails"] = bool(out["output_failures"] or out.get("channel_map_failures"))
    if out["verify_fails"]:
        t = time.perf_counter()
        if figures:
            finding = divergence(model, chosen, cpu, htp, variant, figures=figures)
        else:
            from swiftformer_qnn.pipeline.localize import locate

            finding = locate(qdq, heldout[:1], HtpTarget(), variant)
        took = time.perf_counter() - t + (out["channel_maps"] or {}).get("seconds", 0.0)
        out["localization"] = {"node": finding.get("node"), "why": finding.get("why"), "channel": finding.get("channel"),
                               "suspects": finding.get("suspects", [])[:3], "seconds": round(took, 1)}
    return out


def cell(float_graph: Path, form: str, calib: np.ndarray, heldout, fp32, precision: str, work: Path, variant) -> dict:
    qdq = work / f"{form}.qdq.onnx"
    quantize_qdq(float_graph, calib, qdq, get_precision(precision))
    model = onnx.load(str(qdq))
    flagged = predict(model)
    if form == "guarded":
        protect(model)
        onnx.save(model, str(qdq))
    ctx_dir = work / f"{form}-ctx"
    compiled = compile_model(CompileSpec(model=qdq, out_dir=ctx_dir, target=HtpTarget()))  # the EP directly, without the pipeline's guard
    cpu = run_cpu(qdq, heldout)
    htp = _htp(ctx_dir / "model.ctx.onnx", heldout)
    c, h = compare_outputs(fp32, cpu, classify=True), compare_outputs(fp32, htp, classify=True)
    e = compare_outputs(cpu, htp, classify=True)
    types = compiled.htp_op_types or {}
    return {"cpu_qdq_vs_fp32_db": c["sqnr_db"], "htp_vs_fp32_db": h["sqnr_db"],
            "gap_db": round(c["sqnr_db"] - h["sqnr_db"], 2), "htp_vs_cpu_db": e["sqnr_db"],
            "htp_vs_cpu_cosine_min": round(e["cosine_min"], 5),
            "bn_predicted_corrupt": [(f.node, f.channels) for f in flagged.findings],
            # What the binary holds: a predicted flip is corrupt unless the guard rewrote the BN.
            "corrupt": bool(flagged.findings) and form == "faithful",
            "htp_ops": compiled.htp_op_count,
            "htp_batchnorm_ops": sum(v for k, v in types.items() if "atchnorm" in k),
            "verify": verify_criteria(qdq, heldout, e, h, c, precision, variant)}


FORMS = ("faithful", "guarded", "folded", "htp")


def variant_matrix(name: str, counts: list[int], work: Path, out: dict, save, forms=FORMS) -> None:
    import torch

    v = get_variant(name)
    torch.manual_seed(0)
    model = realistic_init(build_model(v), seed=0)
    export_onnx(model, v.input_shape(224), work / f"{name}.onnx", is_encoder_block=False)
    simplify_onnx(work / f"{name}.onnx", work / f"{name}.sim.onnx")
    fold = fold_stage(work / f"{name}.sim.onnx", work / f"{name}.fold.onnx")
    export_onnx(to_htp_form(model, v.input_shape(224)), v.input_shape(224), work / f"{name}.htp.onnx", is_encoder_block=False)
    simplify_onnx(work / f"{name}.htp.onnx", work / f"{name}.htp.sim.onnx")
    fold_stage(work / f"{name}.htp.sim.onnx", work / f"{name}.htp.fold.onnx")
    heldout = preprocess_all(find_images(default_heldout_images(), HELDOUT, what="held-out"))
    fp32 = run_cpu(work / f"{name}.sim.onnx", heldout)
    out[name] = {"fold": {k: fold[k] for k in ("nodes_before", "nodes", "batchnorms_folded")},
                 "cells": out.get(name, {}).get("cells", {})}  # --update keeps the forms not re-run
    for precision in ("w8a8", "w8a16"):
        for n in counts:
            calib = preprocess_all(find_images(default_calibration_images(), n))
            for form in forms:
                d = Path(tempfile.mkdtemp(dir=work))
                graph = work / {"folded": f"{name}.fold.onnx", "htp": f"{name}.htp.fold.onnx"}.get(form, f"{name}.sim.onnx")
                t = time.perf_counter()
                res = cell(graph, form, calib, heldout, fp32, precision, d, v)
                res["wall_s"] = round(time.perf_counter() - t, 1)
                out[name]["cells"][f"{precision}/n{n}/{form}"] = res
                print(name, precision, n, form, json.dumps(res), flush=True)
                save()


def summary(out: dict) -> dict:
    """Per variant and precision: each criterion's extremes over corrupt and clean cells, and margins."""
    res: dict = {"thresholds": {"max_map_mismatch_db": MAX_MAP_MISMATCH_DB, "max_sqnr_gap_db": MAX_SQNR_GAP_DB,
                                "min_htp_vs_cpu_db": {p.value: v for p, v in MIN_EMULATOR_SQNR_DB.items()}}}
    for name in ("xs", "l1"):
        for precision in ("w8a8", "w8a16"):
            cells = {k: c for k, c in out.get(name, {}).get("cells", {}).items() if k.startswith(precision + "/")}
            if not cells:
                continue
            bad = [c for c in cells.values() if c["corrupt"]]
            good = [c for c in cells.values() if not c["corrupt"]]
            maps = lambda cs: [c["verify"]["channel_maps"]["worst_mismatch_db"] for c in cs  # noqa: E731
                               if c["verify"]["channel_maps"] and c["verify"]["channel_maps"].get("worst_mismatch_db") is not None]
            row = {"corrupt_cells": len(bad), "clean_cells": len(good),
                   "corrupt_failing_verify": sum(c["verify"]["verify_fails"] for c in bad),
                   "clean_failing_verify": sum(c["verify"]["verify_fails"] for c in good),
                   "htp_vs_cpu_db": {"corrupt_max": max((c["htp_vs_cpu_db"] for c in bad), default=None),
                                     "clean_min": min((c["htp_vs_cpu_db"] for c in good), default=None)},
                   "gap_db": {"corrupt_min": min((c["gap_db"] for c in bad), default=None),
                              "clean_max": max((c["gap_db"] for c in good), default=None)},
                   "map_mismatch_db": {"corrupt_min": min(maps(bad), default=None), "clean_max": max(maps(good), default=None),
                                       "clean_cells_with_bn": len(maps(good))}}
            m = row["map_mismatch_db"]
            if m["corrupt_min"] is not None and m["clean_max"] is not None:
                m["margin_corrupt_db"] = round(m["corrupt_min"] - MAX_MAP_MISMATCH_DB, 2)
                m["margin_clean_db"] = round(MAX_MAP_MISMATCH_DB - m["clean_max"], 2)
            located = [c["verify"].get("localization", {}) for c in bad]
            row["localization_first_is_flipped_bn"] = sum(
                loc.get("node") in {f for f, _ in c["bn_predicted_corrupt"]} for loc, c in zip(located, bad, strict=True))
            row["localization_seconds"] = [loc.get("seconds") for loc in located]
            res[f"{name}/{precision}"] = row
    return res


def one_bn(out: dict, work: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("repro", REPO / "docs" / "upstream" / "qnn_bn_bias_overflow.py")
    r = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(r)
    r.one_bn_model([0.8, -0.5, 0.1, 0.2], work / "bn.onnx")
    calib = np.random.default_rng(r.CALIBRATION_SEED).standard_normal((8, 4, 8, 8)).astype(np.float32)
    x = np.random.default_rng(1000).standard_normal((4, 4, 8, 8)).astype(np.float32)
    fold_stage(work / "bn.onnx", work / "bn.fold.onnx")
    res = {}
    for form, src in (("faithful", "bn.onnx"), ("guarded", "bn.onnx"), ("folded", "bn.fold.onnx")):
        r.quantize_w8a8(work / src, work / f"bn.{form}.qdq.onnx", calib)
        if form == "guarded":
            m = onnx.load(str(work / f"bn.{form}.qdq.onnx"))
            protect(m)
            onnx.save(m, str(work / f"bn.{form}.qdq.onnx"))
        s = htp_session(work / f"bn.{form}.qdq.onnx", HtpTarget())
        htp = np.concatenate([s.run(None, {"x": x[i : i + 1]})[0] for i in range(4)])
        cpu = run_cpu(work / f"bn.{form}.qdq.onnx", x)
        fp = run_cpu(work / "bn.onnx", x)
        e = compare_outputs(cpu, htp, classify=False)
        res[form] = {"htp_vs_cpu_cosine_min": round(e["cosine_min"], 4), "htp_vs_cpu_db": e["sqnr_db"],
                     "htp_vs_fp32_db": compare_outputs(fp, htp, classify=False)["sqnr_db"],
                     "cpu_qdq_vs_fp32_db": compare_outputs(fp, cpu, classify=False)["sqnr_db"]}
    out["one_bn"] = res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--variants", default="xs,l1")
    ap.add_argument("--counts", default="8,16,32,64")
    ap.add_argument("--forms", default=",".join(FORMS), help="graph forms to (re)measure")
    ap.add_argument("--update", action="store_true",
                    help="re-measure only --forms (and not the one-BN model) in the existing OUT, keeping the rest")
    args = ap.parse_args()
    forms = tuple(args.forms.split(","))
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "heldout_images": HELDOUT,
                 "weights": "model.realistic_init(seed=0)"}
    if args.update:
        out = json.loads(args.out.read_text())
        out.setdefault("updated", []).append({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "forms": list(forms)})

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.update:
            one_bn(out, work)
            save()
        for name in args.variants.split(","):
            (work / name).mkdir()
            variant_matrix(name, [int(c) for c in args.counts.split(",")], work / name, out, save, forms)
            out["summary"] = summary(out)
            save()


if __name__ == "__main__":
    main()
