"""The adb process boundary: which phone, and push / pull / shell on it.

Every call runs the user's `adb` executable (Android platform-tools) as a subprocess; nothing
here knows about QNN. A Ctrl-C while adb runs stops that adb (politely first, so adb can end
the command on the phone) and is raised again for the caller's cleanup.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import PhoneError

log = logging.getLogger(__name__)

ADB_TIMEOUT_S = 120.0  # push/pull/getprop; a qnn-net-run shell gets its own timeout


@dataclass(frozen=True)
class AdbDevice:
    serial: str
    state: str  # "device", "unauthorized", "offline", "no permissions ..."


@dataclass(frozen=True)
class AdbResult:
    returncode: int
    output: str  # stdout and stderr, interleaved as adb printed them

    def last_lines(self, n: int = 8) -> str:
        lines = [ln.strip() for ln in self.output.splitlines() if ln.strip()]
        return " | ".join(lines[-n:]) or "(no output)"


def find_adb() -> str:
    """The adb executable: on PATH, else in $ANDROID_HOME/platform-tools."""
    found = shutil.which("adb")
    if found:
        return found
    for env in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        if os.environ.get(env):
            candidate = Path(os.environ[env]) / "platform-tools" / "adb"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise PhoneError(
        "adb was not found (not on PATH, nor in $ANDROID_HOME/platform-tools).",
        hint="Install Android platform-tools and put adb on PATH.",
    )


def _run(argv: list[str], timeout: float | None) -> AdbResult:
    """Run one adb command; on Ctrl-C stop it (SIGTERM, then SIGKILL) and raise again."""
    log.debug("adb: %s", shlex.join(argv))
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise PhoneError(f"Cannot run {argv[0]}: {exc.strerror}.", hint="Check the adb installation.") from None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise PhoneError(
            f"`{shlex.join(argv[1:])[:200]}` took longer than {timeout:g} s.",
            hint="Is the phone still connected and awake?",
        ) from None
    except BaseException:  # Ctrl-C: end adb (and with it the command on the phone) first
        _stop(proc)
        raise
    return AdbResult(proc.returncode, out.decode("utf-8", errors="replace"))


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def list_devices(adb: str) -> list[AdbDevice]:
    """`adb devices`: every attached device and its state."""
    res = _run([adb, "devices"], ADB_TIMEOUT_S)
    if res.returncode != 0:
        raise PhoneError(f"`adb devices` failed: {res.last_lines()}", hint="Try `adb kill-server` and replug the phone.")
    devices = []
    for line in res.output.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue  # header, and "* daemon started successfully *"
        serial, _, state = line.partition("\t")
        if state:
            devices.append(AdbDevice(serial.strip(), state.strip()))
    return devices


def _usable(device: AdbDevice) -> AdbDevice:
    if device.state == "device":
        return device
    if device.state == "unauthorized":
        raise PhoneError(
            f"Phone {device.serial} has not authorized this computer for USB debugging.",
            hint="Unlock the phone and accept the 'Allow USB debugging?' prompt, then rerun.",
        )
    raise PhoneError(
        f"Phone {device.serial} is {device.state}.", hint="Replug the phone (or `adb reconnect`) and rerun."
    )


class Adb:
    """One phone, by serial: every command goes to it with `adb -s SERIAL`."""

    def __init__(self, executable: str, serial: str):
        self.executable = executable
        self.serial = serial

    @classmethod
    def connect(cls, serial: str | None = None) -> Adb:
        """The phone `serial` names, or the only one attached; a PhoneError otherwise."""
        adb = find_adb()
        devices = list_devices(adb)
        if serial:
            match = next((d for d in devices if d.serial == serial), None)
            if match is None:
                listed = ", ".join(d.serial for d in devices) or "none"
                raise PhoneError(f"No phone with serial {serial} is attached (adb devices lists: {listed}).",
                                 hint="Check the serial with `adb devices`.")
            return cls(adb, _usable(match).serial)
        if not devices:
            raise PhoneError("No phone is attached (adb devices lists none).",
                             hint="Connect the phone by USB with USB debugging enabled in Developer options.")
        if len(devices) > 1:
            listed = ", ".join(f"{d.serial} ({d.state})" for d in devices)
            raise PhoneError(f"{len(devices)} phones are attached: {listed}.",
                             hint=f"Pick one with --serial, e.g. --serial {devices[0].serial}.")
        return cls(adb, _usable(devices[0]).serial)

    def _argv(self, *args: str) -> list[str]:
        return [self.executable, "-s", self.serial, *args]

    def shell(self, script: str, *, timeout: float | None = ADB_TIMEOUT_S) -> AdbResult:
        """Run `script` in the phone's shell; adb returns its exit status."""
        return _run(self._argv("shell", script), timeout)

    def getprop(self, key: str) -> str:
        res = self.shell(f"getprop {shlex.quote(key)}")
        return res.output.strip() if res.returncode == 0 else ""

    def push(self, local: Path, remote: str) -> None:
        res = _run(self._argv("push", str(local), remote), ADB_TIMEOUT_S * 5)
        if res.returncode != 0:
            raise PhoneError(f"adb push {Path(local).name} to {remote} failed: {res.last_lines(3)}",
                             hint="Is there space on the phone (/data/local/tmp)?")

    def pull(self, remote: str, local: Path) -> None:
        res = _run(self._argv("pull", remote, str(local)), ADB_TIMEOUT_S * 5)
        if res.returncode != 0:
            raise PhoneError(f"adb pull {remote} failed: {res.last_lines(3)}")

