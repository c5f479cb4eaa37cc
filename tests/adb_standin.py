"""Stand-ins at the process boundary of `profile phone`: `adb`, the phone's `qnn-net-run`
and the SDK's host `qnn-profile-viewer`, each a real executable the tool runs as a subprocess.

Shaped after Android platform-tools and QAIRT as QAIRT's public docs and
scripts use them, never after our code:

* `adb [-s SERIAL] devices | shell CMD | push LOCAL REMOTE | pull REMOTE LOCAL`. The phone is a
  directory (`<home>/phones/<serial>/`) standing for its file system; `shell` runs CMD with the
  host's `sh` in it (device paths under /data mapped there), answers `getprop` from the phone's
  properties, and returns the command's exit status as adb's shell protocol does. Ending adb
  (SIGTERM/SIGINT) ends the command on the phone, as closing an adb shell does.
* `qnn-net-run` (pushed to the phone from the stand-in SDK): checks what a real phone checks
  (backend, Stub and Skel for the phone's Hexagon version on LD_LIBRARY_PATH and
  ADSP_LIBRARY_PATH, the context file, the input list) and writes `<output_dir>/
  qnn-profiling-data_0.log` and `Result_0/`; or fails, or hangs, as the test configures.
* `qnn-profile-viewer`: reads that log and writes the documented text / CSV / JSON
  (`qnn_viewer_formats`).

Every invocation is appended to `<home>/commands.jsonl` (argv as the program received it,
device paths as the phone sees them), so tests assert on real command lines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HOME_ENV = "ADB_STANDIN_HOME"
LOG_MAGIC = b"QNNPROF\x00"  # the stand-in's "binary" profiling log: magic + JSON
TESTS = Path(__file__).resolve().parent
S23_ULTRA = {
    "ro.product.manufacturer": "samsung",
    "ro.product.model": "SM-S918B",
    "ro.soc.model": "SM8550",
    "ro.board.platform": "kalama",
    "ro.build.version.release": "14",
}


# --- test side -----------------------------------------------------------------------------


class StandIn:
    """One stand-in world: phones, the `adb` on PATH, the command log."""

    def __init__(self, home: Path):
        self.home = Path(home)
        (self.home / "bin").mkdir(parents=True, exist_ok=True)
        self.config = {"phones": [], "qnn_net_run": {"mode": "ok", "ops": [], "latency_us": 2400.0}}
        write_script(self.home / "bin" / "adb", "adb_main")
        self.save()

    def add_phone(self, serial: str, state: str = "device", props: dict | None = None) -> Path:
        self.config["phones"].append({"serial": serial, "state": state, "props": props or dict(S23_ULTRA)})
        root = self.phone_root(serial)
        (root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
        self.save()
        return root

    def phone_root(self, serial: str) -> Path:
        return self.home / "phones" / serial

    def set_run(self, **kw) -> None:
        self.config["qnn_net_run"].update(kw)
        self.save()

    def save(self) -> None:
        (self.home / "config.json").write_text(json.dumps(self.config, indent=1))

    def env(self) -> dict[str, str]:
        return {HOME_ENV: str(self.home), "PATH": f"{self.home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    def commands(self, program: str | None = None) -> list[dict]:
        log = self.home / "commands.jsonl"
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [r for r in rows if program is None or r["program"] == program]

    def files_on(self, serial: str) -> list[str]:
        """Every file and directory under the phone's /data/local/tmp (device paths)."""
        root = self.phone_root(serial)
        tmp = root / "data" / "local" / "tmp"
        return sorted("/" + str(p.relative_to(root)) for p in tmp.rglob("*"))


def write_script(path: Path, entry: str) -> Path:
    """An executable that runs `adb_standin.<entry>()` with this interpreter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                    f"import adb_standin\nadb_standin.{entry}()\n")
    path.chmod(0o755)
    return path


def make_sdk(root: Path, *, version: str = "2.51.0.260929", archs=(73,), json_reader: bool = True,
             android: bool = True) -> Path:
    """A QAIRT SDK tree: sdk.yaml, host qnn-profile-viewer (+ JSON reader), Android
    qnn-net-run and libraries, Hexagon Skels for `archs`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "sdk.yaml").write_text(f"name: qairt\nversion: {version}\n")
    write_script(root / "bin" / "x86_64-linux-clang" / "qnn-profile-viewer", "profile_viewer_main")
    host = root / "lib" / "x86_64-linux-clang"
    host.mkdir(parents=True)
    (host / "libQnnHtp.so").write_bytes(b"\x7fELF host")
    if json_reader:
        (host / "libQnnJsonProfilingReader.so").write_bytes(b"\x7fELF json reader")
    if android:
        write_script(root / "bin" / "aarch64-android" / "qnn-net-run", "qnn_net_run_main")
        lib = root / "lib" / "aarch64-android"
        lib.mkdir(parents=True)
        for name in ("libQnnHtp.so", "libQnnSystem.so", "libQnnHtpPrepare.so", "libQnnHtpNetRunExtensions.so"):
            (lib / name).write_bytes(b"\x7fELF aarch64 " + name.encode())
        for a in archs:
            (lib / f"libQnnHtpV{a}Stub.so").write_bytes(b"\x7fELF aarch64 stub")
    for a in archs:
        skel = root / "lib" / f"hexagon-v{a}" / "unsigned" / f"libQnnHtpV{a}Skel.so"
        skel.parent.mkdir(parents=True)
        skel.write_bytes(b"\x7fELF hexagon skel")
    return root


