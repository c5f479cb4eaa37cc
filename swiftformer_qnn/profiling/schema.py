"""The profile schema every source writes and every renderer and gate reads.

A profile is one measurement of one compiled model on one target, from one source. Units
are in the field names (`_us`, `_bytes`); per-op times carry their unit explicitly because
the HTP emulator reports cycles, which are not device latency.
"""

from __future__ import annotations

import json
import math
import statistics
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._atomic import write_text_atomic
from ..errors import ProfileError

SCHEMA_VERSION = 1
PROFILE_KIND = "swiftformer-qnn.profile"


class LatencySource(str, Enum):
    """Where a number came from. Only device sources are latency."""

    AIHUB = "aihub"  # a real device, through Qualcomm AI Hub
    QNN_NET_RUN = "qnn-net-run"  # a phone attached over adb, qnn-net-run --profiling_level
    PUBLISHED = "published"  # imported from a published table (summary only)
    EMULATOR = "emulator"  # onnxruntime-qnn's x86 HTP emulator: structure only, NOT latency

    @property
    def is_device_latency(self) -> bool:
        return self is not LatencySource.EMULATOR


class TimeUnit(str, Enum):
    US = "us"
    CYCLES = "cycles"  # emulator cycles: comparable within one profile at best


class ComputeUnit(str, Enum):
    NPU = "NPU"
    GPU = "GPU"
    CPU = "CPU"


class _Strict(BaseModel):
    # No NaN or infinity anywhere in a profile: `Infinity` and 1e999 parse as JSON floats.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelInfo(_Strict):
    variant: str  # xs, s, l1, l3, encoder
    input_shape: list[int]
    precision: str  # w8a8, w8a16, fp16
    weights: str = "random"  # "random", "realistic-random" or "sha256:<hex>" of the checkpoint
    attention: str = "normalize"
    opset: int | None = None


class TargetInfo(_Strict):
    device: str  # e.g. "Samsung Galaxy S23 Ultra", or "HTP emulator (x86_64)" (devices.EMULATOR_DEVICE)
    chipset: str | None = None  # e.g. "qualcomm-snapdragon-8gen2"
    soc_model: int | None = None
    htp_arch: int | None = None
    os: str | None = None


class ToolchainInfo(_Strict):
    qnn_version: str | None = None  # "2.51.0", or "2.17" for published rows
    qairt_version: str | None = None
    runtime: str = "qnn_context_binary"
    onnxruntime_qnn: str | None = None


