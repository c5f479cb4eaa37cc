"""QNN toolchains: version parsing, the onnxruntime pairing, readiness, installs that fail cleanly.

The slow tier installs every toolchain for real into the user cache directory (reruns reuse
them) and loads each pair's QNN backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from toolchain_fakes import leftovers, make_fake_toolchain, running_interpreter_script, user_toolchains_root
from typer.testing import CliRunner

from swiftformer_qnn.cli import app
from swiftformer_qnn.core.errors import ToolchainError, UsageError
from swiftformer_qnn.toolchains import (
    CACHE_DIR,
    KNOWN_REFUSALS,
    MARKER_NAME,
    TOOLCHAINS,
    TOOLCHAINS_ENV,
    IndexConfig,
    Installer,
    QnnToolchainSpec,
    ToolchainState,
    ensure_toolchains,
    find_uv,
    get_toolchain_spec,
    inspect_toolchain,
    install_toolchain,
    install_toolchains,
    list_toolchains,
    main_environment_spec,
    parse_pip_config_list,
    parse_qnn_versions,
    probe_problems,
    probe_python,
    remove_toolchain,
    resolve_toolchain,
    same_release,
    short_version,
    toolchain_dir,
    unfetched_packages,
    verify_toolchain,
    version_key,
)

REPO = Path(__file__).resolve().parents[1]
SPEC_249 = get_toolchain_spec("2.49")  # never the main environment's, so always installable


# --- versions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2.49", "2.49.40"),
        ("2.49.40", "2.49.40"),
        ("v2.49.40", "2.49.40"),
        ("qnn-2.47.0", "2.47.0"),
        (" 2.51 ", "2.51.0"),
        ("v2.51.0.260929181845", "2.51.0"),  # an EPContext node's ep_sdk_version
    ],
)
def test_version_forms_resolve(text, expected):
    assert get_toolchain_spec(text).qnn_version == expected


@pytest.mark.parametrize("text", ["2.52", "2.48.0", "2", "latest", "2.5.0", ""])
def test_unknown_version_lists_the_known_ones(text):
    with pytest.raises(UsageError) as err:
        parse_qnn_versions(text)
    assert all(s.qnn_version in err.value.one_line() for s in TOOLCHAINS)


@pytest.mark.parametrize("requested, actual, same", [
    ("2.51", "2.51.0", True),
    ("2.51.0", "v2.51.0.260929181845", True),  # a build suffix is not part of the release
    ("v2.51.0.260929181845", "2.51.0", True),
    ("2.5", "2.51.0", False),  # a string prefix, another release
    ("2.5.1", "2.51.0", False),
    ("2.51.1", "2.51.0", False),
    ("2", "2.51.0", False),  # major alone names no release
    ("latest", "2.51.0", False),
])
def test_same_release_compares_numbers_not_strings(requested, actual, same):
    assert same_release(requested, actual) is same


def test_one_version_parser_for_keys_and_short_forms():
    assert sorted(["2.51.0", "2.9", "2.17", "v2.16.4.240122"], key=version_key) == [
        "2.9", "v2.16.4.240122", "2.17", "2.51.0"]
    assert version_key("not a version") == ()
    assert short_version("2.31.0.250130151446") == "2.31.0"
    assert short_version("v2.33") == "2.33" and short_version("default") is None and short_version(None) is None


def test_version_lists_are_sorted_and_deduplicated():
    assert [s.qnn_version for s in parse_qnn_versions("2.51,2.47,2.51.0")] == ["2.47.0", "2.51.0"]
    assert [s.qnn_version for s in parse_qnn_versions(["2.49", "2.48,2.47"])] == ["2.47.0", "2.48.40", "2.49.40"]
    assert parse_qnn_versions("all") == list(TOOLCHAINS)
    assert parse_qnn_versions(["2.49", "ALL"]) == list(TOOLCHAINS)


# --- pairing data -----------------------------------------------------------------------------


def test_pairing_table_is_one_to_one_and_avoids_known_refusals():
    assert len({s.qnn_version for s in TOOLCHAINS}) == len(TOOLCHAINS)
    assert len({s.onnxruntime_qnn for s in TOOLCHAINS}) == len(TOOLCHAINS)
    assert len({s.major_minor for s in TOOLCHAINS}) == len(TOOLCHAINS)  # "2.49" must be unambiguous
    for spec in TOOLCHAINS:
        assert spec.onnxruntime not in KNOWN_REFUSALS.get(spec.onnxruntime_qnn, ())
        reqs = spec.requirements()
        assert f"onnxruntime-qnn=={spec.onnxruntime_qnn}" in reqs and f"onnxruntime=={spec.onnxruntime}" in reqs
        assert not any(r.startswith("torch") for r in reqs)


def test_main_environment_pair_is_the_pyproject_pin_and_in_the_table():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(d.split("==") for d in dependencies if d.startswith("onnxruntime"))
    main = main_environment_spec()
    assert main is not None
    assert (main.onnxruntime_qnn, main.onnxruntime) == (pins["onnxruntime-qnn"], pins["onnxruntime"])
    from onnxruntime_qnn import build_and_package_info

    assert main.qnn_version == build_and_package_info.qnn_version


def test_toolchains_install_the_main_environments_numpy_and_onnx():
    from importlib.metadata import version

    reqs = SPEC_249.requirements()
    assert reqs[:2] == ["onnxruntime-qnn==2.5.0", "onnxruntime==1.31.1"]
    assert f"numpy=={version('numpy')}" in reqs and f"onnx=={version('onnx')}" in reqs


# --- readiness --------------------------------------------------------------------------------


def test_states_from_the_directory_alone(tmp_path):
    assert inspect_toolchain(SPEC_249, tmp_path).state is ToolchainState.NOT_INSTALLED
    d = make_fake_toolchain(tmp_path, SPEC_249)
    status = inspect_toolchain(SPEC_249, tmp_path)
    assert status.state is ToolchainState.READY and status.location == d
    assert status.python == d / "env" / "bin" / "python"
    assert inspect_toolchain(main_environment_spec(), tmp_path).state is ToolchainState.DEFAULT


@pytest.mark.parametrize(
    "layout, reason",
    [
        ({"marker": False}, "toolchain.json is missing"),
        ({"marker_spec": QnnToolchainSpec("2.49.40", "2.5.0", "1.26.0")}, "expected 2.5.0 + 1.31.1"),
        ({"dist_infos": False}, "onnxruntime-qnn 2.5.0 is no longer installed"),
    ],
)
def test_broken_toolchains_are_detected_and_reinstall_is_offered(tmp_path, layout, reason):
    make_fake_toolchain(tmp_path, SPEC_249, **layout)
    status = inspect_toolchain(SPEC_249, tmp_path)
    assert status.state is ToolchainState.BROKEN and reason in status.detail
    with pytest.raises(ToolchainError) as err:
        resolve_toolchain(SPEC_249, tmp_path)
    assert "broken" in err.value.message
    assert "toolchains install 2.49 --force" in err.value.one_line()


def test_a_vanished_interpreter_breaks_a_toolchain(tmp_path):
    d = make_fake_toolchain(tmp_path, SPEC_249)
    python = d / "env" / "bin" / "python"
    python.unlink()
    python.symlink_to(tmp_path / "uninstalled-python3.11")
    assert "interpreter" in inspect_toolchain(SPEC_249, tmp_path).detail


def test_unreadable_marker_is_broken(tmp_path):
    d = make_fake_toolchain(tmp_path, SPEC_249)
    (d / MARKER_NAME).write_text("{not json")
    assert inspect_toolchain(SPEC_249, tmp_path).state is ToolchainState.BROKEN


def test_missing_toolchain_says_how_to_install(tmp_path):
    with pytest.raises(ToolchainError) as err:
        resolve_toolchain(SPEC_249, tmp_path)
    assert "not installed" in err.value.message and "toolchains install 2.49" in err.value.one_line()


def test_verification_catches_an_environment_that_loads_another_qnn(tmp_path):
    """Its python is the main interpreter: it imports onnxruntime-qnn 2.7.0 from elsewhere."""
    make_fake_toolchain(tmp_path, SPEC_249)
    status = verify_toolchain(SPEC_249, tmp_path)
    assert status.state is ToolchainState.BROKEN
    assert "reports QNN 2.51.0, expected 2.49.40" in status.detail
    assert "outside the toolchain" in status.detail


def test_probe_of_the_main_environment_is_sound():
    spec = main_environment_spec()
    probe = probe_python(Path(sys.executable))
    assert probe["status"] == "ok", probe
    assert probe_problems(spec, probe, None) == []
    assert probe["packages"]["onnxruntime-qnn"] == spec.onnxruntime_qnn


def test_probe_reports_an_interpreter_that_crashes(tmp_path):
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\nkill -SEGV $$\n")
    script.chmod(0o755)
    problems = probe_problems(SPEC_249, probe_python(script), None)
    assert problems and "exited with -11" in problems[0]


# --- pip configuration mirrored to uv ---------------------------------------------------------


def test_pip_config_precedence_env_over_install_over_global():
    text = "\n".join(
        [
            "global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'",
            "global.find-links='/opt/wheels'",
            "global.index-url='https://mirror.example/simple'",
            "install.index-url='https://install.example/simple'",
            ":env:.find-links='/env/wheels /more/wheels'",
            ":env:.default-timeout='180'",
            "global.cert='/etc/ssl/certs/ca-certificates.crt'",
            "not a config line",
        ]
    )
    values = parse_pip_config_list(text)
    index = IndexConfig.from_pip_values(values)
    assert index.index_url == "https://install.example/simple"
    assert index.find_links == ("/env/wheels", "/more/wheels")
    assert index.extra_index_urls == ("file:///opt/pypi/simple", "file:///opt/pypi-more/simple")
    assert index.timeout_s == 180.0 and index.cert == "/etc/ssl/certs/ca-certificates.crt"
    assert index.installer_args() == [
        "--index-url", "https://install.example/simple",
        "--extra-index-url", "file:///opt/pypi/simple",
        "--extra-index-url", "file:///opt/pypi-more/simple",
        "--find-links", "/env/wheels",
        "--find-links", "/more/wheels",
    ]  # fmt: skip
    assert index.uv_env().get("UV_HTTP_TIMEOUT", "180") == "180"


def test_no_index_drops_the_index_urls():
    index = IndexConfig.from_pip_values({"no-index": "true", "find-links": "/w", "index-url": "https://x/simple"})
    assert index.installer_args() == ["--no-index", "--find-links", "/w"]
    assert index.describe() == "/w"


def test_this_machines_pip_config_is_read():
    """What pip itself reports is what the installer passes on."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    values = parse_pip_config_list(proc.stdout)
    index = IndexConfig.from_pip()
    for link in values.get("find-links", "").split():
        assert link in index.find_links
    for url in values.get("extra-index-url", "").split():
        assert url in index.extra_index_urls


