"""The typed report: what every renderer (Markdown, HTML, charts, terminal, JSON) reads.

Numbers carry their unit next to them (`value` + `unit`): device columns are milliseconds,
emulator columns are HTP emulator cycles, which are not device latency and are never
converted to time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..htp.diff import FigureDelta
from ..measure.schema import LatencySource

REPORT_KIND = "swiftformer-qnn.report"
COMPARISON_KIND = "swiftformer-qnn.comparison"
REPORT_SCHEMA_VERSION = 1

EMULATOR_LABEL = "emulator (not device latency)"
ESTIMATE_LABEL = "estimate (not device latency)"


class Unit(str, Enum):
    MS = "ms"  # device latency (or a published device figure)
    CYCLES = "cycles"  # HTP emulator cycles: structure only, comparable within a profile


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRow(_Frozen):
    """One measured model: a full SwiftFormer variant or the standalone encoder block."""

    id: str  # "l1-1x3x224x224", "encoder-1x96x64x64"
    variant: str
    input_shape: list[int]
    attention: str
    graph: str = "faithful"  # the exported graph form (measure.schema.ModelInfo.graph)
    label: str  # "SwiftFormer-L1 1x3x224x224"
    short: str  # "L1", "encoder block": for ratio rows and chart ticks
    is_encoder_block: bool


class Setting(_Frozen):
    """Everything but the QNN version that must match for two numbers to share a column group.

    Sources (device, published, emulator), devices and precisions are never mixed.
    """

    source: LatencySource
    device: str
    chipset: str | None
    precision: str
    runtime: str

    @property
    def source_label(self) -> str:
        if self.source is LatencySource.ESTIMATE:
            return ESTIMATE_LABEL
        return EMULATOR_LABEL if self.source is LatencySource.EMULATOR else self.source.value

    @property
    def label(self) -> str:
        return f"{self.source_label} · {self.device} · {self.precision}"


class Column(_Frozen):
    id: str  # "c0", "c1", ... in display order
    setting: Setting
    qnn_version: str | None  # as the profiles state it ("2.17", "2.51.0"), None if unknown
    unit: Unit

    @property
    def version_label(self) -> str:
        return f"QNN {self.qnn_version}" if self.qnn_version else "QNN ?"


class Cell(_Frozen):
    """The headline number of one model in one column."""

    model_id: str
    column_id: str
    value: float  # ms: median of the profiles' median latency; cycles: median of summed op cycles
    unit: Unit
    statistic: str  # what `value` is, in words
    run_count: int | None  # device runs behind the number (summed over profiles); None for emulator
    profile_count: int
    profiles: list[str]  # input labels of the profiles behind the cell


class EncoderShare(_Frozen):
    """The standalone encoder block's headline number as a fraction of a full model's, per column."""

    column_id: str
    encoder_model_id: str
    full_model_id: str
    ratio: float


class BlockRow(_Frozen):
    block: str  # stem, stage{i}.downsample, stage{i}.block{j}, head, encoder, other
    kind: str | None
    time: float  # in the breakdown's unit (ms or cycles)
    share: float  # of the summed op time of the column, 0..1
    parts: dict[str, float] = Field(default_factory=dict)  # local_representation / attention / mlp


class Breakdown(_Frozen):
    """Per-block time of one model in one column: the median over the cell's profiles that have ops."""

    model_id: str
    column_id: str
    unit: Unit
    total: float  # sum of per-op time (not end-to-end latency: QNN's per-op times leave out launch and I/O)
    profile_count: int
    blocks: list[BlockRow]  # model order
    kinds: dict[str, float]  # conv_encoder / swiftformer_encoder / ... -> time


class Mover(_Frozen):
    """One block's change from one profile to another: between two QNN versions of a report, or
    from A to B in `report --compare`."""

    block: str
    kind: str | None
    before: float
    after: float
    delta: float  # after - before, in the unit of the step
    ratio: float | None  # after / before; None when before is 0
    share_before: float
    share_after: float


class VersionStep(_Frozen):
    """Consecutive QNN versions of one model within one setting."""

    model_id: str
    from_column: str
    to_column: str
    unit: Unit
    before: float  # headline values
    after: float
    delta: float
    ratio: float | None
    # Emulator cycles are not comparable across runs, so emulator movers are ranked by the
    # change of share; device movers by the change of time.
    ranked_by: Literal["time", "share"]
    movers: list[Mover]  # most impact first; empty when either side has no per-op data


