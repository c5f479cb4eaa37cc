"""The AI Hub job journal: ids of uploaded models and submitted jobs, on disk as soon as they exist.

AI Hub jobs cost time and quota, so an interrupted or repeated command finds the same jobs
(`get_job(id)`) instead of submitting new ones. The journal lives in the output directory
and, keyed by content (model hash, device, options with the resolved QAIRT version, AI Hub
URL), in the user cache, so a repeated command with a fresh output directory resumes too.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.atomic import write_text_atomic
from ..core.cache import cache_root, sha256_json

log = logging.getLogger(__name__)

JOURNAL_NAME = "aihub-jobs.json"
JOURNAL_KIND = "swiftformer-qnn.aihub-jobs"


class JobJournal:
    """Ids of uploaded models and submitted jobs, on disk as soon as they exist.

    `<out>/aihub-jobs.json` is the record for that run. With an index directory, each
    entry is also written to `<index>/<key>.json` so a later run with another output
    directory finds it. Every write is atomic (temp file + rename).
    """

    def __init__(self, out_dir: Path, api_url: str, index_dir: Path | None = None):
        self.path = Path(out_dir) / JOURNAL_NAME
        self.api_url = api_url
        self.index_dir = index_dir
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("kind") == JOURNAL_KIND:
                    self.entries = dict(data.get("entries", {}))
            except (OSError, ValueError):
                log.warning("ignoring unreadable job journal %s", self.path)

    def key(self, kind: str, **fields: Any) -> str:
        # The AI Hub URL is part of the key: ids from one deployment mean nothing to another.
        return f"{kind}-{sha256_json({'api_url': self.api_url, 'kind': kind, **fields})[:24]}"

    def lookup(self, key: str) -> dict[str, Any] | None:
        if key in self.entries:
            return self.entries[key]
        if self.index_dir is not None:
            p = self.index_dir / f"{key}.json"
            if p.is_file():
                try:
                    entry = json.loads(p.read_text())
                except (OSError, ValueError):
                    return None
                self.entries[key] = entry
                self._write()
                return entry
        return None

    def record(self, key: str, **entry: Any) -> dict[str, Any]:
        entry = {**entry, "recorded_at": datetime.now(timezone.utc).isoformat()}
        self.entries[key] = entry
        self._write()
        if self.index_dir is not None:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.index_dir / f"{key}.json", json.dumps(entry, indent=2) + "\n")
        return entry

    def update(self, key: str, **changes: Any) -> None:
        if key in self.entries:
            self.record(key, **{**self.entries[key], **changes})

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)
        self._write()
        if self.index_dir is not None:
            (self.index_dir / f"{key}.json").unlink(missing_ok=True)

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"kind": JOURNAL_KIND, "api_url": self.api_url, "entries": self.entries}
        write_text_atomic(self.path, json.dumps(body, indent=2, sort_keys=True) + "\n")


def default_index_dir() -> Path:
    return cache_root() / "aihub-jobs"
