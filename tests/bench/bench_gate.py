"""The latency gate's figures: simulated false-failure and detection rates, and its wall time.

- rates: `tests/gate_sim.py`'s `simulate` on the scenarios of docs/ci.md (seed 0, 1000
  pairs each unless --pairs), with the default rules;
- wall time of `gate_paths` (load, validate, compare) on two 100-run L1 profiles with 27
  blocks, median of 30 in process, and of `swiftformer-qnn gate latency` as a fresh process.

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

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from gate_sim import SCENARIOS, l1_block_times_us, simulate, synthetic_profile  # noqa: E402

from swiftformer_qnn.gate import GateRules, gate_paths  # noqa: E402


def time_gate_on_files(runs: int = 100, *, directory: Path, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """Wall time of `gate_paths` (load, validate, compare) on two `runs`-run L1 profiles on disk."""
    rng = np.random.default_rng(seed)
    blocks = l1_block_times_us()
    total = sum(blocks.values())
    for side, slow in (("baseline", 1.0), ("candidate", 1.02)):
        p = synthetic_profile(total * slow * rng.lognormal(0, 0.03, runs), {b: t * slow for b, t in blocks.items()})
        p.save(Path(directory) / side / f"{side}.profile.json")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        gate_paths([Path(directory) / "baseline"], [Path(directory) / "candidate"], GateRules())
        times.append(time.perf_counter() - t0)
    return {"min_s": min(times), "median_s": float(np.median(times)), "max_s": max(times)}


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
                 "latency", "--baseline", str(tmp / "baseline"), "--candidate", str(tmp / "candidate"),
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
