"""The latency gate's figures: simulated false-failure and detection rates, and its wall time.

- rates: `swiftformer_qnn.gate.sim.simulate` on the scenarios of docs/ci.md (seed 0, 1000
  pairs each unless --pairs), with the default rules;
- wall time of `gate_paths` (load, validate, compare) on two 100-run L1 profiles with 27
  blocks, median of 30 in process, and of `swiftformer-qnn gate` as a fresh process.

Usage: python tests/bench/bench_gate.py [OUT.json] [--pairs N] [--quick]
(--quick keeps the one-profile scenarios only: seconds instead of minutes.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from swiftformer_qnn.gate import GateRules
from swiftformer_qnn.gate.sim import SCENARIOS, simulate, time_gate_on_files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()

    rules = GateRules()
    rates = []
    for sc in SCENARIOS:
        if args.quick and sc.profiles > 1:
            continue
        r = simulate(sc, pairs=args.pairs, seed=args.seed, rules=rules)
        rates.append({
            "scenario": sc.name, "pairs": r.pairs, "seed": r.seed,
            "gate_failed": r.failed, "gate_failed_rate": round(r.fail_rate, 4),
            "model_regressed_rate": round(r.model_regressed / r.pairs, 4),
            "slow_blocks_caught_rate": round(r.slow_blocks_caught / r.pairs, 4) if sc.slow_blocks else None,
            "wall_s": round(r.wall_s, 2),
        })

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        in_process = time_gate_on_files(100, directory=tmp, repeats=30)
        cli = []
        for _ in range(3):
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", "from swiftformer_qnn.cli import main; main()", "gate",
                 "--baseline", str(tmp / "baseline"), "--candidate", str(tmp / "candidate"),
                 "--report-dir", str(tmp / "report")],
                # A CI runner's $GITHUB_STEP_SUMMARY must not receive benchmark reports.
                capture_output=True, text=True,
                env={k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"},
            )
            cli.append(time.perf_counter() - started)
            if proc.returncode not in (0, 1):
                raise SystemExit(proc.stderr)

    figures = {
        "rules": rules.model_dump(exclude={"blocks", "structure"}),
        "noise_model": "lognormal sigma 3% per run and per block value; synthetic L1, 27 blocks, 1500 us",
        "rates": rates,
        "gate_wall_time_two_100_run_profiles": {
            "in_process_ms_median_of_30": round(in_process["median_s"] * 1e3, 2),
            "in_process_ms_min": round(in_process["min_s"] * 1e3, 2),
            "cli_fresh_process_s_median_of_3": round(statistics.median(cli), 3),
        },
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
