"""Mixed precision measured for the closing note: per-unit sensitivity on the HTP emulator, the
Pareto curve, the default target's choice, Lite-MP at the same budget, and the wall time of the
search (sensitivity + choice), for one variant with realistic weights.

Usage: python tests/bench/mixed_precision.py VARIANT OUT.json [--samples 2] [--resolution R]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from swiftformer_qnn.core.targets import get_soc
from swiftformer_qnn.htp.session import HtpTarget
from swiftformer_qnn.model.variants import get_variant
from swiftformer_qnn.pipeline import ExportRequest, Until, run_export
from swiftformer_qnn.pipeline.mixed import make_bench, measure_sensitivity, search
from swiftformer_qnn.pipeline.mixed_search import Target


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variant")
    ap.add_argument("out", type=Path)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--weights", type=Path, default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = run_export(ExportRequest(variant=a.variant, resolution=a.resolution, weights=a.weights,
                                          until=Until.QUANTIZE, output_dir=Path(tmp) / "x"))
        d = export.directory
        block = a.variant == "encoder"
        variant = get_variant(a.variant, encoder_hw=a.resolution if block else None)
        soc = get_soc("sm8550")
        started = time.perf_counter()
        bench, unplaced = make_bench(
            d / ("model.fold.onnx" if (d / "model.fold.onnx").is_file() else "model.sim.onnx"),
            np.load(d / "calibration.npy"), np.load(d / "heldout.npy"), np.load(d / "heldout_fp32.npy"),
            variant=variant, target=HtpTarget(soc.soc_model, soc.htp_arch), soc=soc.name,
            work=Path(tmp) / "work", ranges=Path(tmp) / "ranges.json", samples=a.samples)
        log = lambda m: print(f"[{time.perf_counter() - started:7.1f} s] {m}", flush=True)  # noqa: E731
        sensitivity = measure_sensitivity(bench, unplaced, progress=log)
        sensitivity_s = time.perf_counter() - started
        a.out.write_text(json.dumps({"variant": a.variant, "sensitivity": sensitivity.model_dump()}, indent=1))
        result = search(bench, sensitivity, Target(), progress=log)
        total = time.perf_counter() - started
    a.out.write_text(json.dumps({
        "variant": a.variant, "resolution": a.resolution, "samples": a.samples, "weights": str(a.weights),
        "wall_s": {"sensitivity": round(sensitivity_s, 1), "search_total": round(total, 1)},
        "sensitivity": sensitivity.model_dump(), "search": result.model_dump(mode="json")}, indent=1))
    print(f"done in {total:.1f} s -> {a.out}")


if __name__ == "__main__":
    main()
