"""QNN / QAIRT version strings, parsed once.

Qualcomm writes one release many ways: `2.51` (a `--qairt_version` or `--qnn` value),
`2.51.0`, `v2.51.0.260929181845` (an EPContext node's `ep_sdk_version`: a build stamp after
the patch), `2.42.0.251225135753_193295` (AI Hub's QAIRT strings: a stamp and a build number
after `_`), `qnn-2.49.40` (our toolchain names). Every one goes through `parse_qnn_version`,
which hands the normalised text to `packaging.version.Version` (the `_` build number becomes
a local label), so comparisons are numeric ("2.5" is not "2.51").

The release is major.minor[.patch]; anything after the patch is a build and never part of
the release a user names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

# `--qnn` / `--qairt_version` words that name no version: AI Hub resolves them.
VERSION_TAGS = ("default", "latest")

# Compiled-model metadata keys, newest first: QAIRT-era binaries carry QAIRT_SDK_VERSION.
SDK_METADATA_KEYS = ("QAIRT_SDK_VERSION", "QNN_SDK_VERSION")

_PREFIX = re.compile(r"^(?:qairt|qnn)[-_ ]?", re.IGNORECASE)


@dataclass(frozen=True)
class QnnVersion:
    """One parsed version: `release` (major, minor[, patch]) and the `build` after it, if any."""

    text: str  # as written
    release: tuple[int, ...]  # 2 or 3 numbers
    build: str | None = None  # "260929181845", "251225135753_193295"

    @property
    def short(self) -> str:
        """The release as a user writes it ("2.51.0", or "2.51" when no patch was given)."""
        return ".".join(map(str, self.release))

    @property
    def key(self) -> tuple[int, ...]:
        """Numeric sort key over release and build stamp ("2.9" < "2.17" < "2.51.0")."""
        stamp = tuple(int(p) for p in re.findall(r"\d+", self.build or ""))
        return self.release + stamp

    def names(self, actual: QnnVersion) -> bool:
        """Whether this (requested) version names the release `actual` is: major.minor names
        a release; a patch must match too; builds are ignored."""
        return actual.release[: len(self.release)] == self.release


def parse_qnn_version(text: Any) -> QnnVersion | None:
    """Any QNN/QAIRT version string -> QnnVersion; None when it is no dotted version
    (at least major.minor), e.g. `latest`, `default`, `2` or `None`."""
    if text is None:
        return None
    raw = str(text).strip()
    core = _PREFIX.sub("", raw).replace("_", "+", 1)  # AI Hub's `_193295` -> local label
    try:
        v = Version(core)
    except InvalidVersion:
        return None
    if v.epoch or v.pre or v.post or v.dev or len(v.release) < 2 or not re.match(r"^v?\d", core, re.IGNORECASE):
        return None
    build_parts = [str(p) for p in v.release[3:]]
    if v.local:
        build_parts = ["_".join([*build_parts, v.local])] if build_parts else [v.local]
    return QnnVersion(text=raw, release=tuple(v.release[:3]), build=".".join(build_parts) or None)


def parse_version(text: Any) -> tuple[int, ...] | None:
    """All the numbers of a version (release, then build stamp); None if not a version."""
    parsed = parse_qnn_version(text)
    return parsed.key if parsed else None


def version_key(text: Any) -> tuple[int, ...]:
    """Numeric sort key; () for text that is no version (sorts first)."""
    return parse_version(text) or ()


def short_version(text: Any) -> str | None:
    """major.minor[.patch] without a build ("2.42.0.251225135753_193295" -> "2.42.0")."""
    parsed = parse_qnn_version(text)
    return parsed.short if parsed else None


def same_release(requested: Any, actual: Any) -> bool:
    """Whether `requested` ("2.51", "2.51.0") names the release `actual` ("v2.51.0.2609...") is."""
    want, have = parse_qnn_version(requested), parse_qnn_version(actual)
    return bool(want and have and want.names(have))


def is_version_tag(text: Any) -> bool:
    """`default` / `latest`: words AI Hub resolves to a version, not versions."""
    return str(text).strip().lower() in VERSION_TAGS


def sdk_version_from_metadata(metadata: Mapping[Any, Any] | None) -> str | None:
    """The SDK version a compiled model's metadata records (QAIRT_SDK_VERSION, else
    QNN_SDK_VERSION). Keys may be the client's enum members or plain strings."""
    named = {getattr(k, "name", str(k)): v for k, v in (metadata or {}).items()}
    for key in SDK_METADATA_KEYS:
        if named.get(key):
            return str(named[key])
    return None
