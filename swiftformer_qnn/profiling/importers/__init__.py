"""Profiles users already have, in our schema: `swiftformer-qnn profile import FILE --from EXPORT_DIR`.

Each importer is a module here with `NAME: str`, `sniff(path) -> bool` (cheap: is this file
mine?) and `load(path, ctx) -> Profile` (convert, attributing ops to blocks through the export
in `ctx`). A new format joins by adding its module name to `IMPORTERS`.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pydantic import ValidationError

from ...core.atomic import not_a_regular_file
from ...core.errors import ProfileError, UsageError
from ...core.versions import is_version_tag, parse_qnn_version
from ...measure.schema import ModelInfo, Profile
from ...pipeline.artifacts import ExportManifest

log = logging.getLogger(__name__)

# Module names under swiftformer_qnn.profiling.importers, tried in this order.
IMPORTERS: tuple[str, ...] = ("aihub", "qnn_viewer_json", "onnxruntime_qnn_csv", "qnn_viewer_csv", "qnn_viewer_text")


@dataclass(frozen=True)
class ImportContext:
    """What the file alone may not say: the export it measured, and where and with what it ran."""

    export_dir: Path
    model: ModelInfo  # from the export's manifest
    model_path: Path  # the graph the profile's ops came from (QDQ, or the float graph for fp16)
    label: str  # the model part of file names (`xs-r64-w8a8`)
    manifest: ExportManifest | None = None  # the export's manifest (its request, stages and files)
    device: str | None = None  # --device
    qnn: str | None = None  # --qnn, as written

    def given_qnn(self, hint: str = "Give the version it ran with, e.g. --qnn 2.51.") -> str | None:
        """--qnn as written, once it is a QAIRT version (a tag such as `latest` names no run that
        happened); None without --qnn."""
        if self.qnn is not None and (parse_qnn_version(self.qnn) is None or is_version_tag(self.qnn)):
            raise UsageError(f"--qnn {self.qnn!r} is not a QAIRT version.", hint=hint)
        return self.qnn


def importers() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in IMPORTERS]


def find_importer(path: Path) -> ModuleType:
    """The importer that recognises `path`; a ProfileError naming the formats tried otherwise."""
    path = Path(path)
    why = not_a_regular_file(path)
    if why is not None:
        raise UsageError(f"{path} {why}.", hint="Pass the profile file you downloaded.")
    for module in importers():
        if module.sniff(path):
            return module
    names = ", ".join(m.NAME for m in importers())
    raise ProfileError(f"{path}: not a profile format this tool imports (tried: {names}).",
                       hint="Pass the file as the tool that made it wrote it (e.g. AI Hub's download_profile() JSON).")


def load(path: Path, ctx: ImportContext) -> tuple[str, Profile]:
    """(importer name, profile) for `path`; a device figure the export's estimate makes
    implausible is said in the profile's note and on stderr (`implausible`)."""
    module = find_importer(path)
    try:
        profile = module.load(Path(path), ctx)
    except ValidationError as exc:  # the file's figures make no valid profile: bad input, not a bug
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ProfileError(f"{path}: its figures make no valid profile ({where}: {first['msg']}).",
                           hint="Pass the file as the tool that made it wrote it.") from None
    doubt = implausible(profile, ctx.manifest)
    if doubt:
        log.warning("%s: %s", path, doubt)
        note = f"{profile.provenance.note} {doubt}".strip() if profile.provenance.note else doubt
        profile = profile.model_copy(update={"provenance": profile.provenance.model_copy(update={"note": note})})
    return module.NAME, profile


# A phone's end-to-end time exceeds QNN's estimate of the accelerator time by the host side (RPC,
# a few hundred microseconds) and per-op profiling's inflation (a few times): the committed L1
# estimate is 656 us where an S23 measures 1-3 ms. Far beyond that (the emulator's CSV of the
# 16-pixel block reads 434 ms against an estimate of 63 us) the figure is no phone's.
IMPLAUSIBLE_RATIO = 20.0
IMPLAUSIBLE_SLACK_US = 5000.0


def implausible(profile: Profile, manifest: ExportManifest | None) -> str | None:
    """Why a device latency cannot be the export's on a phone, when its estimate says so; None otherwise."""
    if manifest is None or profile.latency is None or not profile.is_device_latency:
        return None
    estimate = manifest.stage("estimate")
    if estimate is None:
        return None
    est_us = float(estimate.results.us)
    measured = profile.latency.median_us
    if est_us <= 0 or measured <= IMPLAUSIBLE_RATIO * est_us + IMPLAUSIBLE_SLACK_US:
        return None
    return (f"IMPLAUSIBLE as device latency: {measured:,.0f} us is {measured / est_us:,.0f}x the export's "
            f"{estimate.results.label} {est_us:,.0f} us (more than {IMPLAUSIBLE_RATIO:g}x + "
            f"{IMPLAUSIBLE_SLACK_US / 1000:g} ms); was it measured on the x86 HTP emulator or another model?")