@pytest.mark.parametrize(
    "output, expected",
    [
        (
            "error: No solution found when resolving dependencies\n  cause: Because onnxruntime-qnn was not "
            "found in the provided package locations and you require onnxruntime-qnn==2.5.0, we can conclude",
            ["onnxruntime-qnn==2.5.0"],
        ),
        (
            "ERROR: Could not find a version that satisfies the requirement onnxruntime==1.31.1 (from versions: none)\n"
            "ERROR: No matching distribution found for onnxruntime==1.31.1",
            ["onnxruntime==1.31.1"],
        ),
        (
            "error: Failed to fetch: `https://pypi.org/simple/numpy/`\n  Caused by: dns error",
            ["numpy==2.4.6"],
        ),
        ("error: Request failed after 3 retries: network is unreachable", None),  # names none: all of them
    ],
)
def test_unfetched_packages_are_named(output, expected):
    reqs = ["onnxruntime-qnn==2.5.0", "onnxruntime==1.31.1", "numpy==2.4.6", "onnx==1.23.2"]
    assert unfetched_packages(output, reqs) == (expected or reqs)


# --- installs that fail leave nothing marked ready --------------------------------------------


def _offline_installer(kind: str, tmp_path: Path, monkeypatch) -> Installer:
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    if kind == "uv":
        uv = find_uv()
        # uv is in the test extras: without it this path would silently go untested.
        assert uv is not None, "uv is a test dependency (pip install -e '.[test]')"
        monkeypatch.setenv("UV_OFFLINE", "1")
        monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-uv-cache"))
        return Installer("uv", uv, IndexConfig(find_links=(str(empty),)))
    return Installer("pip", None, IndexConfig(no_index=True, find_links=(str(empty),)))