class TopOp(_Frozen):
    name: str
    op_type: str
    block: str
    part: str | None
    compute_unit: str | None
    time: float
    share: float


class TopOps(_Frozen):
    model_id: str
    column_id: str
    profile: str  # the representative profile of the cell (its headline value is the cell's median)
    unit: Unit
    ops: list[TopOp]


class WaterfallOp(_Frozen):
    name: str
    op_type: str
    block: str
    kind: str | None
    part: str | None
    time: float  # in the waterfall's unit


class Waterfall(_Frozen):
    """Every timed op of one profile in execution order (the per-op waterfall chart)."""

    model_id: str
    column_id: str
    profile: str
    unit: Unit
    ops: list[WaterfallOp]


class ProvenanceRow(_Frozen):
    profile: str  # input label (path as given, relative where possible)
    model_id: str
    column_id: str
    source: LatencySource
    device: str
    chipset: str | None
    soc_model: int | None
    htp_arch: int | None
    precision: str
    qnn_version: str | None
    qairt_version: str | None
    runtime: str
    date: datetime
    job_ids: dict[str, str]
    tool: str | None
    citation: str | None
    note: str | None


class SkippedInput(_Frozen):
    path: str
    reason: str


class Report(_Frozen):
    kind: Literal["swiftformer-qnn.report"] = REPORT_KIND
    schema_version: int = REPORT_SCHEMA_VERSION
    name: str
    generated_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    inputs: list[str]
    skipped: list[SkippedInput] = Field(default_factory=list)
    models: list[ModelRow]
    columns: list[Column]
    headline: list[Cell]
    encoder_shares: list[EncoderShare]
    breakdowns: list[Breakdown]
    steps: list[VersionStep]
    top_ops: list[TopOps]
    waterfalls: list[Waterfall]  # one per model that has per-op data
    provenance: list[ProvenanceRow]
    notes: list[str]

    def model(self, model_id: str) -> ModelRow:
        return next(m for m in self.models if m.id == model_id)

    def column(self, column_id: str) -> Column:
        return next(c for c in self.columns if c.id == column_id)

    def cell(self, model_id: str, column_id: str) -> Cell | None:
        return next((c for c in self.headline if c.model_id == model_id and c.column_id == column_id), None)

    def breakdown(self, model_id: str, column_id: str) -> Breakdown | None:
        return next((b for b in self.breakdowns if b.model_id == model_id and b.column_id == column_id), None)


class Comparison(_Frozen):
    """`report --compare A B`: B against A, one model."""

    kind: Literal["swiftformer-qnn.comparison"] = COMPARISON_KIND
    schema_version: int = REPORT_SCHEMA_VERSION
    generated_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    model: ModelRow
    a: ProvenanceRow
    b: ProvenanceRow
    unit: Unit
    a_value: float  # headline value of A (median latency ms, or summed emulator cycles)
    b_value: float
    delta: float
    ratio: float | None
    ranked_by: Literal["time", "share"]
    blocks: list[Mover]  # most impact first; empty when either profile has no per-op data
    notes: list[str]


STRUCTURE_COMPARISON_KIND = "swiftformer-qnn.structure-comparison"


class CompileRow(_Frozen):
    """One side of a structure comparison: which compile it is."""

    label: str  # the path it was read from, as given
    variant: str | None
    precision: str | None
    input_shape: list[int] | None
    soc: str | None
    qnn_version: str


class StructureComparison(_Frozen):
    """`report --compare A B` of two compiles: what QNN built for each, from their compile records."""

    kind: Literal["swiftformer-qnn.structure-comparison"] = STRUCTURE_COMPARISON_KIND
    schema_version: int = REPORT_SCHEMA_VERSION
    generated_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    a: CompileRow
    b: CompileRow
    totals: list[FigureDelta]  # the compile figures (`htp.record.FIGURES`)
    op_types: list[FigureDelta]  # per QNN op type, biggest |delta| first, then by name
    notes: list[str]
    # QNN's HTP estimator on each side, where the export made one (its estimate stage's estimate.json).
    estimated_us_a: float | None = None
    estimated_us_b: float | None = None
    estimate_label: str | None = None  # "estimated (QNN Hextimate, SA8255P proxy for SM8550)"
