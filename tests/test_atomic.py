"""`swiftformer_qnn.core.atomic.write_text_atomic`: the one atomic text write of the package."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import pytest

from swiftformer_qnn.core.atomic import unwritable, write_text_atomic


def test_concurrent_writers_of_one_path_never_collide(tmp_path):
    # With a fixed temporary name (`.name.tmp`) two writers share one temporary file: one
    # renames it away and the other's rename fails (FileNotFoundError) or publishes a mix.
    target = tmp_path / "profile.json"
    bodies = [f"writer {i}: " + str(i) * 20_000 + "\n" for i in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(bodies))

    def writer(body: str) -> None:
        start.wait()
        try:
            for _ in range(40):
                write_text_atomic(target, body)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_text() in bodies  # one writer's text, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.json"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "gate.json"
    target.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "half \ud800 written")  # a lone surrogate cannot be UTF-8
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["gate.json"]


def test_mode_follows_the_umask_like_a_plain_open(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_text_atomic(tmp_path / "a.json", "{}\n")
    finally:
        os.umask(old)
    assert path == tmp_path / "a.json" and path.read_text() == "{}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # not mkstemp's 0600


def test_imports_only_the_standard_library():
    # qnn_worker imports it inside toolchain environments that have no pydantic.
    code = (
        "import sys; import swiftformer_qnn.core.atomic, swiftformer_qnn.htp.worker; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'typer', 'rich', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unwritable_names_a_file_on_the_way_and_allows_folders_yet_to_be_made(tmp_path):
    (tmp_path / "a-file").write_text("")
    assert unwritable(tmp_path / "a-file" / "report.md") == f"{tmp_path / 'a-file'} is a file, not a folder"
    assert unwritable(tmp_path / "new" / "deeper" / "report.md") is None
    assert unwritable(tmp_path / "report.md") is None

