"""The QNN HTP backend through onnxruntime-qnn: compile to a context binary, run, profile.

Imports only the standard library, numpy, onnxruntime(-qnn), protobuf and pydantic (not
onnx: see `ep_context`), so a toolchain environment holding another onnxruntime-qnn release
can run it as a worker (`swiftformer_qnn.toolchains`). onnxruntime-qnn bundles the QNN SDK's x86 host libraries:
the offline HTP graph compiler and an HTP emulator that runs graphs bit-faithfully but
slowly, so nothing here measures device latency.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import HtpUnsupportedError, ToolchainError, UsageError

EP_NAME = "QNNExecutionProvider"
PROFILE_CSV = "qnn_profile.csv"  # where a run on the HTP emulator writes QNN's detailed profile
_registered = False


def qnn_sdk_version() -> str:
    """The QNN SDK bundled with the installed onnxruntime-qnn wheel (e.g. "2.51.0")."""
    from onnxruntime_qnn import build_and_package_info

    return str(build_and_package_info.qnn_version)


def onnxruntime_qnn_version() -> str:
    from importlib.metadata import version

    return version("onnxruntime-qnn")


def _qnn_device():
    """Register the plugin EP once per process and return its HTP device."""
    global _registered
    import onnxruntime as ort
    import onnxruntime_qnn

    if not _registered:
        try:
            with _captured_native_stderr() as chatter:  # the QNN libraries greet stderr on load
                ort.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
            chatter.read()
        except Exception as exc:  # already registered by someone else in this process
            if "already" not in str(exc).lower():
                raise ToolchainError(
                    f"onnxruntime {ort.__version__} could not load onnxruntime-qnn {onnxruntime_qnn_version()}: {exc}",
                    hint="Reinstall a matching pair (see `swiftformer-qnn toolchains list`).",
                ) from None
        _registered = True
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        raise ToolchainError("onnxruntime-qnn is installed but offers no QNN device.")
    return devices[0]


@dataclass(frozen=True)
class HtpTarget:
    soc_model: int = 43  # SM8550, Snapdragon 8 Gen 2
    htp_arch: int = 73
    fp16: bool = False  # run a float graph in the HTP's fp16 mode
    # QNN's graph finalization optimization level (EP option htp_graph_finalization_optimization_mode;
    # QNN's default is 2). 3 lets the HTP graph compiler search schedules longer: QNN's estimator
    # (SA8255P proxy, QNN 2.51, w8a8 224) puts XS at 454 us instead of 514, L1 at 600 instead of
    # 656, L3 at 1011 instead of 1042; on QNN 2.48-2.50 L1 at 850-911k cycles instead of
    # 907-986k (issue 22, profiles/reports/estimate-breakdown/). It costs ~0.5 s of compile.
    graph_optimization_mode: int = 3

    def provider_options(self) -> dict[str, str]:
        import onnxruntime_qnn

        opts = {
            "backend_path": onnxruntime_qnn.get_qnn_htp_path(),
            "soc_model": str(self.soc_model),
            "htp_arch": str(self.htp_arch),
            "htp_graph_finalization_optimization_mode": str(self.graph_optimization_mode),
        }
        if self.fp16:
            opts["enable_htp_fp16_precision"] = "1"
        return opts


def htp_session(
    model_path: Path,
    target: HtpTarget,
    *,
    context_out: Path | None = None,
    profile_csv: Path | None = None,
    profiling_level: str = "detailed",
    op_trace: bool = False,
    op_trace_dir: Path | None = None,
):
    """An InferenceSession on the HTP with CPU fallback disabled.

    With `context_out`, creating the session compiles the graph and writes an EP-context
    ONNX there plus its `<stem>_qnn.bin` context binary. With `profile_csv`, each run appends
    QNN's detailed profile (HTP cycles per op) to that CSV. With `op_trace`, creating the
    session writes `qnn_op_trace.json` (which ONNX nodes each HTP op came from) into
    `op_trace_dir`, by default next to the context or the CSV; the CSV then names each op's
    ONNX nodes. `profiling_level="optrace"` (with `profile_csv`) also writes QNN's binary log
    `<csv stem>_qnn.log`, which holds the performance estimator's trace for SoCs that have one
    (`htp.estimate`). An EP-context model is not recompiled, so its profile is annotated only if
    the trace written when it was compiled lies next to it.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    # Every node runs on the HTP (CPU fallback disabled below): onnxruntime's own thread pool
    # would get no work, and its threads pin themselves to cores of their choosing, whatever
    # cores the process was given (`htp.emulate.core_shares`).
    so.intra_op_num_threads = 1
    opts = target.provider_options()
    if profile_csv is not None:
        opts["profiling_level"] = profiling_level
        opts["profiling_file_path"] = str(profile_csv)
    if op_trace:
        anchor = context_out or profile_csv
        if op_trace_dir is None and anchor is None:
            raise ValueError("op_trace needs op_trace_dir, context_out or profile_csv to know where to write")
        opts["enable_framework_op_trace"] = "1"
        # Without a directory QNN writes into the current directory, where concurrent
        # sessions would overwrite each other's trace.
        opts["framework_op_trace_dir"] = str(op_trace_dir or Path(anchor).parent)
    so.add_provider_for_devices([_qnn_device()], opts)
    # Any node the HTP cannot take fails the session instead of silently running on the CPU.
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if context_out is not None:
        so.add_session_config_entry("ep.context_enable", "1")
        so.add_session_config_entry("ep.context_file_path", str(context_out))
        so.add_session_config_entry("ep.context_embed_mode", "0")
    with _captured_native_stderr() as log:
        try:
            return ort.InferenceSession(str(model_path), so)
        except Exception as exc:
            failure = exc
    raise _explain_session_failure(failure, model_path, log.read()) from None


