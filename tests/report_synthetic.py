"""Synthetic profiles for the report tests and the report benchmark.

`make_profile` builds a profile whose numbers a test states exactly; `model_shaped_profile`
builds one op list shaped like the real graph (every block of a variant, the ops a
ConvEncoder / SwiftFormerEncoder exports to) with seeded times, for charts and timing.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone

from swiftformer_qnn.measure.schema import (
    Attribution,
    ComputeUnit,
    LatencySource,
    LatencySummary,
    ModelInfo,
    OpRecord,
    Profile,
    Provenance,
    TargetInfo,
    TimeUnit,
    ToolchainInfo,
)
from swiftformer_qnn.model.variants import VARIANTS, BlockKind
from swiftformer_qnn.profiling.devices import EMULATOR_DEVICE

S23 = {
    "device": "Samsung Galaxy S23 Ultra",
    "chipset": "qualcomm-snapdragon-8gen2",
    "soc_model": 43,
    "htp_arch": 73,
}
EMULATOR = {
    "device": EMULATOR_DEVICE,
    "chipset": "qualcomm-snapdragon-8gen2",
    "soc_model": 43,
    "htp_arch": 73,
}



def _figure(unit: TimeUnit, t: float) -> dict[str, float]:
    """An op's figure: emulator cycles, or device microseconds (the per-op-times basis)."""
    return {"execution_cycles": t} if unit is TimeUnit.CYCLES else {"execution_time_us": t}

def _shape(variant: str) -> list[int]:
    return list(VARIANTS[variant].input_shape())


def make_profile(
    variant: str = "l1",
    qnn: str = "2.51.0",
    *,
    median_ms: float | None = 1.0,
    blocks: dict[str, float] | None = None,
    parts: dict[str, dict[str, float]] | None = None,
    kinds: dict[str, str] | None = None,
    source: LatencySource = LatencySource.AIHUB,
    precision: str = "w8a8",
    device: dict | None = None,
    run_count: int = 100,
    job_id: str | None = None,
) -> Profile:
    """One op per block (`blocks`: block -> time, us or cycles), or one op per part (`parts`)."""
    unit = TimeUnit.CYCLES if source is LatencySource.EMULATOR else TimeUnit.US
    ops: list[OpRecord] = []
    for block, t in (blocks or {}).items():
        kind = (kinds or {}).get(block)
        ops.append(
            OpRecord(
                name=f"/{block}/op",
                op_type="Conv",
                compute_unit=ComputeUnit.NPU,
                **_figure(unit, t),
                attribution=Attribution(block=block, kind=kind),
            )
        )
    for block, ps in (parts or {}).items():
        kind = (kinds or {}).get(block, "swiftformer_encoder")
        for part, t in ps.items():
            ops.append(
                OpRecord(
                    name=f"/{block}/{part}/op",
                    op_type="MatMul",
                    compute_unit=ComputeUnit.NPU,
                    **_figure(unit, t),
                    attribution=Attribution(block=block, kind=kind, part=part),
                )
            )
    latency = None
    if source is not LatencySource.EMULATOR:
        assert median_ms is not None
        us = median_ms * 1000
        latency = LatencySummary(min_us=us * 0.98, median_us=us, max_us=us * 1.1, run_count=run_count)
    return Profile(
        source=source,
        model=ModelInfo(variant=variant, input_shape=_shape(variant), precision=precision),
        target=TargetInfo(**(device or (EMULATOR if source is LatencySource.EMULATOR else S23))),
        toolchain=ToolchainInfo(qnn_version=qnn),
        latency=latency,
        ops=ops,
        provenance=Provenance(
            created_at=datetime(2026, 1, 2, tzinfo=timezone.utc),
            job_ids={"profile": job_id} if job_id else {},
            tool="tests",
        ),
    )


# The ops each block exports to (names follow swiftformer_qnn.model.swiftformer's module names).
_CONV_ENCODER = [
    ("dwconv", "Conv"),
    ("pwconv1", "Conv"),
    ("act", "Gelu"),
    ("pwconv2", "Conv"),
    ("layer_scale", "Mul"),
    ("add", "Add"),
]
_PARTS = {
    "local_representation": [
        ("dwconv", "Conv"),
        ("pwconv1", "Conv"),
        ("act", "Gelu"),
        ("pwconv2", "Conv"),
        ("layer_scale", "Mul"),
    ],
    "attention": [
        ("to_query", "MatMul"),
        ("to_key", "MatMul"),
        ("norm_q", "LpNormalization"),
        ("norm_k", "LpNormalization"),
        ("w_g", "MatMul"),
        ("scale", "Mul"),
        ("norm_a", "LpNormalization"),
        ("aq", "Mul"),
        ("sum", "ReduceSum"),
        ("gk", "Mul"),
        ("proj", "MatMul"),
        ("add_q", "Add"),
        ("final", "MatMul"),
        ("layer_scale", "Mul"),
    ],
    "mlp": [("fc1", "Conv"), ("act", "Gelu"), ("fc2", "Conv"), ("layer_scale", "Mul")],
}
_WEIGHT = {"Conv": 3.0, "MatMul": 2.5, "Gelu": 1.2, "LpNormalization": 1.5, "ReduceSum": 0.8}


