"""The user's QAIRT / QNN SDK: where it is, which version, and the files a phone run needs.

Layout (QAIRT 2.x): `bin/<target>/` tools, `lib/<target>/` libraries, and
`lib/hexagon-v<arch>/unsigned/` the HTP Skel that runs on the phone's Hexagon DSP; the
version is the `version:` line of `sdk.yaml` at the root (else the root's directory name,
`qairt/2.47.0.260601`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import PhoneError
from ..core.versions import same_release, short_version

HOST_TARGET = "x86_64-linux-clang"
PHONE_TARGET = "aarch64-android"
SDK_ENV = ("QNN_SDK_ROOT", "QAIRT_SDK_ROOT")

_VERSION_LINE = re.compile(r"^version:\s*['\"]?v?([0-9][0-9._]*)", re.MULTILINE)


@dataclass(frozen=True)
class QnnSdk:
    root: Path
    version: str | None  # as the SDK states it, e.g. "2.47.0.260601"

    @property
    def profile_viewer(self) -> Path:
        return self.root / "bin" / HOST_TARGET / "qnn-profile-viewer"

    @property
    def json_reader(self) -> Path | None:
        """QAIRT's JSON profiling reader, when this SDK has it (CSV otherwise)."""
        p = self.root / "lib" / HOST_TARGET / "libQnnJsonProfilingReader.so"
        return p if p.is_file() else None

    def phone_files(self, htp_arch: int) -> dict[str, Path]:
        """Device file name -> SDK file, for running a context binary on an HTP v`htp_arch` phone.

        libQnnHtpPrepare.so is not needed for a precompiled context, libQnnSystem.so is (it
        reads the context binary).
        """
        android = self.root / "lib" / PHONE_TARGET
        return {
            "qnn-net-run": self.root / "bin" / PHONE_TARGET / "qnn-net-run",
            "libQnnHtp.so": android / "libQnnHtp.so",
            "libQnnSystem.so": android / "libQnnSystem.so",
            f"libQnnHtpV{htp_arch}Stub.so": android / f"libQnnHtpV{htp_arch}Stub.so",
            f"libQnnHtpV{htp_arch}Skel.so": self.root / "lib" / f"hexagon-v{htp_arch}" / "unsigned" / f"libQnnHtpV{htp_arch}Skel.so",
        }

    def check_for_phone(self, htp_arch: int, soc_words: str) -> dict[str, Path]:
        """The phone files, or a PhoneError naming the first one missing."""
        if not self.profile_viewer.is_file():
            raise PhoneError(f"The QNN SDK at {self.root} has no host qnn-profile-viewer ({self.profile_viewer}).",
                             hint=f"Use a QAIRT SDK that includes the {HOST_TARGET} tools.")
        files = self.phone_files(htp_arch)
        for path in files.values():
            if not path.is_file():
                what = "Android" if PHONE_TARGET in path.parts else f"Hexagon v{htp_arch}"
                raise PhoneError(
                    f"The QNN SDK at {self.root} lacks {path.relative_to(self.root)} ({what} files for {soc_words}).",
                    hint="Use the full QAIRT SDK (it ships lib/aarch64-android and lib/hexagon-v*/unsigned).",
                )
        return files


def sdk_version(root: Path) -> str | None:
    yaml = root / "sdk.yaml"
    if yaml.is_file():
        m = _VERSION_LINE.search(yaml.read_text(errors="replace"))
        if m:
            return m.group(1)
    return root.name if short_version(root.name) else None


def find_sdk(explicit: Path | None = None) -> QnnSdk:
    """`--qnn-sdk DIR`, else $QNN_SDK_ROOT (or $QAIRT_SDK_ROOT)."""
    root = explicit
    where = "--qnn-sdk"
    if root is None:
        env = next((e for e in SDK_ENV if os.environ.get(e)), None)
        if env is None:
            raise PhoneError("No QNN SDK given for the phone run.",
                             hint="Set QNN_SDK_ROOT to your QAIRT SDK (e.g. ~/qairt/2.51.0.260929) or pass --qnn-sdk DIR.")
        root, where = Path(os.environ[env]), f"${env}"
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PhoneError(f"{where} {root} is not a directory.", hint="Point it at the root of a QAIRT SDK.")
    return QnnSdk(root.resolve(), sdk_version(root))


def check_version(sdk: QnnSdk, ep_sdk_version: str | None, export_dir: Path) -> None:
    """The SDK that runs a context binary must be the release that built it."""
    if not ep_sdk_version:
        return  # an export from before the compile stage recorded it: QNN itself will tell
    built = short_version(ep_sdk_version)
    if sdk.version is None:
        raise PhoneError(f"Cannot tell the version of the QNN SDK at {sdk.root} (no sdk.yaml).",
                         hint=f"Use the QAIRT {built} SDK, which compiled {export_dir}.")
    if built and not same_release(built, sdk.version):
        raise PhoneError(
            f"{export_dir} was compiled with QNN {built}, the SDK at {sdk.root} is {short_version(sdk.version)}.",
            hint=f"Use a QAIRT {built} SDK (--qnn-sdk DIR or QNN_SDK_ROOT): a context binary runs only with the release that built it.",
        )
