"""Time `swiftformer-qnn report` on 20 profiles: the 6 published reference rows plus 14
model-shaped per-op profiles (L1 with 225 ops and the encoder block, 7 QNN versions each).

Two figures: in-process `make_report` (load, build, 5 charts, md/json/html, atomic write;
median of 3 after one warm-up) and the CLI as a fresh process (adds interpreter and imports).

Usage: python tests/bench/bench_report.py [OUT.json]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))

from report_synthetic import model_shaped_profile  # noqa: E402

from swiftformer_qnn.report import make_report  # noqa: E402

VERSIONS = ("2.45.0", "2.46.0", "2.47.0", "2.48.0", "2.49.0", "2.50.0", "2.51.0")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = tmp / "in"
        for i, q in enumerate(VERSIONS):
            model_shaped_profile("l1", q, seed=i, scale=1 - 0.03 * i).save(inputs / f"l1_{q}.profile.json")
            model_shaped_profile("encoder", q, seed=50 + i).save(inputs / f"encoder_{q}.profile.json")
        paths = [REPO / "profiles" / "reference", inputs]
        n = len(list(inputs.glob("*.profile.json"))) + len(
            list((REPO / "profiles" / "reference").glob("*.profile.json"))
        )

        make_report(paths, out=tmp / "warmup")  # imports, font cache
        runs = []
        for k in range(3):
            started = time.perf_counter()
            result = make_report(paths, out=tmp / f"r{k}")
            runs.append(time.perf_counter() - started)

        started = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from swiftformer_qnn.cli import main; main()",
                "report",
                *map(str, paths),
                "--out",
                str(tmp / "cli"),
            ],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        cli_s = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)

        figures = {
            "profiles": n,
            "ops_total": sum(
                len(p.ops) for p in (model_shaped_profile("l1"), model_shaped_profile("encoder"))
            )
            * len(VERSIONS),
            "charts": len(result.charts),
            "in_process_s_median_of_3": round(statistics.median(runs), 3),
            "in_process_s_runs": [round(r, 3) for r in runs],
            "cli_cold_process_s": round(cli_s, 3),
        }
    text = json.dumps(figures, indent=2)
    print(text)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text + "\n")


if __name__ == "__main__":
    main()
