"""Worker process run inside a QNN toolchain environment: `python -m swiftformer_qnn.htp.worker`.

    probe   --result R.json                  what this environment imports; loads the HTP backend
    compile --request Q.json --result R.json  compile a QDQ model to a context binary (`compile.compile_model`,
                                              which writes `compile.json`), and optionally run it
                                              once on the HTP emulator, in the same session;
                                              `--request -`: import first, then read the job on
                                              stdin (a worker started ahead, `compile_in_worker`)
    estimate --request Q.json --result R.json compile for the performance estimator's proxy SoC and
                                              read the estimate (`htp.estimate`, writes estimate.json);
                                              `--request -`: started ahead, as compile's
    emulate --request - --result R.json       import, then read the job on stdin: run a context
                                              binary on the HTP emulator over some samples
                                              (`htp.emulate`, which runs one worker per core)

Imports only the standard library, numpy and `swiftformer_qnn.htp.session` / `.record` /
`.compile` / `.workers` / `.ep_context` / `.estimate` and `swiftformer_qnn.core.errors` / `.atomic` / `.targets` / `.interrupt` / `.teardown`
(which keep to onnxruntime, protobuf and pydantic; onnx only for the probe's one-op model): a toolchain environment holds nothing else,
and every import is paid once per QNN version of a sweep. Results go to a JSON file,
not stdout, because the QNN libraries print their own progress there. Exit codes: 0 done,
1 compiled but the emulator run failed (`emulator_error` in the result; the compile stands),
3 a known error (e.g. the HTP rejects an op), 4 an unexpected one; all still write the result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.atomic import write_text_atomic  # standard library only

if TYPE_CHECKING:
    from .record import CompileJob, EmulateJob

_PACKAGES = ("onnxruntime", "onnxruntime-qnn", "numpy", "onnx", "pydantic")


def environment() -> dict:
    import onnxruntime

    from .session import qnn_sdk_version

    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "qnn_version": qnn_sdk_version(),
        "packages": packages,
        "python": ".".join(map(str, sys.version_info[:3])),
        "prefix": sys.prefix,
        "onnxruntime_file": onnxruntime.__file__,
        "torch_installed": find_spec("torch") is not None,
    }


def probe() -> dict:
    """What this environment imports, after proving the HTP backend compiles and runs a graph.

    Registering the plugin EP is not enough: onnxruntime 1.31.1 registers onnxruntime-qnn
    2.3.0 and lists its device, and only refuses it when a session is created.
    """
    env = environment()
    env["smoke_s"] = round(_smoke_session(), 3)
    return {"status": "ok", **env}


def _smoke_session() -> float:
    """Compile and run `y = x + x` on the HTP (fp16 mode, no CPU fallback); return its wall time."""
    import tempfile

    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from ..core.errors import ToolchainError
    from .session import HtpTarget, htp_session

    started = time.perf_counter()
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"], name="smoke_add")],
        "smoke",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # loadable by every onnxruntime a toolchain pairs
    with tempfile.TemporaryDirectory(prefix="qnn-smoke-") as tmp:
        path = Path(tmp) / "smoke.onnx"
        onnx.save(model, str(path))
        x = np.arange(8, dtype=np.float32).reshape(1, 8)
        try:
            session = htp_session(path, HtpTarget(fp16=True))
        except ToolchainError as exc:
            import onnxruntime

            from .session import onnxruntime_qnn_version

            # A refused plugin leaves only the CPU EP, which the disabled fallback then rejects.
            raise ToolchainError(
                f"onnxruntime {onnxruntime.__version__} could not load onnxruntime-qnn "
                f"{onnxruntime_qnn_version()}: the QNN EP could not run a one-op graph ({exc.message})"
            ) from None
        (y,) = session.run(None, {"x": x})
        del session
    if not np.allclose(y, 2 * x):
        raise ToolchainError(f"The HTP computed {y.ravel().tolist()} for x + x; expected {(2 * x).ravel().tolist()}.")
    return time.perf_counter() - started


def compile_request(job: CompileJob) -> dict:
    """Compile `job.spec` once (op trace included) into its `out_dir`, which then holds the
    context binary and its `compile.json`; with `inputs_npz`, the session that compiled also runs
    the graph once on the HTP emulator, whose outputs go to `htp_outputs.npz`.

    One process, one session per version: no second compile, no second load of the binary,
    no profile (the op trace written at compile already names every HTP op).
    `phases_s` says where the worker's wall time went, `phases_cpu_s` the CPU time of its compile
    and emulator run (every thread of the process)."""
    started = time.perf_counter()
    import numpy as np

    from .compile import compile_model
    from .record import COMPILE_RECORD, HTP_OUTPUTS

    phases = {"imports": time.perf_counter() - started}
    out = job.spec.out_dir
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # older onnxruntime-qnn releases write the op trace into the working directory
    result: dict = {"status": "ok", "record": COMPILE_RECORD}
    feeds = None
    if job.inputs_npz is not None:
        with np.load(job.inputs_npz) as data:
            feeds = {k: data[k] for k in data.files}

    cpu: dict[str, float] = {}  # CPU seconds of the process (every thread) per phase: the sweep's floor

    def run_once(session) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            names = [o.name for o in session.get_outputs()]
            outputs = session.run(None, feeds)
            np.savez(out / HTP_OUTPUTS, **dict(zip(names, outputs, strict=True)))
        except Exception as exc:  # the compile is written and good: only the check failed
            (out / HTP_OUTPUTS).unlink(missing_ok=True)
            result["emulator_error"] = f"{type(exc).__name__}: {_first_line(exc)}"
        else:
            result["htp_outputs"] = HTP_OUTPUTS
        phases["emulator_run"] = time.perf_counter() - t0
        cpu["emulator_run"] = time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    compile_model(job.spec, then=run_once if feeds is not None else None)
    phases["compile"] = time.perf_counter() - t0 - phases.get("emulator_run", 0.0)
    cpu["compile"] = time.process_time() - c0 - cpu.get("emulator_run", 0.0)
    t0 = time.perf_counter()
    result["environment"] = environment()
    phases["environment"] = time.perf_counter() - t0
    result["phases_s"] = {k: round(v, 3) for k, v in phases.items()}
    result["phases_cpu_s"] = {k: round(v, 3) for k, v in cpu.items()}
    return result


def emulate_request(job: EmulateJob) -> dict:
    """Run `job.context_model` on the HTP emulator over the samples of `job.inputs_npz`, one
    session, one sample after another; their wanted outputs go to `job.outputs_npz`."""
    import numpy as np

    from .session import htp_session

    with np.load(job.inputs_npz) as data:
        samples = [data[str(i)] for i in range(len(data.files))]
    before = _threads()
    if job.cpus:  # before the session: the threads it starts take this thread's cores
        with contextlib.suppress(OSError):  # a core gone offline since the parent looked: only speed is lost
            os.sched_setaffinity(0, job.cpus)
    t0 = time.perf_counter()
    session = htp_session(job.context_model, job.target)
    phases = {"load": time.perf_counter() - t0}
    feed = session.get_inputs()[0].name  # the EP-context wrapper keeps the graph's input
    wanted = [session.get_outputs()[0].name, *job.extra_outputs]
    t0, c0 = time.perf_counter(), time.process_time()
    values = {}
    for i, sample in enumerate(samples):
        for k, value in enumerate(session.run(wanted, {feed: sample})):
            values[f"{i}/{k}"] = value
    phases["emulator_run"] = time.perf_counter() - t0
    cpu = {"emulator_run": time.process_time() - c0}
    # The cores the session's own threads (onnxruntime's, the emulator's) were allowed to run on.
    session_cpus = sorted(set().union(*(_thread_cpus(t) for t in _threads() - before)))
    del session
    np.savez(job.outputs_npz, **values)  # read only once the result says "ok", written after it
    return {"status": "ok", "samples": len(samples), "session_threads_cpus": session_cpus,
            "phases_s": {k: round(v, 3) for k, v in phases.items()},
            "phases_cpu_s": {k: round(v, 3) for k, v in cpu.items()}}


def _threads() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


def _thread_cpus(tid: int) -> set[int]:
    try:
        return os.sched_getaffinity(tid)
    except OSError:  # it ended meanwhile
        return set()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else ""


def _write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    entered = time.time()
    # A parent that started this process while it held Ctrl-C and SIGTERM (core.output_dir.
    # signals_held) passed its blocked mask on: a worker must still die of them, or one whose
    # parent was killed outright would run its whole job.
    import signal

    from ..core.interrupt import STOP_SIGNALS  # standard library only

    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOP_SIGNALS))
    parser = argparse.ArgumentParser(prog="python -m swiftformer_qnn.htp.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    p_probe = sub.add_parser("probe")
    p_probe.add_argument("--result", required=True, type=Path)
    p_compile = sub.add_parser("compile")
    p_compile.add_argument("--request", required=True, type=Path)
    p_compile.add_argument("--result", required=True, type=Path)
    p_estimate = sub.add_parser("estimate")  # htp.estimate: one compile for the estimator proxy, read back
    p_estimate.add_argument("--request", required=True, type=Path)  # `-`: started ahead, the job on stdin
    p_estimate.add_argument("--result", required=True, type=Path)
    p_emulate = sub.add_parser("emulate")  # htp.emulate: always started ahead, the job on stdin
    p_emulate.add_argument("--request", required=True, choices=["-"])
    p_emulate.add_argument("--result", required=True, type=Path)
    args = parser.parse_args(argv)
    result_path = args.result.absolute()

    from ..core.errors import SwiftFormerQnnError

    started = time.perf_counter()
    try:
        if args.command == "probe":
            result = probe()
        elif args.command == "estimate":
            from .estimate import EstimateJob, run_estimate

            if str(args.request) == "-":  # started ahead (an export's estimate stage): imports, then the job
                import onnxruntime  # noqa: F401

                from . import compile  # noqa: F401

                text = sys.stdin.read()
                if not text:  # the parent ended without an estimate for this worker
                    return 0
            else:
                text = args.request.read_text()
            run_estimate(EstimateJob.model_validate_json(text))
            result = {"status": "ok", "environment": environment()}
        elif args.command == "emulate":
            import numpy  # noqa: F401  (the imports while the parent prepares the job)

            from .record import EmulateJob
            from .session import htp_session  # noqa: F401

            text = sys.stdin.read()
            if not text:  # the parent ended without a job for this worker
                return 0
            emulate_job = EmulateJob.model_validate_json(text)
            result = emulate_request(emulate_job)
            if emulate_job.spawned_at is not None:
                result["phases_s"] = {"startup": round(entered - emulate_job.spawned_at, 3), **result["phases_s"]}
        else:
            from .record import CompileJob

            if str(args.request) == "-":  # started ahead: the compile's imports now, then wait for the job
                import numpy  # noqa: F401
                import onnxruntime  # noqa: F401

                from . import compile  # noqa: F401

                text = sys.stdin.read()
                if not text:  # the parent ended without a compile for this worker
                    return 0
            else:
                text = args.request.read_text()
            request = CompileJob.model_validate_json(text)
            result = compile_request(request)
            if request.spawned_at is not None:  # interpreter start-up, as the parent's clock saw it
                result["phases_s"] = {"startup": round(entered - request.spawned_at, 3), **result["phases_s"]}
        code = 1 if "emulator_error" in result else 0
    except SwiftFormerQnnError as exc:
        result, code = {"status": "failed", "error_type": type(exc).__name__, "message": exc.one_line()}, 3
    except Exception as exc:  # reported per version by the parent, which keeps the others going
        result, code = {"status": "failed", "error_type": type(exc).__name__, "message": _first_line(exc)}, 4
    result["worker_s"] = round(time.perf_counter() - started, 3)
    result["cpu_s"] = round(time.process_time(), 3)  # the whole process's CPU time, start-up included
    _write_json(result_path, result)
    from ..core.teardown import exit_without_teardown

    # The parent (a compile or estimate stage, verify, a sweep's version, a toolchain's probe)
    # waits for this process to end: not for the interpreter's and QNN's teardown too (~0.3 s;
    # 0.10 s under strace for one of a sweep's workers, five of which share two cores).
    # Everything is written; what QNN printed into the C library's buffer goes to the log first.
    exit_without_teardown(code)


if __name__ == "__main__":
    sys.exit(main())
