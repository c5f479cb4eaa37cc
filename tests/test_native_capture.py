"""Capturing the native libraries' output while HTP sessions are created from several threads
(verify opens one emulator session per core; the pipeline's stages overlap) leaves the
process's stdout and stderr where they were."""

from __future__ import annotations

import os
import threading

from swiftformer_qnn.htp.session import _captured_native_stderr


def _where(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def test_overlapping_captures_restore_stdout_and_stderr():
    before = {fd: _where(fd) for fd in (1, 2)}
    first_in, first_out = threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    def first():
        with _captured_native_stderr() as cap:
            first_in.set()
            os.write(1, b"first")
            threading.Event().wait(0.3)  # the second capture may start meanwhile
        first_out.set()
        seen["first"] = cap.read()

    def second():
        first_in.wait()
        with _captured_native_stderr() as cap:
            os.write(1, b"second")
            first_out.wait(5)  # the first capture ends while this one is open, if they overlap
        seen["second"] = cap.read()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {fd: _where(fd) for fd in (1, 2)} == before
    assert seen == {"first": "first", "second": "second"}  # each capture holds its own output
