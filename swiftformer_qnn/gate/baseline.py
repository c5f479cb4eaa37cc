"""Committed baselines: the candidate's profiles copied under profiles/baselines/ with a record.

A baseline directory holds the profiles exactly as measured (their own provenance: job
ids, URLs, QNN version, tool) and `baseline.json`, which says where they came from, when,
at which commit, and what they measure, so a later gate can refuse a baseline of another
variant, precision, device or source.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import __version__
from ..core.atomic import sha256_file
from ..core.errors import ProfileError
from ..core.output_dir import holds_marker, staged_output_dir
from ..htp.record import COMPILE_RECORD
from ..measure.schema import Profile
from ..pipeline.artifacts import FoundCompile, only_compile, read_compile_side
from ..profiling.devices import device_slug
from .profile_gate import check_side, load_side
from .structure import pick_variant

BASELINES_DIR = Path("profiles/baselines")
RECORD_NAME = "baseline.json"
RECORD_KIND = "swiftformer-qnn.baseline"
# The updates replace only a baseline directory (or an empty one), never anything else.
_BASELINE_OWNER = holds_marker({RECORD_NAME: (RECORD_KIND,)}, "a baseline")


class BaselineRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["swiftformer-qnn.baseline"] = RECORD_KIND
    schema_version: int = 1
    mode: Literal["profile", "structure"] = "profile"
    key: str
    variant: str | None = None
    precision: str | None = None
    device: str | None = None
    source: str | None = None
    input_shape: list[int] | None = None
    qnn_version: str | None = None
    runs: int = 0
    job_ids: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)  # file name in the baseline dir -> sha256
    copied_from: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    commit: str | None = None  # $GITHUB_SHA when written by CI
    tool: str = f"swiftformer-qnn {__version__}"
    note: str | None = None


class BaselineUpdate(BaseModel):
    model_config = ConfigDict(frozen=True)

    directory: Path
    record: BaselineRecord
    replaced: BaselineRecord | None = None  # the baseline that was there before


def baseline_key(profile: Profile) -> str:
    """`l1-w8a8-samsung-galaxy-s23-ultra-aihub`: one baseline per thing measured."""
    return "-".join(device_slug(x) for x in (profile.model.variant, profile.model.precision, profile.target.device,
                                       profile.source.value))


def read_record(directory: Path) -> BaselineRecord | None:
    path = Path(directory) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return BaselineRecord.model_validate_json(path.read_text())
    except (OSError, ValueError, ValidationError) as exc:
        raise ProfileError(f"{path}: not a readable baseline record ({exc.__class__.__name__}).") from None


def _unique_names(files: Sequence[Path]) -> list[str]:
    names = [f.name for f in files]
    if len(set(names)) == len(names):
        return names
    # The same file name from several job directories: number them to keep every run.
    return [f"{i:03d}-{n}" for i, n in enumerate(names)]


def _check_replaces(directory: Path, new: BaselineRecord, allow_mismatch: bool) -> BaselineRecord | None:
    old = read_record(directory)
    if old is None:
        if directory.exists() and any(directory.iterdir()):
            raise ProfileError(f"{directory} exists and is not a baseline directory (no {RECORD_NAME}).",
                               hint="Choose another --baseline directory.")
        return None
    fields = ("mode", "variant", "precision", "device", "source", "input_shape")
    diff = [f"{k}: {getattr(old, k)} -> {getattr(new, k)}" for k in fields if getattr(old, k) != getattr(new, k)]
    if diff and not allow_mismatch:
        raise ProfileError(
            f"{directory} is the baseline of something else ({'; '.join(diff)}).",
            hint="Write it to its own directory, or pass --allow-mismatch to replace it.",
        )
    return old


def _write_baseline(target: Path, record: BaselineRecord, copies: dict[str, Path],
                    allow_mismatch: bool) -> BaselineUpdate:
    """`target` made the baseline `record` describes, atomically: each file of `copies` (name in
    the baseline -> file) copied byte for byte, and `baseline.json`."""
    replaced = _check_replaces(target, record, allow_mismatch)
    with staged_output_dir(target, force=True, inspect=_BASELINE_OWNER, option="--baseline") as work:
        for name, source in copies.items():
            shutil.copyfile(source, work / name)
        (work / RECORD_NAME).write_text(record.model_dump_json(indent=2) + "\n")
    return BaselineUpdate(directory=target, record=record, replaced=replaced)


def update_baseline(
    candidate: Sequence[Path],
    *,
    directory: Path | None = None,
    root: Path = BASELINES_DIR,
    allow_mismatch: bool = False,
    note: str | None = None,
    variant: str | None = None,
) -> BaselineUpdate:
    """Write the candidate profiles as the baseline (default `root/<baseline_key>/`), atomically."""
    profiles, files = load_side(candidate, side="candidate", variant=variant)
    check_side(profiles, files, "candidate")
    # A baseline gates each block: one without per-op rows (a basic-level profile) would leave
    # every block ungated against it while the gate seemed to pass them.
    bare = next((f for p, f in zip(profiles, files, strict=True) if not p.ops), None)
    if bare is not None:
        raise ProfileError(f"{bare}: no per-op rows (whole-model latency only), so it is not accepted as a "
                           "per-block baseline.",
                           hint="Accept profiles with per-op figures: AI Hub's, or qnn-net-run's at "
                                "--profiling_level detailed imported as CSV or JSON.")
    p0 = profiles[0]
    target = Path(directory) if directory else Path(root) / baseline_key(p0)
    names = _unique_names(files)
    record = BaselineRecord(
        key=baseline_key(p0),
        variant=p0.model.variant,
        precision=p0.model.precision,
        device=p0.target.device,
        source=p0.source.value,
        input_shape=list(p0.model.input_shape),
        qnn_version=p0.toolchain.qnn_version,
        runs=sum(len(p.latency.runs_us) or 1 for p in profiles if p.latency),
        job_ids=[j for p in profiles for j in p.provenance.job_ids.values()],
        files={n: sha256_file(f) for n, f in zip(names, files, strict=True)},
        copied_from=[str(f) for f in files],
        commit=os.environ.get("GITHUB_SHA"),
        note=note,
    )
    # Byte for byte: each profile keeps its own provenance.
    return _write_baseline(target, record, dict(zip(names, files, strict=True)), allow_mismatch)


def structure_key(c: FoundCompile) -> str:
    """`compile-l1-w8a8-sm8550-qnn2-51-0`: one structural baseline per thing compiled and QNN version."""
    parts = [c.identity("variant"), c.identity("precision"), c.identity("soc")] if c.identity("variant") else []
    return "-".join(device_slug(x) for x in ["compile", *(p for p in parts if p), f"qnn{c.qnn_version}"])


def update_structure_baseline(
    candidate: Path,
    *,
    directory: Path | None = None,
    root: Path = BASELINES_DIR,
    allow_mismatch: bool = False,
    note: str | None = None,
    variant: str | None = None,
) -> BaselineUpdate:
    """Keep one compile as the structural baseline (default `root/<structure_key>/`): its
    `compile.json`, byte for byte, and `baseline.json`."""
    side = read_compile_side([Path(candidate)])
    if variant is not None:
        side = pick_variant(side, variant, "candidate")
    found = only_compile(
        side, f"{candidate}",
        hint="Point --candidate at one of them, e.g. <export>/qnn-versions/qnn-<version>/ (or pick with --variant).",
    )
    key = structure_key(found)
    target = Path(directory) if directory else Path(root) / key
    r = found.record
    record = BaselineRecord(
        mode="structure", key=key, variant=r.model.variant, precision=r.model.precision, device=r.soc,
        input_shape=r.model.input_shape, qnn_version=r.qnn_version,
        files={COMPILE_RECORD: sha256_file(found.path)}, copied_from=[str(found.path)],
        commit=os.environ.get("GITHUB_SHA"), note=note,
    )
    # Byte for byte: the compile's own record.
    return _write_baseline(target, record, {COMPILE_RECORD: found.path}, allow_mismatch)
