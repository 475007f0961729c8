"""On-disk cache of model replies, so re-running or resuming a workflow does not pay twice.

The key covers everything that changes the answer (provider, base URL, model, messages, temperature,
max_tokens, and the schema's name and JSON schema): two servers serving the same model name never
share answers. It hashes the base URL without credentials or query and never the API key; the key
is a hash, so a cache file never holds a secret. Entries hold only the model name, the reply text and its token usage.
Writes go to a temp file and are moved into place (`utils.files.write_atomic`), so parallel workers and a
Ctrl-C never leave a half-written entry that a later run would trip over.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from utils.files import write_atomic
from utils.options import home
from utils.text import json_text, scrub, valid_text

CACHE_VERSION = 2


default_home = home  # `$ORCH_HOME`, else ~/.orchestrator, read on every call (utils/options.py)


def cache_key(*, model: str, messages: list[dict[str, Any]], temperature: float | None,
              max_tokens: int | None, schema: type[BaseModel] | None = None, provider: str = "",
              base_url: str | None = None) -> str:
    """sha256 of the canonical JSON of everything that determines the reply."""
    payload = {
        "v": CACHE_VERSION,
        "provider": provider,
        "base_url": base_url,
        "model": model,
        "messages": messages,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "schema": [schema.__name__, schema.model_json_schema()] if schema is not None else None,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class ResponseCache:
    """`get(key)` / `put(key, ...)` over `<home>/cache/<2-char prefix>/<key>.json`."""

    def __init__(self, home: Path | None = None) -> None:
        self._home = Path(home) if home is not None else None

    @property
    def root(self) -> Path:
        return (self._home or default_home()) / "cache"

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry (`model`, `text`, `prompt_tokens`, `completion_tokens`) or None.
        A corrupt or unreadable entry is a miss, never an error: the cache is only an optimisation."""
        try:
            entry = json.loads(self.path_for(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            return None
        return entry

    def put(self, key: str, *, model: str, text: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Store a reply atomically. Failing to write (read-only home, full disk) is silently skipped."""
        path = self.path_for(key)
        entry = {"model": model, "text": text, "prompt_tokens": int(prompt_tokens),
                 "completion_tokens": int(completion_tokens), "stored": round(time.time(), 3)}
        try:  # valid UTF-8, secrets scrubbed: encoding never raises
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, scrub(valid_text(json_text(entry, ensure_ascii=False))).encode("utf-8"), durable=False)
        except OSError:
            pass