class _captured_native_stderr:
    """Capture what the native libraries write to fds 1 and 2 while a session is created.

    The QNN EP names the nodes it rejects only in onnxruntime's log ("Unsupported nodes in
    QNN EP: { name: ..., type: ... }"), not in the exception, so this is how the error can
    name them. It also keeps the QNN libraries' start-up chatter (printed on stdout) out of
    the user's terminal and out of any output piped from this tool.

    The descriptors are the process's: sessions created from several threads at once (the
    pipeline's stages run in threads of one process) take turns, or one
    would save the other's redirection as "the terminal" and restore stdout to a closed file.
    """

    _turn = threading.RLock()

    def __enter__(self):
        import sys
        import tempfile

        self._turn.acquire()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            self._file = tempfile.TemporaryFile(mode="w+b")
            self._saved = {fd: os.dup(fd) for fd in (1, 2)}
            for fd in (1, 2):
                os.dup2(self._file.fileno(), fd)
        except BaseException:
            self._turn.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            for fd, saved in self._saved.items():
                os.dup2(saved, fd)
                os.close(saved)
        finally:
            self._turn.release()

    def read(self) -> str:
        self._file.seek(0)
        text = self._file.read().decode(errors="replace")
        self._file.close()
        return text


_REJECTED = re.compile(r"\{\s*name:\s*([^,}]+?),\s*type:\s*([^\s}]+)\s*\}")


def unsupported_nodes(log_text: str) -> list[tuple[str, str]]:
    """(node name, op type) pairs the QNN EP listed as unsupported, in order, without repeats."""
    seen: dict[tuple[str, str], None] = {}
    for line in log_text.splitlines():
        if "Unsupported nodes" in line:
            for m in _REJECTED.finditer(line):
                seen[(m.group(1).strip(), m.group(2).strip())] = None
    return list(seen)


def module_of(node_name: str) -> str:
    """`/stage2/block9_swiftformer_encoder/mlp/act/Erf` -> `stage2.block9_swiftformer_encoder.mlp.act`."""
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1]) if len(parts) > 1 else node_name


_FIXES = {
    "Erf": "nn.GELU exported below opset 20 becomes Erf; export with --opset 20 (native Gelu)",
}


def _explain_session_failure(exc: Exception, model_path: Path, log_text: str) -> Exception:
    """Turn onnxruntime's session error into an error that names the rejected ops and modules."""
    text = str(exc)
    nodes = unsupported_nodes(log_text)
    if nodes or "fallback to CPU EP has been explicitly disabled" in text:
        shown = ", ".join(f"{op} at {module_of(name)}" for name, op in nodes[:6]) or "(ORT did not name them)"
        more = f" and {len(nodes) - 6} more" if len(nodes) > 6 else ""
        fixes = sorted({_FIXES[op] for _, op in nodes if op in _FIXES})
        return HtpUnsupportedError(
            f"The QNN HTP rejects {len(nodes) or 'some'} node(s) of {model_path.name}: {shown}{more}.",
            hint=("Fix: " + "; ".join(fixes) + ".") if fixes else
            "Replace those ops in the model (nothing may fall back to the CPU).",
        )
    too_new = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", text)
    if too_new:  # a model saved by a newer onnx package: the user's file, not the toolchain
        ir, most = too_new.groups()
        return UsageError(f"The model is ONNX IR version {ir}; this onnxruntime reads up to IR version {most}.",
                          hint=f"Save it with IR version {most} or lower: export it with an older onnx package, or "
                               f"set model.ir_version = {most} and save it again if its opsets are that old too.")
    first = text.strip().splitlines()[0][:400] if text.strip() else type(exc).__name__
    return ToolchainError(f"onnxruntime-qnn could not create an HTP session for {model_path.name}: {first}")
