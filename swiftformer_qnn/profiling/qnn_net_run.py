"""Profile exports on a phone over adb with the user's QNN SDK: `qnn-net-run --retrieve_context`.

Per phone run (`PhoneSession`): the SDK's Android runtime and the HTP Stub/Skel for the
phone's Hexagon version go into one per-run directory under /data/local/tmp, each export's
context binary and sample input into a folder of it. Each export runs twice with
`--perf_profile burst`: N inferences at `basic` level for latency, N at `detailed` for per-op
cycles (per-op profiling inflates end-to-end time, so the two are never mixed). The profiling
logs are pulled, converted on the host with the SDK's `qnn-profile-viewer` (its JSON reader
when the SDK has it, CSV otherwise) and written as a `qnn-net-run` profile next to the raw
files. The directory on the phone is removed at the end, whether the run worked, failed or
was interrupted.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..core.errors import PhoneError, PhoneRunError, UsageError
from ..core.targets import SOCS, Soc, get_soc
from ..core.versions import short_version
from ..htp.record import CONTEXT_BINARY, CompileRecord
from ..measure.schema import Profile, TargetInfo
from .adb import Adb
from .exports import ExportSource
from .importers import ImportContext
from .importers.qnn_profile_viewer import viewer_profile
from .qnn_sdk import QnnSdk, check_version, find_sdk
from .qnn_viewer import ViewerReport, parse_viewer_csv, parse_viewer_json_text
from .raw import keep_raw, write_marker

PHONE_ROOT = "/data/local/tmp/swiftformer-qnn"
# Where fastrpc looks for Skels after ours (ours first, or the vendor's mismatched one loads).
ADSP_SYSTEM_DIRS = ("/vendor/dsp/cdsp", "/vendor/lib/rfsa/adsp", "/system/lib/rfsa/adsp", "/dsp")
PROFILE_LOG = "qnn-profiling-data_0.log"
RUN_TIMEOUT_S = 1800.0
VIEWER_TIMEOUT_S = 300.0
LEVELS = ("basic", "detailed")
# ro.board.platform code names, for phones whose ro.soc.model is empty (Android 11 and older).
BOARD_PLATFORMS = {"taro": "sm8450", "cape": "sm8475", "kalama": "sm8550", "pineapple": "sm8650", "sun": "sm8750"}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Phone:
    adb: Adb
    manufacturer: str
    model: str
    soc: Soc
    android: str | None

    @property
    def device_name(self) -> str:
        """`Samsung SM-S918B`: the name profiles carry (`TargetInfo.device`)."""
        maker = self.manufacturer[:1].upper() + self.manufacturer[1:]
        return f"{maker} {self.model}".strip() or self.adb.serial


def read_phone(adb: Adb) -> Phone:
    """Model, SoC and Android version as the phone reports them (getprop)."""
    props = {k: adb.getprop(k) for k in ("ro.product.manufacturer", "ro.product.model", "ro.soc.model",
                                         "ro.board.platform", "ro.build.version.release")}
    soc = None
    if props["ro.soc.model"]:
        with contextlib.suppress(UsageError):
            soc = get_soc(props["ro.soc.model"])
    if soc is None and props["ro.board.platform"].lower() in BOARD_PLATFORMS:
        soc = SOCS[BOARD_PLATFORMS[props["ro.board.platform"].lower()]]
    if soc is None:
        said = props["ro.soc.model"] or props["ro.board.platform"] or "nothing"
        known = ", ".join(f"{s.name} (HTP v{s.htp_arch})" for s in SOCS.values())
        raise PhoneError(f"Phone {adb.serial} reports SoC {said!r}, not a Snapdragon this tool knows.",
                         hint=f"Known: {known}.")
    return Phone(adb, props["ro.product.manufacturer"], props["ro.product.model"], soc,
                 props["ro.build.version.release"] or None)


@dataclass(frozen=True)
class PhoneProfile:
    profile: Profile
    profile_path: Path
    raw_dir: Path


def _net_run_script(run_dir: str, model_dir: str, level: str, runs: int, *, native_input: bool = False) -> str:
    """`native_input`: the binary takes uint8 (`export --io uint8-nhwc`) and the input files hold
    it as such; without the flag qnn-net-run reads float32 files and quantizes them itself."""
    adsp = ";".join((run_dir, *ADSP_SYSTEM_DIRS))
    argv = [
        "./qnn-net-run", "--backend", f"{run_dir}/libQnnHtp.so",
        "--retrieve_context", f"{model_dir}/model.bin",
        "--input_list", f"{model_dir}/input_list.txt",
        "--output_dir", f"{model_dir}/out_{level}",
        "--perf_profile", "burst", "--profiling_level", level,
        "--num_inferences", str(runs), "--keep_num_outputs", "1",
    ] + (["--use_native_input_files"] if native_input else [])
    q = shlex.quote
    return (f"cd {q(run_dir)} && export LD_LIBRARY_PATH={q(run_dir)}:$LD_LIBRARY_PATH"
            f" && export ADSP_LIBRARY_PATH={q(adsp)} && {shlex.join(argv)} 2>&1")


def _compiled(source: ExportSource) -> tuple[Path, CompileRecord]:
    rec = source.manifest.stage("compile")
    if rec is None or CONTEXT_BINARY not in rec.outputs:
        raise PhoneError(f"{source.directory} has no compiled context binary (compile/model.ctx_qnn.bin).",
                         hint="Export with the compile stage (swiftformer-qnn export without --until).")
    return source.manifest.artifact(source.directory, "compile", CONTEXT_BINARY), rec.results


class PhoneSession:
    """One phone, one SDK, one directory on the phone for the whole run (removed at the end)."""

    def __init__(self, phone: Phone, sdk: QnnSdk, files: dict[str, Path], out_dir: Path, runs: int, emit: Progress):
        self.phone, self.sdk, self.files = phone, sdk, files
        self.out_dir, self.runs, self.emit = Path(out_dir), runs, emit
        self.run_dir = f"{PHONE_ROOT}/{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"

    @classmethod
    @contextlib.contextmanager
    def open(cls, serial: str | None, sdk_dir: Path | None, sources: list[ExportSource], out_dir: Path,
             runs: int, emit: Progress) -> Iterator[PhoneSession]:
        """Check SDK, exports and phone (in that order, each before any work on the phone),
        then yield a session whose phone directory is removed when the block ends."""
        sdk = find_sdk(sdk_dir)
        for s in sources:
            _, results = _compiled(s)
            check_version(sdk, results.ep_sdk_version, s.directory)
        phone = read_phone(Adb.connect(serial))
        for s in sources:
            _, results = _compiled(s)
            if results.htp_arch != phone.soc.htp_arch:
                raise PhoneError(
                    f"{s.directory} was compiled for HTP v{results.htp_arch}, phone {phone.adb.serial} is a "
                    f"{phone.soc.marketing_name} ({phone.soc.name}, HTP v{phone.soc.htp_arch}).",
                    hint=f"Export for this phone (swiftformer-qnn export ... --soc {phone.soc.name}) and profile "
                         "that with --from DIR.")
        files = sdk.check_for_phone(phone.soc.htp_arch, f"{phone.soc.name}, HTP v{phone.soc.htp_arch}")
        session = cls(phone, sdk, files, out_dir, runs, emit)
        try:
            session._prepare()
            yield session
        finally:
            session._clean()

    def _prepare(self) -> None:
        self.emit(f"phone {self.phone.adb.serial} ({self.phone.device_name}, {self.phone.soc.marketing_name}): "
                  f"pushing QNN {short_version(self.sdk.version)} runtime and HTP v{self.phone.soc.htp_arch} libraries "
                  f"to {self.run_dir}")
        self._check(self.phone.adb.shell(f"mkdir -p {shlex.quote(self.run_dir)}"), "mkdir")
        for name, path in self.files.items():
            self.phone.adb.push(path, f"{self.run_dir}/{name}")
        self._check(self.phone.adb.shell(f"chmod 755 {shlex.quote(self.run_dir + '/qnn-net-run')}"), "chmod")

    def _clean(self) -> None:
        """Remove the run's directory on the phone (and the tool's folder if nothing else is in it)."""
        q = shlex.quote
        try:
            self.phone.adb.shell(f"rm -rf {q(self.run_dir)}; rmdir {q(PHONE_ROOT)} 2>/dev/null; true")
        except PhoneError as exc:  # the phone went away: say where the files are left
            self.emit(f"could not remove {self.run_dir} from phone {self.phone.adb.serial}: {exc.message}")

    def _check(self, res, what: str) -> None:
        if res.returncode != 0:
            raise PhoneError(f"`{what}` failed on phone {self.phone.adb.serial}: {res.last_lines(3)}")

    def profile(self, source: ExportSource, label: str, feeds: dict) -> PhoneProfile:
        """Run one export (basic, then detailed) and write its profile beside its raw files."""
        from .aihub_payload import profile_stem

        binary, _ = _compiled(source)
        qnn = short_version(self.sdk.version) or "unknown"
        stem = profile_stem(label, qnn, self.phone.device_name)
        raw_dir = self.out_dir / f"{stem}.raw"
        staging = self.out_dir / f".{stem}.raw.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            profile = self._run(source, label, binary, feeds, staging)
            files = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
            write_marker(staging, "phone-raw", f"qnn-net-run on {self.phone.device_name} ({self.phone.adb.serial}), "
                         f"swiftformer-qnn {__version__} profile phone", device_latency=True)
            keep_raw(staging, raw_dir)  # an earlier run's folder is replaced, a folder of the user's refused
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        profile = profile.model_copy(update={"provenance": profile.provenance.model_copy(update={
            "note": profile.provenance.note + " Raw files in " + raw_dir.name + "/: " + ", ".join(map(str, files)) + "."})})
        path = profile.save(self.out_dir / f"{stem}.profile.json")
        return PhoneProfile(profile, path, raw_dir)

    def _run(self, source: ExportSource, label: str, binary: Path, feeds: dict, raw: Path) -> Profile:
        import numpy as np

        adb, model_dir = self.phone.adb, f"{self.run_dir}/{label}"
        (x,) = feeds.values()
        # The binary's own input (`exports.emulator_feeds`): float32 NCHW, or uint8 NHWC with native I/O.
        native = source.native_input is not None
        np.ascontiguousarray(x, dtype=np.uint8 if native else np.float32).tofile(raw / "input.raw")
        (raw / "input_list.txt").write_text(f"{model_dir}/input.raw\n")
        self._check(adb.shell(f"mkdir -p {shlex.quote(model_dir)}"), "mkdir")
        self.emit(f"{label}: pushing the context binary ({binary.stat().st_size / 1e6:.1f} MB) and a sample input")
        adb.push(binary, f"{model_dir}/model.bin")
        adb.push(raw / "input.raw", f"{model_dir}/input.raw")
        adb.push(raw / "input_list.txt", f"{model_dir}/input_list.txt")
        reports: dict[str, ViewerReport] = {}
        for level in LEVELS:
            self.emit(f"{label}: qnn-net-run on the phone, {self.runs} inferences at profiling level {level}")
            res = adb.shell(_net_run_script(self.run_dir, model_dir, level, self.runs, native_input=native),
                            timeout=RUN_TIMEOUT_S)
            (raw / f"qnn-net-run-{level}.txt").write_text(res.output)
            if res.returncode != 0:
                raise PhoneRunError(
                    f"qnn-net-run failed on phone {adb.serial} (exit {res.returncode}) at {level} level: "
                    f"{res.last_lines()}",
                    hint=f"Keep the phone unlocked and check that the SDK's HTP v{self.phone.soc.htp_arch} "
                         "libraries are the ones that built the export.")
            (raw / level).mkdir()
            log_file = raw / level / PROFILE_LOG
            adb.pull(f"{model_dir}/out_{level}/{PROFILE_LOG}", log_file)
            if not log_file.is_file():
                raise PhoneRunError(f"qnn-net-run on phone {adb.serial} wrote no {PROFILE_LOG} at {level} level.")
            reports[level] = self._convert(log_file)
        ctx = ImportContext(export_dir=source.directory, model=source.model_info, model_path=source.model_path,
                            label=label, device=self.phone.device_name)  # the SDK's version: qnn_version= below
        soc = self.phone.soc
        target = TargetInfo(device=self.phone.device_name, chipset=soc.aihub_chipset, soc_model=soc.soc_model,
                            htp_arch=soc.htp_arch, os=f"Android {self.phone.android}" if self.phone.android else None)
        note = (f"Measured on phone {adb.serial} with the QAIRT SDK at {self.sdk.root}: qnn-net-run --retrieve_context "
                f"--perf_profile burst, {self.runs} inferences at profiling level basic (latency) and {self.runs} at "
                f"detailed (per-op cycles)")
        if native:
            note += f"; --use_native_input_files, fed {source.fed()}"
        note += "."
        return viewer_profile(reports["basic"], reports["detailed"], ctx, target=target, where=str(raw), note=note,
                              qnn_version=self.sdk.version)

    def _convert(self, log_file: Path) -> ViewerReport:
        """The SDK's qnn-profile-viewer on the host: JSON when it has the reader, else CSV."""
        viewer, reader = self.sdk.profile_viewer, self.sdk.json_reader
        if reader is not None:
            out = log_file.with_suffix(".json")
            argv = [str(viewer), "--input_log", str(log_file), "--reader", str(reader),
                    "--standardized_json_output", "--output", str(out)]
        else:
            out = log_file.with_suffix(".csv")
            argv = [str(viewer), "--input_log", str(log_file), "--output", str(out)]
        env = dict(os.environ)
        host_lib = str(self.sdk.root / "lib" / "x86_64-linux-clang")
        env["LD_LIBRARY_PATH"] = host_lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=VIEWER_TIMEOUT_S, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PhoneError(f"qnn-profile-viewer could not run ({exc}).", hint=f"Check {viewer}.") from None
        if done.returncode != 0 or not out.is_file():
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:]) or "(no output)"
            raise PhoneError(f"qnn-profile-viewer failed on {log_file.name} (exit {done.returncode}): {tail}")
        text = out.read_text(errors="replace")
        return parse_viewer_json_text(text, source=str(out)) if reader else parse_viewer_csv(text, source=str(out))
