"""The calibration methods (`export --calibration-method`) measured on the compiled binary: for
each model and weight seed, the export's float graph is quantized with each method's ranges (the
quantize stage's own functions; the four methods' ranges from one pass of reductions and one of
histograms), compiled for the SM8550 HTP, and run by the x86 HTP emulator on the
held-out photographs (for the encoder block, the activations the same weights' L1 feeds it);
the outputs are compared with fp32 (SQNR; top-1 agreement for the classifiers), as verify does.

Run-to-run spread: weight seeds. Each seed is a realistic random initialisation
(`model.realistic_init(seed)`) saved as a native checkpoint and passed as --weights (the block
takes its weights, and its calibration activations, from the L1 checkpoint of that seed); the
calibration and held-out photographs are the shipped ones.

Usage: python tests/bench/calibration_methods.py OUT_DIR [--models xs,l1,encoder] [--seeds 0,1,2]
       [--precision w8a8] [--methods minmax,percentile,entropy,mse]
Writes OUT_DIR/calibration-methods-<precision>.json and .md (rows as they come, so a partial run
keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from swiftformer_qnn.core.targets import CalibrationMethod, Precision, get_soc
from swiftformer_qnn.htp.record import CONTEXT_ONNX, CompiledModel
from swiftformer_qnn.htp.session import HtpTarget, htp_session
from swiftformer_qnn.measure.agreement import compare_outputs, run_cpu
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
from swiftformer_qnn.pipeline.compile import guard_and_compile
from swiftformer_qnn.pipeline.quantize import calibrate, quantize_qdq

HOST = {"xs": "xs", "l1": "l1", "encoder": "l1"}  # whose checkpoint each model's weights come from


def checkpoint(variant: str, seed: int, folder: Path) -> Path:
    import torch

    from swiftformer_qnn.model.swiftformer import build_model, realistic_init
    from swiftformer_qnn.model.variants import get_variant

    path = folder / f"{variant}-realistic-seed{seed}.pth"
    if not path.is_file():
        torch.manual_seed(seed)
        model = build_model(get_variant(variant), "normalize")
        realistic_init(model, seed=seed)
        torch.save(model.state_dict(), path)
    return path


def prepare(model: str, seed: int, precision: str, weights: Path, work: Path, methods: list[str]):
    """The export up to its (minmax) quantize stage, then every method's ranges from shared passes."""
    export = run_export(ExportRequest(variant=model, weights=weights, attention="normalize", precision=precision,
                                      until=Until.QUANTIZE, output_dir=work / f"{model}-s{seed}", force=True))
    graph = export.artifact(*(("fold_bn", "model.fold.onnx") if export.manifest.stage("fold_bn")
                              else ("simplify", "model.sim.onnx")))
    started = time.perf_counter()
    ranges = {CalibrationMethod(m): work / f"{model}-s{seed}-{m}.ranges.json" for m in methods}
    calibrate(graph, np.load(export.artifact("inputs", "calibration.npy")), ranges, Precision(precision))
    return export, graph, ranges, time.perf_counter() - started


def measure(export, graph: Path, ranges: Path, model: str, seed: int, method: str, precision: str, work: Path) -> dict:
    started = time.perf_counter()
    qdq = work / f"{model}-s{seed}-{method}.qdq.onnx"
    quantize_qdq(graph, None, qdq, Precision(precision), ranges=ranges, calibration_method=CalibrationMethod(method))
    heldout = np.load(export.artifact("inputs", "heldout.npy"))
    fp32 = np.load(export.artifact("validate", "heldout_fp32.npy"))
    soc = get_soc("sm8550")
    target = HtpTarget(soc.soc_model, soc.htp_arch)
    compiled = work / f"{model}-s{seed}-{method}-compiled"
    record = guard_and_compile(qdq, compiled, target, soc=soc.name, subject=CompiledModel(variant=model, precision=precision))
    session = htp_session(compiled / CONTEXT_ONNX, target)
    name = session.get_inputs()[0].name
    htp = np.concatenate([session.run(None, {name: heldout[i: i + 1]})[0] for i in range(len(heldout))])
    del session
    cpu = run_cpu(qdq, heldout)
    classify = model != "encoder"
    h, c = compare_outputs(fp32, htp, classify=classify), compare_outputs(fp32, cpu, classify=classify)
    return {"model": model, "seed": seed, "method": method, "precision": precision, "heldout": int(len(heldout)),
            "htp_sqnr_db": round(h["sqnr_db"], 3), "htp_top1": h.get("top1_agreement"),
            "cpu_sqnr_db": round(c["sqnr_db"], 3), "cpu_top1": c.get("top1_agreement"),
            "htp_ops": record.htp_op_count, "wall_s": round(time.perf_counter() - started, 1)}


