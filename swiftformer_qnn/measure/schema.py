"""The profile schema every source writes and every renderer and gate reads.

A profile is one measurement of one compiled model on one target, from one source. Units
are in the field names (`_us`, `_bytes`, `_cycles`). Per-op rows keep both figures a source
can give: `execution_time_us` and `execution_cycles` (AI Hub's QNN profiles often carry only
cycles, or microseconds rounded to 0). Cycles from a device are device measurements: a
block's device time is its share of the device cycles times the measured inference time
(`TimeBasis.DERIVED_FROM_CYCLES`). Cycles from the x86 HTP emulator are structure only,
never latency. Every latency says which statistic it is (`LatencySummary.label`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.atomic import not_a_regular_file, write_text_atomic
from ..core.errors import ProfileError, json_problem
from .agreement import Agreement

SCHEMA_VERSION = 2  # 2: per-op execution_time_us + execution_cycles; latency basis and estimate
PROFILE_KIND = "swiftformer-qnn.profile"


class LatencySource(str, Enum):
    """Where a number came from. Only device sources are latency."""

    AIHUB = "aihub"  # a real device, through Qualcomm AI Hub
    QNN_NET_RUN = "qnn-net-run"  # a phone attached over adb, qnn-net-run --profiling_level
    # A device running onnxruntime with the QNN EP (an Android or Windows-on-Snapdragon app), its
    # profiling CSV imported (`importers.onnxruntime_qnn_csv`).
    ONNXRUNTIME_QNN = "onnxruntime-qnn"
    PUBLISHED = "published"  # imported from a published table (summary only)
    EMULATOR = "emulator"  # onnxruntime-qnn's x86 HTP emulator: structure only, NOT latency
    # QNN's HTP performance estimator (Hextimate) for a proxy SoC: estimated accelerator time,
    # deterministic, NOT device latency (`Profile.estimate` says which proxy).
    ESTIMATE = "estimate"

    @property
    def is_device_latency(self) -> bool:
        return self not in (LatencySource.EMULATOR, LatencySource.ESTIMATE)


class TimeUnit(str, Enum):
    """The unit of a per-op or per-block figure as reports show it."""

    US = "us"
    CYCLES = "cycles"  # emulator cycles: comparable within one profile at best


class TimeBasis(str, Enum):
    """How a per-op or per-block figure was obtained; said next to every such figure."""

    DERIVED_FROM_CYCLES = "derived-from-cycles"  # device: share of device cycles x measured inference time
    OP_TIMES = "op-times"  # device: the per-op microseconds the source reported, summed
    EMULATOR_CYCLES = "emulator-cycles"  # x86 HTP emulator: structure only, not latency
    # QNN's estimator: each op's share of the simulated schedule's span, at the simulated clock
    ESTIMATED = "estimated"

    @property
    def label(self) -> str:
        return {
            "derived-from-cycles": "derived from device cycles",
            "op-times": "sum of per-op times",
            "emulator-cycles": "emulator cycles, not latency",
            "estimated": "estimated, shares of the simulated critical path",
        }[self.value]


class LatencyBasis(str, Enum):
    """What the whole-model figures of a LatencySummary stand on."""

    RUNS = "runs"  # min/median/max over `run_count` runs (`runs_us` when the source gave them)
    # Only AI Hub's estimated_inference_time, which appears to be the minimum of its runs
    # (one real profile: 281 us for runs [1995, 350, 321, 281, ...]).
    AIHUB_ESTIMATE = "aihub-estimate"
    PUBLISHED = "published"  # one published figure whose statistic was not stated
    # qnn-profile-viewer's text summary: its Execute Stats (Average); it does not say how many runs.
    VIEWER_AVERAGE = "qnn-profile-viewer-average"


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
    # The exported graph form: "htp" (HTP-ready) or "faithful" (the literal upstream graph, the
    # only one before graph forms existed, and what published measurements ran).
    graph: str = "faithful"


class TargetInfo(_Strict):
    device: str  # e.g. "Samsung Galaxy S23 Ultra", or "HTP emulator (x86_64)" (devices.EMULATOR_DEVICE)
    chipset: str | None = None  # e.g. "qualcomm-snapdragon-8gen2"
    soc_model: int | None = None
    htp_arch: int | None = None
    os: str | None = None


class ToolchainInfo(_Strict):
    """QNN/QAIRT versions as written (parse them with `swiftformer_qnn.core.versions`).

    `qnn_version` is the release the numbers belong to: the one that ran where known, else the
    one compiled with, else the one asked for. The other fields keep each string as reported.
    """

    qnn_version: str | None = None  # "2.51.0", or "2.17" for published rows
    qairt_version: str | None = None
    runtime: str = "qnn_context_binary"
    onnxruntime_qnn: str | None = None
    requested: str | None = None  # what was asked for: "2.42", "latest", "default" (AI Hub: resolved in `qnn_version`)
    compiled_with: str | None = None  # the compiled model's QAIRT_SDK_VERSION (else QNN_SDK_VERSION)
    ran_with: str | None = None  # what the device ran (AI Hub: ProfileDetail.tool_versions; a phone: qnn-net-run)


Statistic = Literal["median", "min"]


class LatencySummary(_Strict):
    """Whole-model inference time, microseconds, and what it stands on (`basis`).

    With basis `runs`, min/median/max are over `run_count` runs. With `aihub-estimate` or
    `published` there is one figure, stored as min = median with run_count 1, and `label`
    says what it is instead of calling it a median.
    """

    min_us: float = Field(gt=0)
    median_us: float = Field(gt=0)
    max_us: float | None = Field(default=None, gt=0)
    runs_us: list[Annotated[float, Field(gt=0)]] = Field(default_factory=list)
    run_count: int = Field(ge=1)
    basis: LatencyBasis = LatencyBasis.RUNS
    estimate_us: float | None = Field(default=None, ge=0)  # AI Hub's estimated_inference_time, when given

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
        if self.basis is not LatencyBasis.RUNS and (self.runs_us or self.min_us != self.median_us):
            raise ValueError(f"a {self.basis.value} latency is one figure (min_us = median_us, no runs_us)")
        if self.basis is LatencyBasis.AIHUB_ESTIMATE and self.estimate_us != self.median_us:
            raise ValueError("an aihub-estimate latency is its estimate_us")
        return self

    @classmethod
    def of_runs(cls, runs_us: Sequence[float], **more: Any) -> LatencySummary:
        """The summary of measured runs (basis `runs`): min, median and max over them."""
        runs = list(runs_us)
        return cls(min_us=min(runs), median_us=statistics.median(runs), max_us=max(runs), runs_us=runs,
                   run_count=len(runs), **more)

    def value(self, statistic: Statistic = "median") -> float:
        return self.min_us if statistic == "min" else self.median_us

    def label(self, statistic: Statistic = "median") -> str:
        """Which statistic `value(statistic)` is, in words: "median of 100 runs",
        "AI Hub estimate (min of its runs)", "published figure (statistic not stated)"."""
        if self.basis is LatencyBasis.AIHUB_ESTIMATE:
            return "AI Hub estimate (min of its runs)"
        if self.basis is LatencyBasis.PUBLISHED:
            return "published figure (statistic not stated)"
        if self.basis is LatencyBasis.VIEWER_AVERAGE:
            return "average of the runs (qnn-profile-viewer summary; run count not stated)"
        return f"{statistic} of {self.run_count} run{'s' if self.run_count != 1 else ''}"


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
    via: Literal["name", "op_trace", "position", "none"] = "name"


class OpEstimate(_Strict):
    """What QNN's estimator says of one op besides its time (`LatencySource.ESTIMATE` profiles)."""

    op_id: int  # the QNN op id
    busy_cycles: int = Field(ge=0)  # its slices' durations summed over all threads (work, not time)
    slices: int = Field(ge=0)
    threads: list[str] = Field(default_factory=list)  # FG (sequencer, HMX), HVX 1..4, DMA
    kernels: list[str] = Field(default_factory=list)  # HTP implementations, e.g. q::ConvLayer_s1.opt
    dram_read_bytes: int = Field(default=0, ge=0)
    dram_write_bytes: int = Field(default=0, ge=0)
    vtcm_read_bytes: int = Field(default=0, ge=0)
    vtcm_write_bytes: int = Field(default=0, ge=0)


