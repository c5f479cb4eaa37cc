"""The known QNN toolchains: which onnxruntime-qnn release bundles which QNN SDK, the
onnxruntime that loads it, and parsing `--qnn` version lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from ..core.errors import UsageError
from ..core.versions import parse_version, same_release, short_version, version_key  # noqa: F401 (one parser: versions.py)


@dataclass(frozen=True)
class QnnToolchainSpec:
    """One QNN SDK as onnxruntime-qnn ships it, and the onnxruntime that loads that release."""

    qnn_version: str  # QNN SDK bundled in the wheel (`onnxruntime_qnn.build_and_package_info.qnn_version`)
    onnxruntime_qnn: str  # the onnxruntime-qnn release bundling it
    onnxruntime: str  # an onnxruntime release verified to load it (tests/test_toolchains.py)

    @property
    def name(self) -> str:
        return f"qnn-{self.qnn_version}"

    @property
    def major_minor(self) -> str:
        return ".".join(self.qnn_version.split(".")[:2])

    def requirements(self) -> list[str]:
        return [
            f"onnxruntime-qnn=={self.onnxruntime_qnn}",
            f"onnxruntime=={self.onnxruntime}",
            *COMMON_REQUIREMENTS,
        ]


# The one place pairing each onnxruntime-qnn release with an onnxruntime that loads it.
# onnxruntime-qnn is a plugin EP: a too-new onnxruntime refuses an old plugin
# (onnxruntime 1.31.1 rejects onnxruntime-qnn 2.3.0 with `ort_version_supported=0`), so
# 2.3.0 gets the newest onnxruntime found to load it. Every pair is installed and loaded by
# a slow test; the main environment's pair (pyproject.toml) is checked by a fast one.
TOOLCHAINS: tuple[QnnToolchainSpec, ...] = (
    QnnToolchainSpec("2.47.0", "2.3.0", "1.25.1"),
    QnnToolchainSpec("2.48.40", "2.4.0", "1.31.1"),
    QnnToolchainSpec("2.49.40", "2.5.0", "1.31.1"),
    QnnToolchainSpec("2.50.40", "2.6.0", "1.31.1"),
    QnnToolchainSpec("2.51.0", "2.7.0", "1.31.1"),
)

# onnxruntime releases found NOT to load an onnxruntime-qnn release (a slow test shows the
# refusal is caught by verification, so such an environment is never marked ready).
KNOWN_REFUSALS: dict[str, tuple[str, ...]] = {"2.3.0": ("1.31.1",)}

# What the worker imports besides onnxruntime(-qnn) (pydantic: it writes the CompileRecord):
# the main environment's own releases (constraints.txt pins the tested ones), so toolchains
# differ only in their onnxruntime pair.
COMMON_REQUIREMENTS: tuple[str, ...] = tuple(f"{dist}=={version(dist)}" for dist in ("numpy", "onnx", "pydantic"))


def known_versions() -> str:
    return ", ".join(s.qnn_version for s in TOOLCHAINS)


def split_versions(value: str | Sequence[str]) -> list[str]:
    """`"2.47,2.51"` or `["2.49", "2.48,2.47"]` -> the stripped, non-empty tokens, in order."""
    items = [value] if isinstance(value, str) else list(value)
    return [t.strip() for item in items for t in str(item).split(",") if t.strip()]


def get_toolchain_spec(text: str) -> QnnToolchainSpec:
    """Resolve "2.49", "2.49.40", "v2.49.40" or an EPContext `ep_sdk_version` like
    "v2.51.0.260929181845" to its toolchain."""
    for spec in TOOLCHAINS:
        if same_release(text, spec.qnn_version):
            return spec
    raise UsageError(f"Unknown QNN version {text.strip()!r}.", hint=f"Known: {known_versions()} (or 'all').")


def parse_qnn_versions(value: str | Sequence[str]) -> list[QnnToolchainSpec]:
    """Parse `--qnn 2.47,2.51` / `all` (or a list of such strings) into toolchains, oldest first."""
    tokens = split_versions(value)
    if not tokens:
        raise UsageError("No QNN version given.", hint=f"Known: {known_versions()} (or 'all').")
    chosen: dict[str, QnnToolchainSpec] = {}
    for token in tokens:
        if token.lower() == "all":
            chosen.update((s.qnn_version, s) for s in TOOLCHAINS)
        else:
            spec = get_toolchain_spec(token)
            chosen[spec.qnn_version] = spec
    return sorted(chosen.values(), key=lambda s: version_key(s.qnn_version))


def _installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main_environment_spec() -> QnnToolchainSpec | None:
    """The toolchain the main environment provides (its own onnxruntime-qnn), if any."""
    mine = _installed("onnxruntime-qnn")
    if mine is None:
        return None
    for spec in TOOLCHAINS:
        if spec.onnxruntime_qnn == mine:
            return spec
    return None
