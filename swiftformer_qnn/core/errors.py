"""The errors the tool knows about.

Each carries a one-line message (what is wrong and what to do) and an exit code; the CLI
maps them to that line and that code in one place and never shows a traceback for them.
"""

from __future__ import annotations


class SwiftFormerQnnError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message

    def __str__(self) -> str:
        return self.one_line()


class UsageError(SwiftFormerQnnError):
    """A bad option value, an unknown variant, precision, SoC, device or QNN version."""


class WeightsError(SwiftFormerQnnError):
    """A checkpoint that is missing, unreadable, or does not fit the requested variant."""


class OutputDirError(SwiftFormerQnnError):
    """An output directory that exists for another request, or cannot be written."""


class ExportValidationError(SwiftFormerQnnError):
    """The ONNX graph does not compute what the PyTorch model computes."""

    exit_code = 1


class CalibrationError(SwiftFormerQnnError):
    """No usable calibration image."""


class HtpUnsupportedError(SwiftFormerQnnError):
    """The QNN HTP backend rejected ops (they would leave the NPU)."""


class QuantizationFidelityError(SwiftFormerQnnError):
    """Quantization (or the compiled context binary) no longer computes what the model computes."""

    exit_code = 1


class ToolchainError(SwiftFormerQnnError):
    """A QNN toolchain environment that is missing, broken, or could not be installed."""


class ProfileError(SwiftFormerQnnError):
    """A profile file that is malformed, foreign, or incompatible with another."""


class HubError(SwiftFormerQnnError):
    """Qualcomm AI Hub could not be used (no token, network, a failed job)."""


class PhoneError(SwiftFormerQnnError):
    """A phone over adb, or the QNN SDK to run on it, that cannot be used as asked."""


class PhoneRunError(SwiftFormerQnnError):
    """qnn-net-run failed on the phone (the message carries the phone's last lines)."""

    exit_code = 1


class BnOverflowError(SwiftFormerQnnError):
    """A QDQ BatchNormalization whose bias the QNN EP would corrupt, and which cannot be rewritten."""


def json_problem(exc: BaseException) -> str:
    """What is wrong with a JSON file that would not parse, in words a user can act on (Python's
    own message for a 5000-digit number advises changing an interpreter limit)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc)
    if "integer string conversion" in text:
        return "a number of more than 4300 digits"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def error_named(name: object) -> type[SwiftFormerQnnError] | None:
    """The known error of this name (a worker process reports its failure by the error's name)."""
    pending = [SwiftFormerQnnError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    return None