class LatencySummary(_Strict):
    """Whole-model inference time over `run_count` runs, microseconds."""

    min_us: float = Field(gt=0)
    median_us: float = Field(gt=0)
    max_us: float | None = Field(default=None, gt=0)
    runs_us: list[Annotated[float, Field(gt=0)]] = Field(default_factory=list)
    run_count: int = Field(ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> LatencySummary:
        if self.runs_us and len(self.runs_us) != self.run_count:
            raise ValueError(f"run_count={self.run_count} but {len(self.runs_us)} runs_us")
        if self.min_us > self.median_us:
            raise ValueError("min_us is larger than median_us")
        if self.runs_us:
            # report reads median_us, the gate reads runs_us: they must be one set of numbers.
            stats = {"min_us": min(self.runs_us), "median_us": statistics.median(self.runs_us),
                     "max_us": max(self.runs_us)}
            for name, want in stats.items():
                got = getattr(self, name)
                if got is not None and not math.isclose(got, want, rel_tol=1e-6):
                    raise ValueError(f"{name}={got:g} but runs_us give {want:g}")
        return self


class LoadInfo(_Strict):
    first_load_us: float | None = None
    warm_load_us: float | None = None
    peak_memory_bytes: int | None = None
    inference_peak_memory_bytes: int | None = None


class Attribution(_Strict):
    """Which model block an op belongs to.

    `block` ids: `stem`, `stage{i}.downsample`, `stage{i}.block{j}`, `head`, `encoder` (the
    standalone block), or `other` when nothing names it.
    """

    block: str
    kind: str | None = None  # conv_encoder | swiftformer_encoder | stem | downsample | head
    part: str | None = None  # local_representation | attention | mlp (inside a SwiftFormerEncoder)
    via: Literal["name", "op_trace", "none"] = "name"


class OpRecord(_Strict):
    name: str
    op_type: str
    compute_unit: ComputeUnit | None = None
    time: float | None = Field(default=None, ge=0)
    time_unit: TimeUnit
    onnx_nodes: list[str] = Field(default_factory=list)
    attribution: Attribution | None = None


class Provenance(_Strict):
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    job_ids: dict[str, str] = Field(default_factory=dict)  # {"compile": "j...", "profile": "j..."}
    urls: dict[str, str] = Field(default_factory=dict)
    tool: str | None = None  # "swiftformer-qnn 0.1.0"
    citation: str | None = None  # for published rows: where the number was published
    note: str | None = None


class Profile(_Strict):
    kind: Literal["swiftformer-qnn.profile"] = PROFILE_KIND
    schema_version: int = SCHEMA_VERSION
    source: LatencySource
    model: ModelInfo
    target: TargetInfo
    toolchain: ToolchainInfo
    latency: LatencySummary | None = None  # None where the source has no device latency
    load: LoadInfo | None = None
    ops: list[OpRecord] = Field(default_factory=list)
    provenance: Provenance = Field(default_factory=Provenance)

    @property
    def is_device_latency(self) -> bool:
        return self.source.is_device_latency

    @model_validator(mode="after")
    def _honest(self) -> Profile:
        if self.source is LatencySource.EMULATOR:
            if self.latency is not None:
                raise ValueError("an emulator profile cannot carry a latency summary (it is not device latency)")
            if any(op.time_unit is TimeUnit.US for op in self.ops):
                raise ValueError("emulator op times must be in cycles, not microseconds")
        elif self.latency is None:
            raise ValueError(f"a {self.source.value} profile needs a latency summary")
        return self

    def save(self, path: Path) -> Path:
        """Write atomically (a reader never sees half a profile)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, self.model_dump_json(indent=2) + "\n")


def load_profile(path: Path) -> Profile:
    """Read and validate one profile; any problem is a ProfileError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file.") from None
    except IsADirectoryError:
        raise ProfileError(f"{path} is a directory, not a profile file.") from None
    except RecursionError:
        raise ProfileError(f"{path}: not a profile (JSON nested too deeply).") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, huge integers
        raise ProfileError(f"{path}: not a JSON profile ({str(exc)[:200]}).") from None
    if not isinstance(data, dict) or data.get("kind") != PROFILE_KIND:
        raise ProfileError(f"{path}: not a swiftformer-qnn profile (no \"kind\": \"{PROFILE_KIND}\").")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ProfileError(
            f"{path}: profile schema_version {data.get('schema_version')!r}, this tool reads {SCHEMA_VERSION}."
        )
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ProfileError(f"{path}: invalid profile at {where}: {first['msg']}.") from None


def find_profiles(paths: list[Path]) -> list[Path]:
    """Expand directories into the profile files below them (`*.profile.json`), sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(p.rglob("*.profile.json")))
        else:
            found.append(p)
    return found


UNATTRIBUTED = "other"


class BlockTime(_Strict):
    """One block's share of a profile: the sum of its ops' times (derived, never stored)."""

    block: str  # stem, stage{i}.downsample, stage{i}.block{j}, head, encoder, other
    kind: str | None
    time: float
    time_unit: TimeUnit
    share: float  # of the profile's summed op time, 0..1
    op_count: int
    compute_units: dict[str, int]  # {"NPU": 12, "CPU": 1}
    parts: dict[str, float]  # inside a SwiftFormerEncoder: local_representation/attention/mlp -> time


def block_times(profile: Profile) -> dict[str, BlockTime]:
    """Per-block totals in model order of first appearance; ops with no attribution count as `other`.

    Shares are of the summed per-op time, which on a device is close to (but not exactly)
    the end-to-end latency: QNN's per-op timings leave out graph launch and I/O.
    """
    timed = [op for op in profile.ops if op.time is not None]
    total = sum(op.time for op in timed) or 0.0
    unit = timed[0].time_unit if timed else TimeUnit.US
    acc: dict[str, dict] = {}
    for op in profile.ops:
        att = op.attribution
        key = att.block if att else UNATTRIBUTED
        entry = acc.setdefault(key, {"kind": att.kind if att else None, "time": 0.0, "n": 0, "cu": {}, "parts": {}})
        entry["n"] += 1
        if op.compute_unit is not None:
            entry["cu"][op.compute_unit.value] = entry["cu"].get(op.compute_unit.value, 0) + 1
        if op.time is not None:
            entry["time"] += op.time
            if att and att.part:
                entry["parts"][att.part] = entry["parts"].get(att.part, 0.0) + op.time
    return {
        key: BlockTime(
            block=key,
            kind=e["kind"],
            time=e["time"],
            time_unit=unit,
            share=(e["time"] / total) if total else 0.0,
            op_count=e["n"],
            compute_units=e["cu"],
            parts=e["parts"],
        )
        for key, e in acc.items()
    }