@pytest.mark.parametrize("kind", ["uv", "pip"])
def test_no_network_names_the_packages_and_keeps_nothing(kind, tmp_path, monkeypatch):
    root = tmp_path / "toolchains"
    installer = _offline_installer(kind, tmp_path, monkeypatch)
    with pytest.raises(ToolchainError) as err:
        install_toolchain(SPEC_249, root=root, installer=installer)
    assert err.value.message.startswith("Could not fetch onnxruntime-qnn==2.5.0")
    assert str(tmp_path / "no-wheels") in err.value.message
    assert leftovers(root) == []


class _DiskFillingInstaller(Installer):
    """Creates a real directory tree, then fails the way pip/uv report a full disk."""

    def __init__(self):
        super().__init__("pip")

    def create_env(self, env_dir: Path) -> None:
        (env_dir / "bin").mkdir(parents=True)

    def install(self, env_dir: Path, requirements: list[str]) -> None:
        (env_dir / "lib" / "half-unpacked.so").parent.mkdir(parents=True)
        (env_dir / "lib" / "half-unpacked.so").write_bytes(b"\0" * 1024)
        self._check(
            subprocess.CompletedProcess([], 1, "", "ERROR: Could not install packages due to an OSError: "
                                        "[Errno 28] No space left on device"),
            "install",
            requirements,
        )  # fmt: skip

    def describe(self) -> str:
        return "test"