# --- executable side -----------------------------------------------------------------------


def _home() -> Path:
    return Path(os.environ[HOME_ENV])


def _config() -> dict:
    return json.loads((_home() / "config.json").read_text())


def _record(program: str, argv: list[str], **extra) -> None:
    with (_home() / "commands.jsonl").open("a") as f:
        f.write(json.dumps({"program": program, "argv": argv, **extra}) + "\n")


def _device_path(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _to_host(root: Path, script: str) -> str:
    return re.sub(r"(?<![\w./-])/data/", f"{root}/data/", script)


def adb_main() -> None:
    args = sys.argv[1:]
    _record("adb", list(args))
    serial = None
    while args and args[0] in ("-s", "-d", "-e", "-t"):
        flag = args.pop(0)
        if flag in ("-s", "-t"):
            serial = args.pop(0)
    if not args:
        sys.exit("adb: no command")
    phones = _config()["phones"]
    if args[0] == "devices":
        print("List of devices attached")
        for p in phones:
            print(f"{p['serial']}\t{p['state']}")
        print()
        return
    if serial is None:
        if not phones:
            sys.exit("adb: no devices/emulators found")
        if len(phones) > 1:
            sys.exit("adb: more than one device/emulator")
        phone = phones[0]
    else:
        phone = next((p for p in phones if p["serial"] == serial), None)
        if phone is None:
            sys.exit(f"adb: device '{serial}' not found")
    if phone["state"] == "unauthorized":
        sys.exit("adb: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                 "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on your device.")
    root = _home() / "phones" / phone["serial"]
    cmd, rest = args[0], args[1:]
    if cmd == "shell":
        sys.exit(_shell(root, phone, " ".join(rest)))
    if cmd == "push":
        *sources, dest = rest
        for src in sources:
            target = _device_path(root, dest)
            if dest.endswith("/") or target.is_dir():
                target = target / Path(src).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target)  # adb push keeps the file's mode bits
            print(f"{src}: 1 file pushed, 0 skipped. 38.2 MB/s ({target.stat().st_size} bytes in 0.001s)")
        return
    if cmd == "pull":
        src, dest = rest
        source = _device_path(root, src)
        if not source.exists():
            sys.exit(f"adb: error: failed to stat remote object '{src}': No such file or directory")
        target = Path(dest)
        if target.is_dir():
            target = target / source.name
        shutil.copy(source, target)
        print(f"{src}: 1 file pulled, 0 skipped. 41.0 MB/s ({target.stat().st_size} bytes in 0.001s)")
        return
    sys.exit(f"adb: unknown command {cmd}")


def _shell(root: Path, phone: dict, script: str) -> int:
    m = re.fullmatch(r"\s*getprop\s+'?([\w.]+)'?\s*", script)
    if m:
        print(phone["props"].get(m.group(1), ""))
        return 0
    env = dict(os.environ, ADB_STANDIN_PHONE=phone["serial"], ADB_STANDIN_PHONE_ROOT=str(root))
    child = subprocess.Popen(["sh", "-c", _to_host(root, script)], cwd=root, env=env, start_new_session=True)

    def end(signum, frame):  # adb ended: the shell on the phone goes with it
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _record("adb-ended", [str(signum)])
        os._exit(128 + signum)  # not child.wait(): the interrupted wait holds Popen's lock

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, end)
    return child.wait()