def summarise(rows: list[dict], methods: list[str]) -> dict:
    """Per model and method: mean SQNR / top-1 over seeds, their spread (max - min), and the mean
    paired gain over minmax (same seed). A method wins on a model when its gain exceeds minmax's own
    run-to-run spread there (and gains on every seed); it becomes the default only if it wins on every
    model. Also reported, not deciding: whether the gain beats the spread of the paired gains themselves."""
    out: dict = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        by = {m: {r["seed"]: r for r in rows if r["model"] == model and r["method"] == m} for m in methods}
        seeds = sorted(set.intersection(*(set(v) for v in by.values())))
        if not seeds:
            continue
        base = [by["minmax"][s]["htp_sqnr_db"] for s in seeds]
        spread = max(base) - min(base)
        out[model] = {"seeds": seeds, "minmax_spread_db": round(spread, 3), "methods": {}}
        for m in methods:
            sq = [by[m][s]["htp_sqnr_db"] for s in seeds]
            top1 = [by[m][s]["htp_top1"] for s in seeds if by[m][s]["htp_top1"] is not None]
            gains = [a - b for a, b in zip(sq, base, strict=True)]
            repeated = len(seeds) >= 2  # one seed has no spread to beat
            out[model]["methods"][m] = {
                "htp_sqnr_db_mean": round(statistics.fmean(sq), 3), "htp_sqnr_db_spread": round(max(sq) - min(sq), 3),
                "htp_top1_mean": round(statistics.fmean(top1), 4) if top1 else None,
                "htp_top1_spread": round(max(top1) - min(top1), 4) if top1 else None,
                "gain_over_minmax_db_mean": round(statistics.fmean(gains), 3),
                "gain_over_minmax_db_min": round(min(gains), 3),
                "gain_over_minmax_db_spread": round(max(gains) - min(gains), 3),
                "wins": repeated and m != "minmax" and statistics.fmean(gains) > spread and min(gains) > 0,
                # The paired reading: gains on every seed by more than the gains' own spread.
                "wins_paired": repeated and m != "minmax" and min(gains) > 0 and statistics.fmean(gains) > max(gains) - min(gains)}
    return out


def decide(summary: dict, methods: list[str]) -> dict:
    winners = [m for m in methods if m != "minmax" and summary and all(s["methods"][m]["wins"] for s in summary.values())]
    if not winners:
        return {"default": "minmax", "why": "no method gains more than minmax's run-to-run spread on every model"}
    best = max(winners, key=lambda m: min(s["methods"][m]["gain_over_minmax_db_mean"] for s in summary.values()))
    return {"default": best, "why": f"{best} gains more than minmax's run-to-run spread on every model"}