def test_disk_full_during_install_keeps_nothing(tmp_path):
    root = tmp_path / "toolchains"
    with pytest.raises(ToolchainError) as err:
        install_toolchain(SPEC_249, root=root, installer=_DiskFillingInstaller())
    assert err.value.message.startswith("Disk full")
    assert leftovers(root) == []
    assert inspect_toolchain(SPEC_249, root).state is ToolchainState.NOT_INSTALLED


class _WrongEnvInstaller(_DiskFillingInstaller):
    """'Installs' an environment whose python is the main interpreter (QNN 2.51.0, not 2.49.40)."""

    def create_env(self, env_dir: Path) -> None:
        (env_dir / "bin").mkdir(parents=True)
        python = env_dir / "bin" / "python"
        python.write_text(running_interpreter_script())
        python.chmod(0o755)

    def install(self, env_dir: Path, requirements: list[str]) -> None:
        pass


def test_an_install_failing_verification_is_not_kept(tmp_path):
    root = tmp_path / "toolchains"
    with pytest.raises(ToolchainError) as err:
        install_toolchain(SPEC_249, root=root, installer=_WrongEnvInstaller())
    assert "failed verification" in err.value.message and "expected 2.49.40" in err.value.message
    assert leftovers(root) == []


class _RecordingInstaller(_DiskFillingInstaller):
    """Fails like a full disk, after noting which environments it was asked to make."""

    def __init__(self):
        super().__init__()
        self.made: list[str] = []

    def create_env(self, env_dir: Path) -> None:
        self.made.append(env_dir.parent.name.split(".partial-")[0].lstrip("."))
        super().create_env(env_dir)


def test_qnn_installs_missing_toolchains_on_first_use_or_refuses_with_no_install(tmp_path):
    root = tmp_path / "toolchains"
    make_fake_toolchain(root, get_toolchain_spec("2.48"))  # ready: left alone
    wanted = [get_toolchain_spec(v) for v in ("2.47", "2.48", "2.49")]
    installer = _RecordingInstaller()
    with pytest.raises(ToolchainError, match="The QNN toolchains 2.47.0, 2.49.40 are not installed") as err:
        ensure_toolchains(wanted, install=False, root=root, installer=installer)
    assert "toolchains install 2.47 2.49" in err.value.one_line() and installer.made == []
    events = []
    with pytest.raises(ToolchainError, match="Disk full"):
        ensure_toolchains(wanted, root=root, installer=installer, progress=events.append)
    assert installer.made == ["qnn-2.47.0"]  # the first missing one; the failure stops the rest
    assert [(e.subject, e.step) for e in events] == [("QNN toolchains", "install")]
    assert "2.47.0, 2.49.40" in events[0].detail and "--no-install" in events[0].detail
    assert leftovers(root) == ["qnn-2.48.40"]  # a failed install keeps nothing
    assert ensure_toolchains([get_toolchain_spec("2.48")], install=False, root=root)[0].usable