class OpRecord(_Strict):
    """One op (QNN layer) as the source reports it; both figures kept when both are given.

    AI Hub documents both as per-layer minimums over the runs; `execution_time_us` is
    often absent or 0 for sub-microsecond layers, which is why cycles are preferred.
    """

    name: str
    op_type: str
    compute_unit: ComputeUnit | None = None
    execution_time_us: float | None = Field(default=None, ge=0)
    execution_cycles: float | None = Field(default=None, ge=0)
    onnx_nodes: list[str] = Field(default_factory=list)
    attribution: Attribution | None = None
    estimate: OpEstimate | None = None  # estimate profiles only


class OutputCheck(_Strict):
    """`profile --check-outputs`: held-out inputs run on the device (an AI Hub inference job),
    its outputs compared with the CPU QDQ model's and the fp32 model's on the same inputs."""

    inputs: str  # where the inputs came from, e.g. "inputs/heldout.npy (8 held-out images)"
    job_id: str | None = None
    vs_cpu_qdq: Agreement | None = None  # None for fp16 (no QDQ graph)
    vs_fp32: Agreement
    # Where each reference's outputs came from: the export's saved ones (e.g. "heldout_fp32.npy,
    # the export's validate outputs"), or a graph run for the check ("model.qdq.onnx on
    # onnxruntime's CPU EP"). None in profiles written before it was recorded.
    cpu_qdq_reference: str | None = None
    fp32_reference: str | None = None


