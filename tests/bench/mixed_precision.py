"""Mixed precision measured for the closing note: which sensitivity predicts measured assignments
best, per-unit sensitivity on the HTP emulator, the search's choice, Lite-MP at the same budget,
and the wall time of the search, for one variant with realistic weights.

Usage: python tests/bench/mixed_precision.py VARIANT OUT.json [--samples 4] [--resolution R]
           [--weights W] [--one-at-a-time] [--random 4] [--search]

It measures uniform w8a8 and w8a16 (compiled, emulated, estimated), the chain's taps in four runs
(w8a8, w8a16, even units at 16 bits, odd units at 16 bits), optionally every unit alone at 8 bits
from w8a16 (`--one-at-a-time`), then a set of mixed assignments (each method's choice for the
default target and random ones) whose measured SQNR each method's prediction is compared with.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from swiftformer_qnn.core.targets import get_soc
from swiftformer_qnn.htp.session import HtpTarget
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
from swiftformer_qnn.pipeline.mixed import _noise, make_bench, measure_sensitivity, search
from swiftformer_qnn.pipeline.mixed_search import (
    Corrections,
    Ends,
    Target,
    UnitFigures,
    chain_crossings,
    chain_gains,
    choose,
    pareto_curve,
    predict,
    to_db,
)


def per_sample(fp32: np.ndarray, out: np.ndarray) -> list[float]:
    return [round(to_db(_noise(fp32[i:i + 1], out[i:i + 1])), 3) for i in range(fp32.shape[0])]


def prediction_errors(methods, measured, names, extra, ends, handovers) -> dict:
    """Each method's predicted SQNR against the measured one, over the measured mixed assignments."""
    errors = {}
    for label, gains in methods.items():
        units = [UnitFigures(u, gains[u], extra[u], handovers.get(label, {}).get(u, 0.0)) for u in names]
        rows, seen = [], set()
        for m in measured.values():
            if m["label"] in ("w8a8", "w8a16") or frozenset(m["sixteen"]) in seen:
                continue
            seen.add(frozenset(m["sixteen"]))
            p = predict(m["sixteen"], units, ends)
            rows.append({"assignment": m["label"], "predicted_db": round(p.sqnr_db, 3),
                         "measured_db": m["htp_sqnr_db"], "error_db": round(p.sqnr_db - m["htp_sqnr_db"], 3),
                         "predicted_cost_no_converts": round(p.cost, 1), "measured_cost": m["cost"],
                         "meetings": Corrections(crossings=chain_crossings(names)).meetings(set(m["sixteen"]))})
        err = [abs(r["error_db"]) for r in rows]
        errors[label] = {"mean_abs_db": round(float(np.mean(err)), 3), "max_abs_db": round(float(np.max(err)), 3),
                         "bias_db": round(float(np.mean([r["error_db"] for r in rows])), 3), "rows": rows}
        print(f"{label}: mean |error| {errors[label]['mean_abs_db']} dB, bias {errors[label]['bias_db']}", flush=True)
    return errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variant")
    ap.add_argument("out", type=Path)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--one-at-a-time", action="store_true", help="also each unit alone at 8 bits from w8a16")
    ap.add_argument("--earlier", type=Path, help="an earlier run's JSON with one-unit-at-a-time 8->16 gains")
    ap.add_argument("--random", type=int, default=4, help="random mixed assignments measured")
    ap.add_argument("--search", action="store_true", help="run the product's sensitivity and search instead")
    a = ap.parse_args()
    started = time.perf_counter()
    log = lambda m: print(f"[{time.perf_counter() - started:7.1f} s] {m}", flush=True)  # noqa: E731
    record: dict = {"variant": a.variant, "resolution": a.resolution, "samples": a.samples, "weights": str(a.weights)}

    def save():
        a.out.write_text(json.dumps(record, indent=1, default=str))

    with tempfile.TemporaryDirectory() as tmp:
        export = run_export(ExportRequest(variant=a.variant, resolution=a.resolution, weights=a.weights,
                                          until=Until.QUANTIZE, output_dir=Path(tmp) / "x"))
        d = export.directory
        block = a.variant == "encoder"
        variant = get_variant(a.variant, encoder_hw=a.resolution if block else None)
        soc = get_soc("sm8550")
        log("export done")
        t0 = time.perf_counter()
        bench, unplaced = make_bench(
            d / ("model.fold.onnx" if (d / "model.fold.onnx").is_file() else "model.sim.onnx"),
            np.load(d / "calibration.npy"), np.load(d / "heldout.npy"), np.load(d / "heldout_fp32.npy"),
            variant=variant, target=HtpTarget(soc.soc_model, soc.htp_arch), soc=soc.name,
            work=Path(tmp) / "work", ranges=Path(tmp) / "ranges.json", samples=a.samples)
        if a.search:
            s = measure_sensitivity(bench, unplaced, progress=log)
            record["sensitivity_s"] = round(time.perf_counter() - t0, 1)
            record["sensitivity"] = s.model_dump(mode="json")
            save()
            r = search(bench, s, Target(), progress=log)
            record["search_total_s"] = round(time.perf_counter() - t0, 1)
            record["search"] = r.model_dump(mode="json")
            save()
            log(f"done -> {a.out}")
            return
        names = [u.name for u in bench.units]
        everything = frozenset(names)
        measured: dict[str, dict] = {}
        prices = {}

        def run(label: str, sixteen: frozenset[str]) -> dict:
            f, htp, _cpu, priced = bench.measure(sixteen)
            prices[label] = priced
            m = {"label": label, **f.model_dump(mode="json"), "per_sample_db": per_sample(bench.fp32, htp)}
            measured[label] = m
            record["measured"] = list(measured.values())
            save()
            log(f"{label}: {f.htp_sqnr_db} dB, {f.cost:.0f} us, {f.converts} converts ({f.seconds} s)")
            return m

        w8a8, w8a16 = run("w8a8", frozenset()), run("w8a16", everything)
        ends = Ends(w8a8["htp_noise"], w8a16["htp_noise"], w8a8["cost"], w8a16["cost"])
        record["chain"] = bench.chain()
        taps = {}
        for label, sixteen in (("w8a8", frozenset()), ("w8a16", everything),
                               ("even16", frozenset(names[0::2])), ("odd16", frozenset(names[1::2]))):
            t = bench.tap_noise(sixteen, cost=label.endswith("16") and label != "w8a16")
            taps[label] = t
            log(f"taps {label}: output {to_db(t.htp[-1]):.2f} dB ({t.seconds} s)")
        record["taps"] = {k: {"sixteen": v.sixteen, "unit_sqnr_db": [round(to_db(n), 3) for n in v.htp],
                              "unit_noise": v.htp, "cpu_noise": v.cpu, "cost": v.cost, "seconds": v.seconds} for k, v in taps.items()}
        save()
        # Each unit's extra cost from the two ends' per-unit estimates, as the product does.
        extra = dict(zip(names, [0.0] * len(names), strict=True))
        cost8, cost16 = prices["w8a8"], prices["w8a16"]
        for u in names:
            extra[u] = cost16.per_unit.get(u, 0.0) - cost8.per_unit.get(u, 0.0)
        record["extra_cost"] = extra
        bits = {k: [u in set(taps[k].sixteen) for u in names] for k in taps}
        methods: dict[str, dict[str, float]] = {}
        rounding = [*taps["w8a8"].rounding, 0.0]
        record["rounding"] = rounding
        handovers = {}
        for label, runs, kept in (("taps, carry 1", [], None), ("taps, carry 1, handover", [], rounding),
                                  ("taps, carry from even16", ["even16"], None),
                                  ("taps, carry from even16, handover", ["even16"], rounding),
                                  ("taps, carry from even16+odd16", ["even16", "odd16"], None),
                                  ("taps, carry from even16+odd16, handover", ["even16", "odd16"], rounding)):
            g, h, carry = chain_gains(taps["w8a8"].htp, taps["w8a16"].htp,
                                      [(bits[k], taps[k].htp) for k in runs], kept)
            methods[label] = dict(zip(names, g, strict=True))
            handovers[label] = dict(zip(names, h, strict=True))
            record.setdefault("carry", {})[label] = dict(zip(names, carry, strict=True))
        record["handovers"] = handovers
        if a.earlier:  # an earlier run's one-unit-at-a-time gains (8 -> 16 from w8a8), for comparison
            old = json.loads(a.earlier.read_text())["sensitivity"]
            methods["8->16 alone, change power (earlier run)"] = {u["unit"]: u["htp_gain"] for u in old["units"]}
            methods["8->16 alone, noise difference (earlier run)"] = {
                u["unit"]: old["w8a8"]["htp_noise"] - 10 ** (-u["htp_sqnr_db"] / 10) for u in old["units"]}
        record["methods"] = methods
        save()
        # The assignments to predict: each method's choice for the default target, and random ones.
        rng = random.Random(23)
        todo: dict[str, frozenset[str]] = {}
        for label, gains in methods.items():
            units = [UnitFigures(u, gains[u], extra[u], handovers.get(label, {}).get(u, 0.0)) for u in names]
            try:
                p = choose(pareto_curve(units, ends), ends, Target())
            except Exception:  # noqa: BLE001 - a method that finds no point still gets its budget's best
                curve = pareto_curve(units, ends)
                budget = ends.cost8 + (ends.cost16 - ends.cost8) / 3
                p = max((q for q in curve if q.cost <= budget), key=lambda q: q.sqnr_db)
            todo.setdefault(f"choice of {label}", frozenset(p.sixteen))
        for i in range(a.random):
            todo[f"random {i}"] = frozenset(u for u in names if rng.random() < 0.35)
        seen = {}
        for label, sixteen in todo.items():
            if sixteen in seen:
                measured[label] = {**measured[seen[sixteen]], "label": label}
                continue
            seen[sixteen] = label
            run(label, sixteen)
        record["prediction_errors"] = prediction_errors(methods, measured, names, extra, ends, handovers)
        save()
        if a.one_at_a_time:
            signal = float(np.sum(bench.fp32.astype(np.float64) ** 2))
            _, htp16, _, _ = bench.measure(everything, cost=False)
            change, drop = {}, {}
            for k, u in enumerate(names, 1):
                f, htp, _, _ = bench.measure(everything - {u}, cost=False)
                change[u] = float(np.sum((htp16.astype(np.float64) - htp) ** 2)) / signal
                drop[u] = f.htp_noise - ends.noise16
                log(f"{u} alone at 8 bits ({k}/{len(names)}): {f.htp_sqnr_db} dB")
                record["one_at_a_time"] = {"change": change, "drop": drop}
                save()
            methods["16->8 alone, change power"] = change
            methods["16->8 alone, noise difference"] = drop
            record["methods"] = methods
            record["prediction_errors"] = prediction_errors(methods, measured, names, extra, ends, handovers)
            save()
        record["wall_s"] = round(time.perf_counter() - started, 1)
        save()
    log(f"done -> {a.out}")


if __name__ == "__main__":
    main()
