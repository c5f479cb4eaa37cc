"""What `--device` means: an AI Hub device (by name, alias or chipset) or the local HTP emulator.

Pure: no network. Resolving against the devices AI Hub actually offers happens in
`aihub.py`; here a user's spelling ("s23 ultra", "8gen2", "qualcomm-snapdragon-8gen2")
becomes the exact name AI Hub matches on ("Samsung Galaxy S23 Ultra").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from ..core.errors import UsageError
from ..core.targets import DEFAULT_SOC, SOCS, Soc, get_soc


class Backend(str, Enum):
    AIHUB = "aihub"  # a real phone through Qualcomm AI Hub (needs a token)
    EMULATOR = "emulator"  # onnxruntime-qnn's x86 HTP emulator (cycles, not device latency)
    ADB = "adb"  # the user's own phone over adb, with the user's QNN SDK (qnn-net-run)
    ESTIMATE = "estimate"  # QNN's HTP performance estimator for a proxy SoC (estimated, not device latency)


@dataclass(frozen=True)
class HubDevice:
    """A device AI Hub offers, as its `hub.Device(name)` spells it."""

    name: str
    soc: str  # key into targets.SOCS
    aliases: tuple[str, ...] = ()


# AI Hub's names for the phones this tool cares about. The chipset's reference phone (the
# Soc's `example_device`) comes first so a chipset resolves to it.
HUB_DEVICES: tuple[HubDevice, ...] = (
    HubDevice("Samsung Galaxy S23 Ultra", "sm8550", ("s23u",)),
    HubDevice("Samsung Galaxy S23", "sm8550"),
    HubDevice("Samsung Galaxy S23+", "sm8550", ("s23 plus",)),
    HubDevice("Samsung Galaxy S22 Ultra 5G", "sm8450", ("s22 ultra", "galaxy s22 ultra", "s22u")),
    HubDevice("Samsung Galaxy S24 Ultra", "sm8650", ("s24u",)),
    HubDevice("Samsung Galaxy S24", "sm8650"),
    HubDevice("Samsung Galaxy S25 Ultra", "sm8750", ("s25u",)),
)

EMULATOR_NAMES = ("emulator", "local", "htp-emulator", "htp emulator", "x86")
# The device every emulator profile names (`TargetInfo.device`), and `--device emulator` shows.
EMULATOR_DEVICE = "HTP emulator (x86_64)"
ESTIMATE_NAMES = ("estimate", "estimator", "hextimate")
ESTIMATE_DEVICE = "QNN Hextimate estimator (x86_64)"  # what `--device estimate` shows; profiles name the proxy


@dataclass(frozen=True)
class DeviceTarget:
    """Where to profile. For AI Hub, `name` and/or `attributes` go into `hub.Device(...)`."""

    backend: Backend
    query: str  # what the user typed
    name: str | None = None  # AI Hub device name, e.g. "Samsung Galaxy S23 Ultra"
    soc: Soc | None = None
    attributes: tuple[str, ...] = field(default_factory=tuple)  # e.g. ("chipset:qualcomm-snapdragon-8gen2",)
    known: bool = True  # False when `name` was passed through unrecognised (AI Hub decides)

    @property
    def chipset(self) -> str | None:
        return self.soc.aihub_chipset if self.soc else None

    @property
    def display_name(self) -> str:
        if self.backend is Backend.EMULATOR:
            return EMULATOR_DEVICE
        if self.backend is Backend.ESTIMATE:
            return ESTIMATE_DEVICE
        if self.backend is Backend.ADB:
            return f"phone over adb {self.name}" if self.name else "phone over adb"
        return self.name or ", ".join(self.attributes)

    @property
    def slug(self) -> str:
        return device_slug(self.display_name)


def _key(text: str) -> str:
    """Spelling-insensitive key: lower case, no spaces, dashes, underscores or dots."""
    return re.sub(r"[\s\-_.]+", "", text.lower())


def device_slug(name: str) -> str:
    """`Samsung Galaxy S23 Ultra` -> `samsung-galaxy-s23-ultra` (for file names)."""
    slug = re.sub(r"[^a-z0-9+]+", "-", name.lower()).strip("-")
    return slug.replace("+", "plus") or "device"


def _device_keys(dev: HubDevice) -> set[str]:
    name = dev.name.lower()
    keys = {name, *dev.aliases}
    if name.startswith("samsung "):
        keys.add(name[len("samsung ") :])  # "galaxy s23 ultra"
        if name.startswith("samsung galaxy "):
            keys.add(name[len("samsung galaxy ") :])  # "s23 ultra"
    return {_key(k) for k in keys}


_BY_KEY: dict[str, HubDevice] = {}
for _dev in reversed(HUB_DEVICES):  # earlier entries win on a shared alias
    for _k in _device_keys(_dev):
        _BY_KEY[_k] = _dev


def _as_soc(query: str) -> Soc | None:
    """`sm8550`, `8gen2`, `Snapdragon 8 Gen 2`, `qualcomm-snapdragon-8gen2`, `chipset:...` -> Soc."""
    text = query.lower().strip()
    text = text.removeprefix("chipset:").replace("qualcomm", "")
    if not text.strip(" -_"):
        return None
    try:
        return get_soc(text)
    except UsageError:
        pass
    # AI Hub's chipset attribute values, which get_soc's spelling rules do not all cover.
    for soc in SOCS.values():
        if soc.aihub_chipset and _key(soc.aihub_chipset) == _key(query.lower().removeprefix("chipset:")):
            return soc
    return None


def resolve_device(query: str) -> DeviceTarget:
    """Map a `--device` value to a target. Unknown names pass through: AI Hub has more
    devices than this table, and `aihub.py` checks the name against `hub.get_devices()`."""
    text = query.strip()
    if not text:
        raise UsageError("--device is empty.", hint='Try --device "Galaxy S23 Ultra", --device sm8550 or --device emulator.')
    if text.lower() == "adb" or text.lower().startswith("adb:"):
        serial = text[4:].strip() if ":" in text else None
        if serial == "":
            raise UsageError("--device adb: names no serial.", hint="Use --device adb, or --device adb:SERIAL (see `adb devices`).")
        return DeviceTarget(Backend.ADB, query, name=serial)
    if _key(text) in {_key(n) for n in EMULATOR_NAMES}:
        return DeviceTarget(Backend.EMULATOR, query, soc=SOCS[DEFAULT_SOC])
    if _key(text) in {_key(n) for n in ESTIMATE_NAMES}:
        return DeviceTarget(Backend.ESTIMATE, query, soc=SOCS[DEFAULT_SOC])
    dev = _BY_KEY.get(_key(text))
    if dev is not None:
        return DeviceTarget(Backend.AIHUB, query, name=dev.name, soc=SOCS[dev.soc])
    soc = _as_soc(text)
    if soc is not None:
        if soc.example_device:
            # A chipset is profiled on its reference phone, so repeated runs land on the
            # same device model (AI Hub would otherwise pick any phone with that chipset).
            return DeviceTarget(Backend.AIHUB, query, name=soc.example_device, soc=soc)
        if soc.aihub_chipset:
            return DeviceTarget(Backend.AIHUB, query, soc=soc, attributes=(f"chipset:{soc.aihub_chipset}",))
    return DeviceTarget(Backend.AIHUB, query, name=text, known=False)


def is_list_request(query: str | None) -> bool:
    return query is not None and _key(query) in {"list", "ls", "?"}


def known_aliases() -> dict[str, list[str]]:
    """AI Hub device name -> the spellings that resolve to it (for `--device list`)."""
    out: dict[str, list[str]] = {}
    for dev in HUB_DEVICES:
        soc = SOCS[dev.soc]
        spellings = [a for a in (dev.name.removeprefix("Samsung "), *dev.aliases)]
        if soc.example_device == dev.name:
            spellings += [soc.name, soc.marketing_name]
            if soc.aihub_chipset:
                spellings.append(soc.aihub_chipset)
        out[dev.name] = spellings
    return out
