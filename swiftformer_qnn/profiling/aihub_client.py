"""The `qai_hub` client as this tool uses it: its configuration (never the token), its
errors as one line without secrets, its output (retry talk as progress, the rest to the
debug log), and AI Hub's description of devices."""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import HubError
from ..core.redact import client_config_present, scrub

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

CONFIGURE_HINT = (
    "Get a token from your Qualcomm AI Hub account page (https://aihub.qualcomm.com), run "
    "`qai-hub configure --api_token <YOUR_TOKEN>` (or point QAIHUB_CLIENT_INI at a client.ini), "
    "then rerun. Without a token, profile locally with `swiftformer-qnn profile emulator` (cycles, not device latency)."
)

# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class HubConfig:
    """Where the client's configuration is; deliberately without the token."""

    path: Path
    api_url: str
    web_url: str


def check_hub_config() -> HubConfig:
    """Fail early, before any export or upload, when the client has no usable token.

    Reads the same file the client reads (`QAIHUB_CLIENT_INI`, else `~/.qai_hub/client.ini`)
    with the client's own loader, so what passes here is what the client will accept.
    """
    from qai_hub import api_utils
    from qai_hub.public_rest_api import APIException

    path = Path(api_utils.get_config_path(expanduser=True))
    try:
        config = api_utils.load_api_config_from_file(str(path))
    except FileNotFoundError:
        raise HubError(f"No Qualcomm AI Hub API token: {path} does not exist.", hint=CONFIGURE_HINT) from None
    except APIException:
        raise HubError(
            f"No Qualcomm AI Hub API token: {path} lacks api_token, api_url or web_url in its [api] section.",
            hint=CONFIGURE_HINT,
        ) from None
    except Exception as exc:  # configparser errors: a file the client cannot read either
        raise HubError(
            f"Cannot read the Qualcomm AI Hub client config {path} ({type(exc).__name__}).", hint=CONFIGURE_HINT
        ) from None
    if not config.api_token.strip():
        raise HubError(f"No Qualcomm AI Hub API token: api_token in {path} is empty.", hint=CONFIGURE_HINT)
    return HubConfig(path=path, api_url=config.api_url, web_url=config.web_url)


def hub_configured() -> bool:
    """Whether the client has a usable token (`check_hub_config`); without a config file, answered
    without importing the client."""
    if not client_config_present():
        return False
    try:
        check_hub_config()
    except HubError:
        return False
    return True


def client_message(exc: BaseException) -> str:
    """The client's messages come in ASCII boxes over several lines; make them one line,
    without any secret the server may have echoed. The client says "Could not connect" for any
    requests ConnectionError, also when the server took the connection and never answered (its
    retries ended on read timeouts): that is said as what it was."""
    text = re.sub(r"[┌┐└┘─│|]+", " ", str(exc))
    text = re.sub(r"\s+", " ", text).strip()
    if "Could not connect to" in text and _read_timed_out(exc):
        text = text.replace("Could not connect to", "No answer in time from (the connection was made; reads timed out)")
    return scrub(text) or type(exc).__name__


def _read_timed_out(exc: BaseException) -> bool:
    """Whether a read timeout lies anywhere in `exc`'s causes (urllib3 keeps it as the `reason`
    of the MaxRetryError that requests wraps in a ConnectionError)."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if "ReadTimeout" in type(e).__name__:
            return True
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())]
    return False


# What the client says while it retries on its own: its rate-limit loop prints (and sleeps
# 20-60 s, up to 10 minutes), its HTTP layer logs "Retry attempt number N" to `LogRetry`.
_RETRY_TALK = re.compile(r"(?i)retry|retrying|backing off|too many requests|rate limit|slow down")


class _ClientOutput(io.TextIOBase):
    """The client's stdout, line by line: its retry talk becomes progress, the rest debug log."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self.line(line)
        return len(text)

    def line(self, raw: str) -> None:
        line = scrub(re.sub(r"\s+", " ", re.sub(r"[┌┐└┘─│|]+", " ", raw)).strip())
        if not line:
            return
        if self.progress is not None and _RETRY_TALK.search(line):
            self.progress(f"AI Hub client: {line}")
        else:
            log.debug("qai_hub: %s", line)


class _RetryLog(logging.Handler):
    def __init__(self, out: _ClientOutput):
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.line(record.getMessage())


class _Urllib3Retries(logging.Filter):
    """Drops urllib3's retry warnings after handing each, shortened, to the client's output."""

    def __init__(self, out: _ClientOutput):
        super().__init__()
        self.out = out

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and message.startswith("Retrying"):
            self.out.line(retry_line(message))
            return False
        return True