def qnn_net_run_main() -> None:
    import argparse

    root = Path(os.environ["ADB_STANDIN_PHONE_ROOT"])
    to_device = lambda s: s.replace(str(root), "")  # noqa: E731
    argv = [to_device(a) for a in sys.argv[1:]]
    _record("qnn-net-run", argv, cwd=to_device(os.getcwd()),
            env={k: to_device(os.environ.get(k, "")) for k in ("LD_LIBRARY_PATH", "ADSP_LIBRARY_PATH")})
    p = argparse.ArgumentParser(prog="qnn-net-run")
    for opt in ("--backend", "--retrieve_context", "--model", "--input_list", "--output_dir", "--perf_profile",
                "--profiling_level", "--num_inferences", "--keep_num_outputs", "--config_file", "--log_level"):
        p.add_argument(opt)
    # Input files in the graph's own data type (uint8 for a quantized input) rather than float32.
    for flag in ("--use_native_input_files", "--use_native_output_files"):
        p.add_argument(flag, action="store_true")
    a = p.parse_args()
    cfg = _config()
    phone = next(ph for ph in cfg["phones"] if ph["serial"] == os.environ["ADB_STANDIN_PHONE"])
    props = phone["props"]
    arch = {"SM8450": 69, "SM8475": 69, "SM8550": 73, "SM8650": 75, "SM8750": 79, "taro": 69, "cape": 69,
            "kalama": 73, "pineapple": 75, "sun": 79}[props["ro.soc.model"] or props["ro.board.platform"]]
    run = cfg["qnn_net_run"]

    def fail(*lines: str) -> None:
        print("qnn-net-run pid:4242")
        for line in lines:
            print(line)
        sys.exit(1)

    if a.retrieve_context and a.model:
        fail("--retrieve_context and --model are mutually exclusive")
    if not a.backend or not Path(a.backend).is_file():
        fail(f'<E> Unable to load backend. dlerror(): dlopen failed: library "{a.backend}" not found')
    lib_dirs = [Path(d) for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    for lib in ("libQnnSystem.so", f"libQnnHtpV{arch}Stub.so"):
        if not any((d / lib).is_file() for d in lib_dirs):
            fail(f'<E> dlopen failed: library "{lib}" not found')
    skel_dirs = [Path(d) for d in os.environ.get("ADSP_LIBRARY_PATH", "").split(";") if d]
    if not any((d / f"libQnnHtpV{arch}Skel.so").is_file() for d in skel_dirs):
        fail("<E> DspTransport.openSession qnn_open failed, 0x80000406",
             "<E> Failed to create device: 14001", "<E> QnnDevice_create failed with error: invalid config")
    if not a.retrieve_context or not Path(a.retrieve_context).is_file():
        fail(f"<E> Could not open context binary {a.retrieve_context}")
    # The list names files as the phone sees them.
    inputs = [_device_path(root, ln.split(":=")[-1]) for ln in Path(a.input_list).read_text().split()] if a.input_list else []
    if not inputs or not all(i.is_file() for i in inputs):
        fail(f"<E> Could not read input list {a.input_list}")
    # What the phone was given, kept on the host (the run's directory on the phone is removed).
    received = _home() / "received"
    received.mkdir(exist_ok=True)
    for i in inputs:
        kept = received / f"{len(list(received.iterdir()))}-{i.name}"
        shutil.copyfile(i, kept)
        _record("qnn-net-run input", [str(i).replace(str(root), "")], kept=str(kept), bytes=i.stat().st_size)
    if run["mode"] == "fail":
        fail("<W> Initializing HtpProvider", "<E> Graph execution failed: 1002",
             "<E> Failed to execute graph: QNNExecutionProvider_QNNExecutionProvider_1_0")
    if run["mode"] == "hang":
        (_home() / "started").write_text(str(os.getpid()))
        time.sleep(120)
    sys.path.insert(0, str(TESTS))
    from qnn_viewer_formats import inferences_of

    n = int(a.num_inferences or 1)
    detailed = a.profiling_level == "detailed"
    # Per-op profiling inflates end-to-end time on a real phone; the stand-in does too.
    infs = inferences_of([tuple(op) for op in run["ops"]] if detailed else [], n,
                         latency_us=run["latency_us"] * (1.3 if detailed else 1.0))
    out = Path(a.output_dir)
    (out / "Result_0").mkdir(parents=True, exist_ok=True)
    (out / "Result_0" / "output.raw").write_bytes(b"\0" * 16)
    if a.profiling_level:
        (out / "qnn-profiling-data_0.log").write_bytes(
            LOG_MAGIC + json.dumps({"level": a.profiling_level, "graph": run.get("graph", "model"),
                                    "inferences": infs}).encode())
    print("qnn-net-run pid:4242")
    print(f"Finished Executing Graphs ({n} inferences)")


def profile_viewer_main() -> None:
    import argparse

    _record("qnn-profile-viewer", sys.argv[1:])
    p = argparse.ArgumentParser(prog="qnn-profile-viewer")
    p.add_argument("--input_log", required=True)
    p.add_argument("--output")
    p.add_argument("--reader")
    p.add_argument("--standardized_json_output", action="store_true")
    a = p.parse_args()
    data = Path(a.input_log).read_bytes()
    if not data.startswith(LOG_MAGIC):
        sys.exit(f"Failed to parse the profiling log {a.input_log}")
    log = json.loads(data[len(LOG_MAGIC):])
    sys.path.insert(0, str(TESTS))
    from qnn_viewer_formats import write_csv, write_json, write_text

    # The viewer writes its own SDK's version (`sdk.yaml` at the root of the tree it lives in).
    sdk_yaml = Path(sys.argv[0]).resolve().parents[2] / "sdk.yaml"
    version = "v" + sdk_yaml.read_text().split("version:")[1].split()[0]
    if a.reader:
        if not Path(a.reader).is_file():
            sys.exit(f"Unable to load reader library {a.reader}")
        if Path(a.reader).name != "libQnnJsonProfilingReader.so" or not a.standardized_json_output or not a.output:
            sys.exit("this stand-in knows only the JSON reader with --standardized_json_output --output")
        Path(a.output).write_text(write_json(log["inferences"], version=version))
    elif a.output:
        Path(a.output).write_text(write_csv(log["graph"], log["inferences"], version=version))
    else:
        print(write_text(log["graph"], log["inferences"], log=a.input_log))
