"""Secrets out of anything we print or write: `scrub(text)`.

A server may echo a request back in its error text (headers, query strings), and the client
puts that text into its exceptions. Every message that leaves this tool (errors, progress,
logs, files) can pass through `scrub`, which removes:

- the AI Hub API token configured for the client (read from the client's own config file
  each time, never kept), wherever it appears;
- anything shaped like a credential: `Authorization: token ...` / `Bearer ...` headers,
  `api_token = ...`, AWS keys and session tokens, and presigned URLs' signatures.

The CLI's error boundary calls it on every message it prints.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

MASK = "<redacted>"

_PATTERNS = [
    # Authorization headers as HTTP, a dict repr or JSON write them.
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:token|bearer|basic)?\s*)([^\s'\",}]+)"),
    re.compile(r"(?i)\b(token|bearer)\s+([A-Za-z0-9._\-]{16,})"),
    re.compile(r"(?i)(api[_-]?token['\"]?\s*[:=]\s*['\"]?)([^\s'\",}]+)"),
    re.compile(r"(?i)(aws_secret_access_key|secret_access_key|session_token|aws_session_token)(['\"]?\s*[:=]\s*['\"]?)([^\s'\",}]+)"),
    re.compile(r"(?i)([?&](?:X-Amz-Signature|X-Amz-Security-Token|X-Amz-Credential|Signature|sig)=)([^&\s'\"]+)"),
]


def client_config_path() -> Path:
    """The file the AI Hub client reads its token from (`qai_hub.api_utils.get_config_path`: the
    QAIHUB_CLIENT_INI variable, else ~/.qai_hub/client.ini), found without importing the client,
    which takes 0.3-0.5 s: where there is no such file, nothing is configured, and an export's
    closing hint or a one-line error need not wait for the client."""
    return Path(os.path.expanduser(os.environ.get("QAIHUB_CLIENT_INI", "~/.qai_hub/client.ini")))


def client_config_present() -> bool:
    """Whether `client_config_path` names something the client could read (an unreadable folder
    on the way: no)."""
    try:
        path = client_config_path()
        return path.exists() and not path.is_dir()  # QAIHUB_CLIENT_INI="" reads as ".", which the client cannot read
    except OSError:
        return False


def _configured_token() -> str | None:
    """The client's API token, read with the client's own loader (None without one)."""
    if not client_config_present():
        return None
    return _token_of(str(client_config_path()))


@lru_cache(maxsize=4)
def _token_cached(path: str, mtime: float) -> str | None:
    from qai_hub import api_utils

    token = api_utils.load_api_config_from_file(path).api_token.strip()
    return token or None


def _token_of(path: str) -> str | None:
    try:
        return _token_cached(path, os.stat(path).st_mtime)
    except Exception:
        return None


def scrub(text: str, *secrets: str | None) -> str:
    """`text` without the configured AI Hub token, the given `secrets` and credential-shaped values."""
    if not text:
        return text
    for secret in (*secrets, _configured_token()):
        if secret and len(secret) >= 6:
            text = text.replace(secret, MASK)
    for rx in _PATTERNS:
        text = rx.sub(lambda m: "".join(m.groups()[:-1]) + MASK, text)
    return text