@pytest.mark.parametrize("kind", ["uv", "pip"])
def test_the_download_cache_follows_the_toolchains_root(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "elsewhere"))  # not where the tool's cache is
    installer = Installer(kind, find_uv(), cache_dir=tmp_path / "toolchains" / CACHE_DIR)
    out = installer._run(["sh", "-c", "echo UV_CACHE_DIR=$UV_CACHE_DIR; echo PIP_CACHE_DIR=$PIP_CACHE_DIR"], timeout_s=30)
    seen = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert seen[f"{kind.upper()}_CACHE_DIR"] == str(tmp_path / "toolchains" / CACHE_DIR / kind)


def test_partials_of_dead_installs_are_swept(tmp_path):
    root = tmp_path / "toolchains"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = root / f".{SPEC_249.name}.partial-{dead.pid}-abc"
    live = root / f".{SPEC_249.name}.partial-{os.getpid()}-xyz"  # another install still running
    stale.mkdir(parents=True)
    live.mkdir()
    (root / f".{SPEC_249.name}.removing-{dead.pid}").mkdir()  # a removal killed midway
    with pytest.raises(ToolchainError):
        install_toolchain(SPEC_249, root=root, installer=_DiskFillingInstaller())
    assert leftovers(root) == [live.name]


def test_install_skips_ready_and_default_toolchains(tmp_path):
    make_fake_toolchain(tmp_path, SPEC_249)
    events = []
    # An installer that would fail if used: nothing may be installed here.
    statuses = install_toolchains(
        [SPEC_249, main_environment_spec()], root=tmp_path, installer=_DiskFillingInstaller(), progress=events.append
    )
    assert [s.state for s in statuses] == [ToolchainState.READY, ToolchainState.DEFAULT]
    assert [e.step for e in events] == ["skip", "skip"]


def test_force_replaces_a_ready_toolchain_only_after_a_good_install(tmp_path):
    d = make_fake_toolchain(tmp_path, SPEC_249)
    with pytest.raises(ToolchainError):
        install_toolchain(SPEC_249, root=tmp_path, installer=_DiskFillingInstaller(), force=True)
    assert inspect_toolchain(SPEC_249, tmp_path).state is ToolchainState.READY  # the old one is intact
    assert (d / MARKER_NAME).is_file()


def test_remove(tmp_path):
    d = make_fake_toolchain(tmp_path, SPEC_249)
    assert remove_toolchain(SPEC_249, tmp_path) == d
    assert leftovers(tmp_path) == []
    assert remove_toolchain(SPEC_249, tmp_path) is None
    with pytest.raises(UsageError):
        remove_toolchain(main_environment_spec(), tmp_path)


# --- CLI --------------------------------------------------------------------------------------


