"""AI Hub's profile as users save it: the dict `InferenceJob.download_profile()` returns
(`json.dump(job.download_profile(), f)`, or this tool's `*.raw.json`).

The file holds no device, QAIRT version or job id: the device comes from `--device` (required),
the version from `--qnn` where given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...core.errors import ProfileError, UsageError, json_problem
from ...measure.schema import Profile, Provenance, TargetInfo, ToolchainInfo
from ..aihub_payload import onnx_sources, profile_from_hub
from . import ImportContext

NAME = "aihub-download-profile-json"

_SNIFF_BYTES = 1 << 16


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except RecursionError:
        raise ProfileError(f"{path}: not AI Hub's profile JSON (nested too deeply).") from None
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError, a 5000-digit number
        raise ProfileError(f"{path}: not a JSON file ({json_problem(exc)}).") from None


def sniff(path: Path) -> bool:
    """A JSON object with AI Hub's `execution_summary` near its start."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return False
    return head.lstrip()[:1] == b"{" and b'"execution_summary"' in head


def load(path: Path, ctx: ImportContext) -> Profile:
    from ...core.versions import parse_qnn_version
    from ..devices import Backend, resolve_device
    from ..emulator import onnx_node_tensors

    payload = _read(path)
    if not isinstance(payload, dict) or not isinstance(payload.get("execution_summary"), dict):
        raise ProfileError(f"{path}: no execution_summary object: not AI Hub's download_profile() JSON.")
    if not isinstance(payload.get("execution_detail", []), list):
        raise ProfileError(f"{path}: execution_detail is not a list of layers.")
    if not ctx.device:
        raise UsageError(
            f"{path} does not say which device it was measured on.",
            hint='Pass --device with the AI Hub device name the job ran on, e.g. --device "Samsung Galaxy S23 Ultra".',
        )
    device = resolve_device(ctx.device)
    if device.backend is not Backend.AIHUB or not device.name:
        raise UsageError(f"--device {ctx.device!r} is no AI Hub device name; {path} is an AI Hub profile.",
                         hint='Pass the device the job ran on, e.g. --device "Samsung Galaxy S23 Ultra".')
    given = ctx.given_qnn(hint="Give the version the job ran with, e.g. --qnn 2.42 (see the job page on AI Hub).")
    qnn = parse_qnn_version(given).short if given else None
    try:
        return profile_from_hub(
            payload,
            model=ctx.model,
            target=TargetInfo(device=device.name),
            toolchain=ToolchainInfo(qnn_version=qnn, qairt_version=qnn),
            provenance=Provenance(
                tool=f"swiftformer-qnn profile import ({NAME})",
                note=f"imported from {path.name}; device and QAIRT version as given on the command line"
                + ("" if qnn else " (no --qnn: version unknown)"),
            ),
            sources=onnx_sources(ctx.model_path),
            graph=onnx_node_tensors(ctx.model_path),
        )
    except (KeyError, TypeError, ValueError) as exc:  # a field of the wrong shape (pydantic's errors are ValueErrors)
        raise ProfileError(f"{path}: not a valid AI Hub profile ({type(exc).__name__}: {str(exc).splitlines()[0]}).") from None