def model_shaped_profile(
    variant: str = "l1",
    qnn: str = "2.51.0",
    *,
    source: LatencySource = LatencySource.AIHUB,
    seed: int = 0,
    scale: float = 1.0,
    device: dict | None = None,
    precision: str = "w8a8",
) -> Profile:
    """A profile with the op list of a real export: per-op times are seeded, totals plausible."""
    rng = random.Random(seed)
    unit = TimeUnit.CYCLES if source is LatencySource.EMULATOR else TimeUnit.US
    per_unit = 12_000.0 if unit is TimeUnit.CYCLES else 4.0  # ~1 us at ~1 GHz-equivalent, roughly

    def op(name: str, op_type: str, block: str, kind: str | None, part: str | None, size: float) -> OpRecord:
        t = _WEIGHT.get(op_type, 0.5) * size * per_unit * scale * rng.uniform(0.7, 1.3)
        return OpRecord(
            name=name,
            op_type=op_type,
            compute_unit=ComputeUnit.NPU,
            **_figure(unit, round(t, 3)),
            attribution=Attribution(block=block, kind=kind, part=part),
        )

    ops: list[OpRecord] = []
    v = VARIANTS[variant]
    if v.is_encoder_block:
        size = v.encoder_dim * v.encoder_hw**2 / 50_000
        for part, items in _PARTS.items():
            for name, t in items:
                ops.append(op(f"/encoder/{part}/{name}/{t}", t, "encoder", "swiftformer_encoder", part, size))
            ops.append(
                op(f"/encoder/{part}/residual/Add", "Add", "encoder", "swiftformer_encoder", None, size)
            )
    else:
        hw = 56
        ops += [
            op(f"/stem/{n}", t, "stem", "stem", None, 48 * 112 * 112 / 50_000)
            for n, t in (
                ("conv1/Conv", "Conv"),
                ("act1/Relu", "Relu"),
                ("conv2/Conv", "Conv"),
                ("act2/Relu", "Relu"),
            )
        ]
        for i, (dim, _depth) in enumerate(zip(v.widths, v.depths, strict=True)):
            if i:
                hw //= 2
                ops.append(
                    op(
                        f"/stage{i}/downsample/proj/Conv",
                        "Conv",
                        f"stage{i}.downsample",
                        "downsample",
                        None,
                        dim * hw * hw / 50_000,
                    )
                )
            size = dim * hw * hw / 50_000
            for j, kind in enumerate(v.block_kinds(i)):
                block = f"stage{i}.block{j}"
                prefix = f"/stage{i}/block{j}_{kind.value}"
                if kind is BlockKind.CONV_ENCODER:
                    ops += [
                        op(f"{prefix}/{n}/{t}", t, block, kind.value, None, size) for n, t in _CONV_ENCODER
                    ]
                else:
                    for part, items in _PARTS.items():
                        ops += [
                            op(f"{prefix}/{part}/{n}/{t}", t, block, kind.value, part, size) for n, t in items
                        ]
                        ops.append(op(f"{prefix}/{part}/residual/Add", "Add", block, kind.value, None, size))
        ops += [
            op(f"/head/{n}", t, "head", "head", None, 0.5)
            for n, t in (
                ("norm/BatchNormalization", "BatchNormalization"),
                ("pool/GlobalAveragePool", "GlobalAveragePool"),
                ("head/Gemm", "Gemm"),
                ("dist_head/Gemm", "Gemm"),
                ("mean/Add", "Add"),
            )
        ]
        ops.append(
            OpRecord(
                name="/output/Transpose",
                op_type="Transpose",
                compute_unit=ComputeUnit.CPU,
                **_figure(unit, round(2 * per_unit * scale, 3)),
            )
        )

    latency = None
    if source is not LatencySource.EMULATOR:
        total = sum(o.execution_time_us for o in ops)
        median = total * 1.08  # per-op times leave out launch and I/O
        latency = LatencySummary(min_us=median * 0.97, median_us=median, max_us=median * 1.2, run_count=100)
    return Profile(
        source=source,
        model=ModelInfo(variant=variant, input_shape=list(v.input_shape()), precision=precision),
        target=TargetInfo(**(device or (EMULATOR if source is LatencySource.EMULATOR else S23))),
        toolchain=ToolchainInfo(qnn_version=qnn),
        latency=latency,
        ops=ops,
        provenance=Provenance(
            created_at=datetime(2026, 1, 2, tzinfo=timezone.utc), tool="tests (model-shaped synthetic)"
        ),
    )
