"""A context binary on the HTP emulator over many samples, in worker processes: one per core.

Sessions of one process run their inferences one after another, whatever thread calls them,
and one emulated inference keeps more than one thread busy. Measured on L1 224 w8a8, 4 samples,
2 cores: two sessions in two threads of one process 7.07-7.14 s, one session 7.01-7.15 s, two
worker processes with two samples each 4.5-4.9 s including their start (one inference: 1.74 s
wall and 3.45 CPU-s in a process of its own, 2.09 s and 2.09 CPU-s pinned to one core). A worker
is also what a signal can stop: the emulator holds the GIL while it runs.

Workers that share the cores each run on cores of their own (`core_shares`). The emulator's
threads wait for each other in `sched_yield` loops (a third of one inference's CPU samples in
perf, L1 224 w8a8), and unpinned they yield into the other worker's core. Measured on a machine
slower than the one above (one inference alone: 3.0 s wall and 5.7 CPU-s unpinned, 3.6 s and 3.5
CPU-s pinned): two workers ran their two samples each in 7.0-7.2 s pinned against 7.8-8.6 s
unpinned, and the cold L1 export's verify took 5.39-5.64 s against 5.97-6.75 s (3 interleaved
pairs). A single worker keeps every core. The mixed search's candidates use the same workers;
their gain there was not measured apart.

What is left of a pinned inference is the emulator's own arithmetic. On the machine of
2026-12-07 one L1 224 w8a8 inference on one core took 1.9-2.4 s and as many CPU-s (6 timed, 13
threads), and perf over three found 79% of the samples in libQnnHtp.so, 17% in the C library's
`pow` and 1.5% in `sched_yield`. So verify's four inferences cost 7.6-9.6 CPU-s there, whatever
schedules them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..measure.agreement import cpu_workers
from .record import EmulateJob
from .session import HtpTarget
from .workers import WorkerProcess


def emulate_samples(context_model: Path, target: HtpTarget, samples: Sequence[np.ndarray], *,
                    extra_outputs: Sequence[str] = (), workers: int | None = None) -> list[list[np.ndarray]]:
    """Per sample (each one feed of the binary's input, as it takes it), the values of its first
    output and then of `extra_outputs` from `context_model` (an EP-context ONNX, its .bin beside
    it) on the HTP emulator. The samples are dealt out to `workers` processes (default: one per core,
    at most one per sample), each loading the binary once; a signal kills them all."""
    from ..core.interrupt import wait_child

    n = len(samples)
    if n == 0:
        return []
    count = max(1, min(workers or cpu_workers(n), n))
    shares = core_shares(sorted(os.sched_getaffinity(0)), count)
    started: list[WorkerProcess] = []
    try:
        for _ in range(count):  # every worker's imports run while the next is started and fed
            started.append(WorkerProcess("emulate"))
        for k, worker in enumerate(started):
            share = range(k, n, count)
            inputs = worker.dir / "inputs.npz"
            np.savez(inputs, **{str(j): samples[i] for j, i in enumerate(share)})
            worker.send(EmulateJob(context_model=Path(context_model).absolute(), target=target, inputs_npz=inputs,
                                   outputs_npz=worker.dir / "outputs.npz",
                                   extra_outputs=list(extra_outputs), cpus=shares[k] if shares else None,
                                   spawned_at=worker.spawned_at).model_dump_json())
        values: list[list[np.ndarray]] = [[] for _ in range(n)]
        for k, worker in enumerate(started):
            worker.outcome(wait_child(worker.proc), f"HTP emulator run of {Path(context_model).name}")
            with np.load(worker.dir / "outputs.npz") as data:
                for j, i in enumerate(range(k, n, count)):
                    values[i] = [data[f"{j}/{m}"] for m in range(1 + len(extra_outputs))]
        return values
    finally:
        for worker in started:
            worker.close()


def core_shares(cores: Sequence[int], workers: int) -> list[list[int]] | None:
    """The cores each of `workers` emulator workers runs on: `cores` dealt out in turn, so that
    no two share one; None (every core for each) for a single worker, or for more workers than
    cores (pinned, some would share a core while another had one alone)."""
    if workers < 2 or workers > len(cores):
        return None
    return [list(cores[k::workers]) for k in range(workers)]