def test_cli_list_shows_states_and_offers_reinstall(tmp_path, monkeypatch):
    monkeypatch.setenv(TOOLCHAINS_ENV, str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")  # rich folds table cells at 80 columns
    make_fake_toolchain(tmp_path, SPEC_249, marker=False)
    result = CliRunner().invoke(app, ["toolchains", "list"])
    assert result.exit_code == 0, result.output
    lines = {ln.split()[1]: ln for ln in result.stdout.splitlines() if ln.startswith("│ 2.")}
    assert "broken" in lines["2.49.40"] and "not installed" in lines["2.47.0"]
    assert "default" in lines["2.51.0"]
    assert "toolchains install 2.49 --force" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["toolchains", "install", "2.52"], "Unknown QNN version '2.52'. Known: 2.47.0"),
        (["toolchains", "remove", "2.51"], "nothing to remove"),
        (["toolchains", "install", "2.49", "--installer", "conda"], "Unknown installer 'conda'"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.setenv(TOOLCHAINS_ENV, str(tmp_path))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_cli_remove_all_keeps_the_main_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(TOOLCHAINS_ENV, str(tmp_path))
    make_fake_toolchain(tmp_path, SPEC_249)
    result = CliRunner().invoke(app, ["toolchains", "remove", "all"])
    assert result.exit_code == 0, result.output
    assert "2.49.40: removed" in result.stdout and "2.47.0: not installed" in result.stdout
    assert leftovers(tmp_path) == []


# --- slow: real installs ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("spec", TOOLCHAINS, ids=lambda s: s.qnn_version)
def test_every_pair_installs_and_loads_its_qnn(spec):
    """Each onnxruntime-qnn / onnxruntime pair of the table loads the QNN HTP backend it names."""
    root = user_toolchains_root()
    status = install_toolchain(spec, root=root)
    assert status.usable
    if status.state is ToolchainState.DEFAULT:
        probe = probe_python(Path(sys.executable))
        assert probe_problems(spec, probe, None) == []
    else:
        verified = verify_toolchain(status)
        assert verified.state is ToolchainState.READY, verified.detail
        assert verified.marker is not None and verified.marker.packages["onnxruntime-qnn"] == spec.onnxruntime_qnn
        assert not any(p.name.startswith("torch") for p in (status.location / "env" / "lib").glob("python*/site-packages/*"))
    assert any(s.spec == spec and s.usable for s in list_toolchains(root))


@pytest.mark.slow
def test_a_refused_pair_is_never_marked_ready(tmp_path):
    """onnxruntime 1.31.1 refuses onnxruntime-qnn 2.3.0: a real install of that pair must fail verification."""
    refused = QnnToolchainSpec("2.47.0", "2.3.0", KNOWN_REFUSALS["2.3.0"][0])
    root = tmp_path / "toolchains"
    with pytest.raises(ToolchainError) as err:
        install_toolchain(refused, root=root)
    assert "failed verification" in err.value.message
    assert "could not load onnxruntime-qnn 2.3.0" in err.value.message
    assert leftovers(root) == []
    assert not toolchain_dir(refused, root).exists()


@pytest.mark.slow
def test_cli_install_and_remove_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv(TOOLCHAINS_ENV, str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["toolchains", "install", "2.50"])
    assert result.exit_code == 0, result.output
    assert "QNN 2.50.40: ready" in result.stdout and "verify" in result.stderr
    assert inspect_toolchain(get_toolchain_spec("2.50"), tmp_path).state is ToolchainState.READY
    result = runner.invoke(app, ["toolchains", "remove", "2.50"])
    assert result.exit_code == 0 and leftovers(tmp_path) == []


@pytest.mark.slow
def test_qnn_on_first_use_installs_with_one_line_and_its_download_size(tmp_path, monkeypatch):
    """`compile --qnn 2.50` on a machine without that toolchain: installed first (downloads into
    the tool's own cache), then compiled; `--no-install` refuses instead."""
    from qdq_fixtures import make_qdq_model

    root = tmp_path / "toolchains"
    monkeypatch.setenv(TOOLCHAINS_ENV, str(root))
    model = make_qdq_model("encoder", 16, tmp_path / "m", "w8a8")
    runner = CliRunner()
    refused = runner.invoke(app, ["compile", str(model), "--qnn", "2.50", "--no-install"])
    assert refused.exit_code == 2 and "toolchains install 2.50" in refused.stderr and not root.exists()
    done = runner.invoke(app, ["compile", str(model), "--qnn", "2.50", "--output-dir", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    (ready,) = [ln for ln in done.stderr.splitlines() if "QNN 2.50.40: ready" in ln]
    downloaded = float(ready.split("(")[1].split(" MB downloaded")[0])
    assert downloaded > 50  # onnxruntime-qnn alone is ~100 MB; it went to the tool's cache, not ~/.cache/uv
    assert (root / CACHE_DIR / "uv").is_dir()
    assert inspect_toolchain(get_toolchain_spec("2.50"), root).state is ToolchainState.READY