class Provenance(_Strict):
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    job_ids: dict[str, str] = Field(default_factory=dict)  # {"compile": "j...", "profile": "j..."}
    urls: dict[str, str] = Field(default_factory=dict)
    tool: str | None = None  # "swiftformer-qnn 0.1.0"
    citation: str | None = None  # for published rows: where the number was published
    note: str | None = None


class EstimateSummary(_Strict):
    """The whole-graph figures of an estimate profile: QNN's HTP performance estimator for a
    proxy SoC (`htp.estimate`). Deterministic; accelerator execution only (no I/O, no RPC)."""

    estimator: str = "QNN Hextimate"
    proxy_soc: str  # "SA8255P"
    proxy_soc_model: int
    stands_for: str | None = None  # "SM8550"
    us: float = Field(ge=0)
    us_lower: float | None = Field(default=None, ge=0)
    us_upper: float | None = Field(default=None, ge=0)
    # QNN 2.47-2.49 print cycles only: then `us` is cycles at the simulated core clock.
    us_converted: bool = False
    cycles: int = Field(ge=0)
    cycles_lower: int | None = Field(default=None, ge=0)
    cycles_upper: int | None = Field(default=None, ge=0)
    sim_core_mhz: float | None = None
    sim_ddr_mhz: float | None = None
    sim_base_soc: str | None = None  # "Kailua": the SM8550 generation
    span_cycles: int = Field(ge=0)  # the simulated schedule's span; the ops' shares add up to it
    idle_cycles: float = Field(ge=0)  # cycles of the span with no slice in flight
    unmapped_cycles: float = Field(ge=0)  # cycles of slices whose op id QNN's name table does not name
    input_fill_bytes: int | None = Field(default=None, ge=0)
    output_spill_bytes: int | None = Field(default=None, ge=0)
    intermediate_fill_bytes: int | None = Field(default=None, ge=0)
    intermediate_spill_bytes: int | None = Field(default=None, ge=0)
    missing_ops: int | None = Field(default=None, ge=0)  # ops without a cost (left out of the estimate)
    dma_read_bytes: int | None = Field(default=None, ge=0)
    dma_write_bytes: int | None = Field(default=None, ge=0)

    @property
    def label(self) -> str:
        """`estimated (QNN Hextimate, SA8255P proxy for SM8550)`: said next to every figure."""
        target = self.stands_for.upper() if self.stands_for else "its HTP architecture"
        return f"estimated ({self.estimator}, {self.proxy_soc} proxy for {target})"


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
    output_check: OutputCheck | None = None
    estimate: EstimateSummary | None = None  # source `estimate` only
    provenance: Provenance = Field(default_factory=Provenance)

    @property
    def is_device_latency(self) -> bool:
        return self.source.is_device_latency

    @model_validator(mode="after")
    def _honest(self) -> Profile:
        if self.source is LatencySource.EMULATOR:
            if self.latency is not None:
                raise ValueError("an emulator profile cannot carry a latency summary (it is not device latency)")
            if any(op.execution_time_us is not None for op in self.ops):
                raise ValueError("emulator ops carry cycles only, not microseconds (it is not device latency)")
        elif self.source is LatencySource.ESTIMATE:
            if self.estimate is None:
                raise ValueError("an estimate profile needs its estimate summary (proxy SoC, totals)")
            if self.latency is not None:
                raise ValueError("an estimate profile cannot carry a latency summary (it is not device latency)")
        elif self.latency is None:
            raise ValueError(f"a {self.source.value} profile needs a latency summary")
        if self.estimate is not None and self.source is not LatencySource.ESTIMATE:
            raise ValueError(f"a {self.source.value} profile cannot carry an estimate summary")
        return self

    def save(self, path: Path) -> Path:
        """Write atomically (a reader never sees half a profile)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, self.model_dump_json(indent=2) + "\n")


# What to pass instead of a file that is no profile.
_PROFILE_HINT = "Pass a *.profile.json that `swiftformer-qnn profile` wrote (or `profile import` made from your own files)."


def load_profile(path: Path) -> Profile:
    """Read and validate one profile; any problem is a ProfileError naming the file."""
    path = Path(path)
    why = not_a_regular_file(path)
    if why == "does not exist":
        raise ProfileError(f"{path}: no such profile file.", hint=_PROFILE_HINT)
    if why is not None:
        raise ProfileError(f"{path} {why}: not read as a profile.")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file.", hint=_PROFILE_HINT) from None
    except IsADirectoryError:
        raise ProfileError(f"{path} is a directory, not a profile file.") from None
    except RecursionError:
        raise ProfileError(f"{path}: not a profile (JSON nested too deeply).") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, huge integers
        raise ProfileError(f"{path}: not a JSON profile ({json_problem(exc)}).", hint=_PROFILE_HINT) from None
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
    """Expand directories into the profile files below them (`*.profile.json`), sorted. Only
    regular files are found in a directory: a FIFO named like a profile would block its reader
    forever (a file named on the command line is judged by `load_profile`)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*.profile.json") if not_a_regular_file(f) is None))
        else:
            found.append(p)
    return found


