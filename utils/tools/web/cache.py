"""On-disk cache of fetched pages and search results under `$ORCH_HOME/web/`, so a re-run fetches nothing.

Like the model reply cache: one JSON file per key (sha256 of what determines the answer, never an API
key), written to a temp file and moved into place so parallel research tasks and a Ctrl-C never leave
half an entry. Pages are stored as extracted text, not raw HTML. Failures are cached too (a 404 stays a
404), but transient ones (timeouts, connection errors, 5xx) only for `TRANSIENT_TTL_S`.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from utils.files import write_atomic
from utils.options import home
from utils.text import json_text, scrub, valid_text

CACHE_VERSION = 1
TRANSIENT_TTL_S = 3600.0


def web_home() -> Path:
    """`$ORCH_HOME/web` (read on every call, so tests redirect it per test)."""
    return home() / "web"


def key_for(kind: str, *parts: Any) -> str:
    canonical = json.dumps([CACHE_VERSION, kind, *parts], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _path(kind: str, key: str) -> Path:
    return web_home() / kind / key[:2] / f"{key}.json"


def load(kind: str, key: str) -> dict | None:
    """The stored entry, or None (missing, corrupt or an expired transient failure: all misses)."""
    try:
        entry = json.loads(_path(kind, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict):
        return None
    if entry.get("transient") and time.time() - float(entry.get("stored", 0)) > TRANSIENT_TTL_S:
        return None
    return entry


def store(kind: str, key: str, entry: dict) -> None:
    """Write atomically; a read-only or full disk is skipped silently (the cache is an optimisation)."""
    path = _path(kind, key)
    try:  # valid UTF-8, secrets scrubbed: encoding never raises
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json_text({**entry, "stored": round(time.time(), 3)}, ensure_ascii=False)
        write_atomic(path, scrub(valid_text(text)).encode("utf-8"), durable=False)
    except OSError:
        pass