def markdown(data: dict) -> str:
    methods = data["methods"]
    lines = [f"# Calibration methods on the compiled binary ({data['precision']}, HTP emulator)", "",
             f"{data['what']}", "",
             "| model | method | HTP vs fp32 SQNR (dB), mean | spread | gain over minmax (dB), mean / worst seed / spread "
             "| top-1 agreement, mean | spread | CPU QDQ SQNR (dB), mean |",
             "|---|---|---|---|---|---|---|---|"]
    for model, s in data["summary"].items():
        for m in methods:
            f = s["methods"][m]
            cpu = statistics.fmean(r["cpu_sqnr_db"] for r in data["rows"] if r["model"] == model and r["method"] == m
                                   and r["seed"] in s["seeds"])
            top1 = "-" if f["htp_top1_mean"] is None else f"{f['htp_top1_mean']:.1%}"
            top1_spread = "-" if f["htp_top1_spread"] is None else f"{f['htp_top1_spread']:.1%}"
            gain = "-" if m == "minmax" else (f"{f['gain_over_minmax_db_mean']:+.2f} / {f['gain_over_minmax_db_min']:+.2f}"
                                              f" / {f['gain_over_minmax_db_spread']:.2f}")
            mark = " (wins)" if f["wins"] else " (wins paired)" if f["wins_paired"] else ""
            lines.append(f"| {model} | {m}{mark} | {f['htp_sqnr_db_mean']:.2f} "
                         f"| {f['htp_sqnr_db_spread']:.2f} | {gain} | {top1} | {top1_spread} | {cpu:.2f} |")
    d = data["decision"]
    seeds = ", ".join(f"{k} {v['seeds']}" for k, v in data["summary"].items())
    lines += ["", f"Seeds per model: {seeds}. "
              "Spread: max - min over the seeds. A method wins on a model when its mean gain over minmax (paired by "
              "seed) exceeds minmax's own SQNR spread there and it gains on every seed; the default changes only "
              "for a method that wins on every model. \"wins paired\": it gains on every seed by more than its "
              "gains' own spread (the seeds change the model, which moves every method together), reported, "
              "not deciding.", "",
              f"Default: **{d['default']}** ({d['why']}).", ""]
    return "\n".join(lines)


def write(rows: list[dict], methods: list[str], precision: str, json_path: Path, md_path: Path) -> None:
    summary = summarise(rows, methods)
    data = {"precision": precision, "methods": methods, "rows": rows, "summary": summary,
            "decision": decide(summary, methods),
            "what": "Weights: realistic random (model.realistic_init) per seed, as native checkpoints; 64 shipped "
                    "calibration photographs; the 16 shipped held-out photographs (the block: L1's activations of "
                    "them, 64x64), all on the HTP emulator (QNN's x86 HTP backend, SM8550 context binary), against "
                    "the fp32 ONNX."}
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    md_path.write_text(markdown(data))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--models", default="xs,encoder,l1")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", default=None, help="MODEL:SEED,... in this order, instead of every seed of every model")
    ap.add_argument("--append", action="store_true", help="keep the rows OUT_DIR's JSON already holds")
    ap.add_argument("--precision", default="w8a8")
    ap.add_argument("--methods", default=",".join(m.value for m in CalibrationMethod))
    a = ap.parse_args()
    methods = a.methods.split(",")
    a.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = a.out / f"calibration-methods-{a.precision}.json", a.out / f"calibration-methods-{a.precision}.md"
    rows: list[dict] = json.loads(json_path.read_text())["rows"] if a.append and json_path.is_file() else []
    if a.runs:
        runs = [(m, int(s)) for m, s in (r.split(":") for r in a.runs.split(","))]
    else:
        runs = [(m, s) for s in map(int, a.seeds.split(",")) for m in a.models.split(",")]
    done = {(r["model"], r["seed"], r["method"]) for r in rows}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="calib-bench-") as tmp:
        tmp = Path(tmp)
        for model, seed in runs:
            if all((model, seed, m) in done for m in methods):
                continue
            weights = checkpoint(HOST[model], seed, tmp)
            export, graph, ranges, took = prepare(model, seed, a.precision, weights, tmp / "work", methods)
            print(f"{model} seed {seed}: ranges of {len(methods)} methods in {took:.0f} s", flush=True)
            for m in methods:
                if (model, seed, m) in done:
                    continue
                rows.append(measure(export, graph, ranges[CalibrationMethod(m)], model, seed, m, a.precision,
                                    tmp / "work"))
                print(json.dumps(rows[-1]), flush=True)
                write(rows, methods, a.precision, json_path, md_path)
    write(rows, methods, a.precision, json_path, md_path)
    print(f"done in {time.perf_counter() - started:.0f} s -> {json_path}, {md_path}")


if __name__ == "__main__":
    main()