UNATTRIBUTED = "other"


class OpTimes(_Strict):
    """Per-op figures of one profile on one basis, with the unit and basis said."""

    values: list[tuple[int, float]]  # (index into profile.ops, figure); ops with no figure left out
    unit: TimeUnit
    basis: TimeBasis | None  # None: no op has a figure
    latency_label: str | None = None  # for derived-from-cycles: the latency the shares scale


def op_times(profile: Profile, statistic: Statistic = "median") -> OpTimes:
    """Per-op figures: on a device, cycles (when any op has them) as shares of the measured
    latency (`statistic`), else the per-op microseconds; on the emulator, raw cycles; from the
    estimator, each op's estimated share of the simulated span in microseconds."""
    cycles = [(i, op.execution_cycles) for i, op in enumerate(profile.ops) if op.execution_cycles is not None]
    if profile.source is LatencySource.ESTIMATE:
        times = [(i, op.execution_time_us) for i, op in enumerate(profile.ops) if op.execution_time_us is not None]
        return OpTimes(values=times, unit=TimeUnit.US, basis=TimeBasis.ESTIMATED if times else None)
    if not profile.is_device_latency:
        return OpTimes(values=cycles, unit=TimeUnit.CYCLES, basis=TimeBasis.EMULATOR_CYCLES if cycles else None)
    if cycles and sum(c for _, c in cycles) > 0:
        assert profile.latency is not None  # a device profile has one (validator)
        total, latency = sum(c for _, c in cycles), profile.latency.value(statistic)
        return OpTimes(
            values=[(i, c / total * latency) for i, c in cycles],
            unit=TimeUnit.US,
            basis=TimeBasis.DERIVED_FROM_CYCLES,
            latency_label=profile.latency.label(statistic),
        )
    times = [(i, op.execution_time_us) for i, op in enumerate(profile.ops) if op.execution_time_us is not None]
    return OpTimes(values=times, unit=TimeUnit.US, basis=TimeBasis.OP_TIMES if times else None)


class BlockTime(_Strict):
    """One block's share of a profile (derived, never stored): see `op_times` for the basis."""

    block: str  # stem, stage{i}.downsample, stage{i}.block{j}, head, encoder, other
    kind: str | None
    time: float
    time_unit: TimeUnit
    basis: TimeBasis | None
    cycles: float | None  # the block's summed execution_cycles, where ops have them
    share: float  # of the profile's summed op figures, 0..1
    op_count: int
    compute_units: dict[str, int]  # {"NPU": 12, "CPU": 1}
    parts: dict[str, float]  # inside a SwiftFormerEncoder: local_representation/attention/mlp -> time


def block_times(profile: Profile, statistic: Statistic = "median") -> dict[str, BlockTime]:
    """Per-block totals in model order of first appearance; ops with no attribution count as `other`.

    On a device with cycles a block's time is its share of the cycles times the measured
    latency, so blocks sum to the latency. With per-op microseconds only they sum to less:
    QNN's per-op timings leave out graph launch and I/O.
    """
    ot = op_times(profile, statistic)
    figure = dict(ot.values)
    total = sum(figure.values())
    acc: dict[str, dict] = {}
    for i, op in enumerate(profile.ops):
        att = op.attribution
        key = att.block if att else UNATTRIBUTED
        entry = acc.setdefault(
            key, {"kind": att.kind if att else None, "time": 0.0, "cycles": None, "n": 0, "cu": {}, "parts": {}}
        )
        entry["n"] += 1
        if op.compute_unit is not None:
            entry["cu"][op.compute_unit.value] = entry["cu"].get(op.compute_unit.value, 0) + 1
        if op.execution_cycles is not None:
            entry["cycles"] = (entry["cycles"] or 0.0) + op.execution_cycles
        if i in figure:
            entry["time"] += figure[i]
            if att and att.part:
                entry["parts"][att.part] = entry["parts"].get(att.part, 0.0) + figure[i]
    return {
        key: BlockTime(
            block=key,
            kind=e["kind"],
            time=e["time"],
            time_unit=ot.unit,
            basis=ot.basis,
            cycles=e["cycles"],
            share=(e["time"] / total) if total else 0.0,
            op_count=e["n"],
            compute_units=e["cu"],
            parts=e["parts"],
        )
        for key, e in acc.items()
    }
