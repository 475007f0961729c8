"""What a model call is configured with and what it returns: settings, completion, totals.

Kept apart from the client so the CLI and config code can build settings without the HTTP layer.
Settings resolve flag > environment > config file > default; API keys come from flags or the
environment only, never from a config file, and are never printed (`repr=False`). Settings that
can never work (a base URL that is not http(s), a key that cannot go in an HTTP header) are a
one-line UsageError here, before anything is sent, rather than a call retried until it gives up.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from utils.errors import UsageError
from utils.options import PROVIDERS
from utils.text import add_secret


@dataclass
class Completion:
    text: str; data: Any | None  # data = validated schema instance when schema given
    prompt_tokens: int; completion_tokens: int
    model: str; latency_s: float
    cached: bool = False; offline: bool = False
    cached_tokens: int = 0       # prompt tokens the provider served from its prompt cache

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass
class LLMSettings:
    provider: str = "offline"        # "openai" | "offline"
    model: str | None = "gpt-4o-mini"  # None: ask a custom server's /models (`LLMClient.resolve_model`)
    base_url: str | None = None
    api_version: str | None = None   # Azure OpenAI's api-version (or `?api-version=` in the base URL)
    api_key: str | None = field(default=None, repr=False)  # never logged, never saved
    timeout_s: float = 60.0
    max_retries: int | None = None   # the ONE retry layer; None: no count, only the deadline
    retry_deadline_s: float = 120.0  # a transient failure is retried until the call is this old
    backoff_base_s: float = 0.5; backoff_max_s: float = 20.0
    max_concurrency: int = 8         # run-wide ceiling of calls in flight; 429s lower it adaptively
    stream: bool = False
    cache: bool = True
    max_tokens_total: int | None = None
    prices: dict | None = None       # {model: {"input", "output", "cached_input"?: usd_per_1M}}

    def __post_init__(self) -> None:
        add_secret(self.api_key)  # whatever echoes it back (a model, a server error) is scrubbed


@dataclass
class Totals:
    calls: int = 0; prompt_tokens: int = 0; completion_tokens: int = 0; cached_tokens: int = 0
    cached: int = 0; retries: int = 0; seconds: float = 0.0; cost_usd: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["cost_usd"] = None if self.cost_usd is None else round(self.cost_usd, 6)
        return out


def safe_base_url(url: str | None) -> str | None:
    """The base URL as it may be shown or saved: no `user:password@` and no query or fragment
    (where keys hide: `?api-key=`). Anything unparsable is reduced to its scheme and host."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("://", 1)[0] + "://(invalid)" if "://" in url else "(invalid)"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def _is_openai(url: str) -> bool:
    try:
        return (urlsplit(url.strip()).hostname or "") == "api.openai.com"
    except ValueError:
        return False


def check_settings(settings: LLMSettings) -> LLMSettings:
    """Raise UsageError for settings no retry can fix; returns the settings for chaining."""
    url = settings.base_url
    if url:
        shown = safe_base_url(url)
        if not url.isprintable():  # CR/LF would be cleaned away by someone, not by us: refuse
            raise UsageError("the base URL contains control characters (a line break?); check OPENAI_BASE_URL "
                             "and --base-url")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise UsageError(f"base URL '{shown}' is not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"base URL '{shown}' must start with http:// or https:// and name a host "
                             "(e.g. http://localhost:11434/v1)")
    key = settings.api_key
    if key is not None and (not key.isascii() or not key.isprintable() or any(c.isspace() for c in key)):
        raise UsageError("the API key contains characters that cannot be sent in an HTTP header "
                         "(non-ASCII, spaces or control characters); check OPENAI_API_KEY")
    if settings.provider not in PROVIDERS:
        raise UsageError(f"unknown provider '{settings.provider}' (use {', '.join(PROVIDERS)} or auto)")
    return settings


_ENV = {"api_key": "OPENAI_API_KEY", "base_url": "OPENAI_BASE_URL", "model": "ORCH_MODEL",
        "provider": "ORCH_PROVIDER", "api_version": "OPENAI_API_VERSION"}


def settings_from_env(overrides: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
                      env: Mapping[str, str] | None = None) -> LLMSettings:
    """Flag (`overrides`) > environment > config file > defaults. `provider: auto` (the default)
    means openai when a key or base URL is configured, else offline. Keys come from flags/env only."""
    overrides, config = dict(overrides or {}), dict(config or {})
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(LLMSettings):
        if overrides.get(f.name) is not None:
            values[f.name] = overrides[f.name]
        elif f.name in _ENV and (env.get(_ENV[f.name]) or "").strip():
            raw = env[_ENV[f.name]]
            values[f.name] = raw if f.name == "base_url" and ("\r" in raw or "\n" in raw) else raw.strip()
        elif f.name != "api_key" and config.get(f.name) is not None:
            values[f.name] = config[f.name]
    provider = str(values.pop("provider", "auto")).strip().lower()
    if provider != "auto" and provider not in PROVIDERS:
        raise UsageError(f"unknown provider '{provider}' (use {', '.join(PROVIDERS)} or auto)")
    configured = bool(values.get("base_url") or values.get("api_key"))
    if provider == "auto":
        provider = "openai" if configured else "offline"
    elif provider == "openai" and not configured:
        raise UsageError("provider 'openai' needs OPENAI_API_KEY, or OPENAI_BASE_URL / --base-url for a local server")
    if provider == "offline":
        values.pop("api_key", None)
        return LLMSettings(provider=provider, **values)
    if values.get("base_url") and "model" not in values and not _is_openai(str(values["base_url"])):
        values["model"] = None  # another server's models have other names: ask it which it serves
    return check_settings(LLMSettings(provider=provider, **values))
