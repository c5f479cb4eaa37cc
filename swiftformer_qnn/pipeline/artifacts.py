"""Export manifests, and the stage cache of the pipeline's stages.

Every pipeline stage reads input files and writes new ones; its result is keyed by a hash
of (stage, options, input hashes, tool versions) in the stage cache (`core.cache`), so a
repeated request costs seconds. The manifest of an export directory lists every stage's
record. Output directories (assembled beside their place, replaced only when this tool made
them) are `output_dir`'s.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from ..core import cache
from ..core.atomic import sha256_file
from ..core.cache import FileRecord, StageRecord
from ..core.errors import OutputDirError
from .requests import RecordedRequest
from .stage_results import STAGE_RESULTS

MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "swiftformer-qnn.export"
R = TypeVar("R", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _stage_name(value: Any) -> str | None:
    return value.get("name") if isinstance(value, dict) else getattr(value, "name", None)


# A stage record of any stage, its results validated by the model its name selects
# (`stage_results.STAGE_RESULTS`).
AnyStageRecord = Annotated[
    Union[tuple(Annotated[StageRecord[model], Tag(name)] for name, model in STAGE_RESULTS.items())],  # noqa: UP007
    Discriminator(_stage_name),
]


class ExportManifest(_Model):
    kind: str = MANIFEST_KIND
    schema_version: int = 1
    status: str = "complete"
    request_key: str
    request: RecordedRequest  # what was asked, resolved (requests.py); the key hashes it
    tools: dict[str, str]
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    wall_s: float = 0.0
    stages: list[AnyStageRecord] = Field(default_factory=list)

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)

    def results(self, name: str, model: type[R]) -> R | None:
        """The typed results of stage `name` (None if the export stopped before it)."""
        rec = self.stage(name)
        if rec is None:
            return None
        if not isinstance(rec.results, model):
            raise TypeError(f"stage {name} holds {type(rec.results).__name__}, not {model.__name__}")
        return rec.results

    def artifact(self, directory: Path, stage: str, output: str) -> Path:
        rec = self.stage(stage)
        if rec is None or output not in rec.outputs:
            raise OutputDirError(f"{directory}: the export has no {stage}/{output} artifact.")
        return Path(directory) / rec.outputs[output].path


def holds_export_manifest(directory: Path) -> bool:
    """Whether `directory` holds a manifest this tool wrote (its `kind`), whether or not this
    version can read it: a directory an earlier swiftformer-qnn made is still the tool's own."""
    try:
        return json.loads((Path(directory) / MANIFEST_NAME).read_text()).get("kind") == MANIFEST_KIND
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def read_manifest(directory: Path) -> ExportManifest | None:
    """The manifest of a complete export directory, or None if there is none."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("kind") != MANIFEST_KIND:
            return None
        return ExportManifest.model_validate(data)
    except (OSError, ValueError, AttributeError, RecursionError):  # AttributeError: JSON that is not an object
        return None


def damaged_outputs(directory: Path, manifest: ExportManifest) -> list[str]:
    """What no longer matches the manifest among a directory's files (missing, other size,
    other SHA-256), one phrase each; hashed in parallel (hashlib releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    records = {out.path: out for stage in manifest.stages for out in stage.outputs.values()}

    def check(rec: FileRecord) -> str | None:
        p = Path(directory) / rec.path
        try:
            if not p.is_file():
                return f"{rec.path} is missing"
            if p.stat().st_size != rec.bytes or sha256_file(p) != rec.sha256:
                return f"{rec.path} was changed"
        except OSError as exc:
            return f"{rec.path} cannot be read ({exc.strerror or exc})"
        return None

    with ThreadPoolExecutor(max_workers=min(4, len(records) or 1)) as pool:
        return [why for why in pool.map(check, records.values()) if why]


class StageCache(cache.StageCache):
    """The stage cache of the pipeline's stages: a result is read back as `STAGE_RESULTS[name]`."""

    results = STAGE_RESULTS