# urllib3's own warning while it retries: "Retrying (Retry(total=4, connect=None, read=None,
# redirect=None, status=None)) after connection broken by 'NewConnectionError(\"<...>: Failed to
# establish a new connection: [Errno 111] Connection refused\")': /api/v1/devices/" (200+ characters).
_URLLIB3_RETRY = re.compile(r"Retrying \(Retry\(total=(\d+).*?broken by '(\w+)(?:\((.*)\))?'\s*:\s*(\S+)", re.S)


def retry_line(message: str) -> str:
    """urllib3's retry warning as one short progress line: what failed, which path, retries left."""
    found = _URLLIB3_RETRY.search(message)
    if not found:
        return message.splitlines()[0][:120] if message else message
    left, error, detail, path = found.groups()
    reason = re.search(r"\[Errno -?\d+\] ([^\"')]+)|(timed out|Connection refused|Name or service not known)",
                       detail or "")
    why = (reason.group(1) or reason.group(2)).strip() if reason else error
    return f"retrying {path}: {why} ({left} retries left)"


@contextlib.contextmanager
def quiet(progress: Progress | None = None) -> Iterator[None]:
    """The client prints (e.g. "Downloaded model to ..."); a library must not. Its output goes
    to our debug log, except what it says while retrying on its own, which becomes progress
    (a retry loop that can last minutes must not look like a hang)."""
    out = _ClientOutput(progress)
    handler = _RetryLog(out)
    # The client's retries (LogRetry) and the `backoff` library's, both quiet at default levels.
    loggers = [logging.getLogger(name) for name in ("LogRetry", "backoff")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    # urllib3's own retry warnings would reach the terminal raw through the root logger (one
    # 200-character line per attempt): they become one short progress line each instead, and
    # only they are held back (its other records propagate as before).
    pool = logging.getLogger("urllib3.connectionpool")
    retries = _Urllib3Retries(out)
    pool.addFilter(retries)
    try:
        with contextlib.redirect_stdout(out):
            yield
    finally:
        pool.removeFilter(retries)
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
        if out._partial:
            out.line(out._partial)


def transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    from botocore.exceptions import BotoCoreError, ClientError
    from qai_hub.client import InternalError, RateLimitedError
    from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError, S3UploadFailedError

    # botocore/s3transfer: the S3-credentials transfer route, which the client does not wrap.
    return (InternalError, RateLimitedError, requests.RequestException, ConnectionError, TimeoutError,
            BotoCoreError, ClientError, S3UploadFailedError, S3DownloadFailedError, RetriesExceededError)


def client_errors() -> tuple[type[BaseException], ...]:
    from qai_hub.client import Error
    from qai_hub.public_rest_api import APIException

    return (Error, APIException, ValueError, *transient_errors())


def device_attributes(attributes: list[str]) -> dict[str, Any]:
    """`chipset:x`, `soc-model:43`, `hexagon:v73` -> {"chipset": "x", "soc_model": 43, "htp_arch": 73}."""
    values = dict(a.split(":", 1) for a in attributes if ":" in a)

    def number(key: str) -> int | None:
        m = re.fullmatch(r"v?(\d+)", values.get(key, "").strip().lower())
        return int(m.group(1)) if m else None

    return {"chipset": values.get("chipset") or None, "soc_model": number("soc-model"), "htp_arch": number("hexagon")}


def is_fatal(exc: BaseException) -> bool:
    """Errors that stop every target alike: a rejected token, a client AI Hub no longer serves."""
    text = str(exc)
    return "Failed to authenticate" in text or "no longer supported" in text or "upgrade" in text.lower()


def list_devices(config: HubConfig | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
    """AI Hub's devices (`get_devices()`), as plain dicts: name, os, chipset, attributes."""
    import qai_hub

    cfg = config or check_hub_config()
    client = qai_hub.Client()
    try:
        with quiet(progress):
            client.set_verbose(False)
            devices = client.get_devices()
    except client_errors() as exc:
        raise HubError(f"Qualcomm AI Hub ({cfg.api_url}), listing devices: {client_message(exc)}") from None
    out = []
    for d in devices:
        chipset = next((a.split(":", 1)[1] for a in d.attributes if a.startswith("chipset:")), None)
        out.append({"name": d.name, "os": d.os, "chipset": chipset, "attributes": list(d.attributes)})
    return out
