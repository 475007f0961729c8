"""Web research settings: which search provider, where, and the fetch limits.

Resolved once per run by the shell (flag > environment > config file > default) into a plain dict
that is saved with the run's inputs, so it must never hold a secret: API keys stay in the
environment and are read by `api_key` at the moment a request is made.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from utils.errors import UsageError
from utils.text import add_secret

PROVIDERS = ("searxng", "tavily", "brave")
KEY_VARS = {"tavily": "TAVILY_API_KEY", "brave": "BRAVE_API_KEY"}
DEFAULT_URLS = {"tavily": "https://api.tavily.com/search",
                "brave": "https://api.search.brave.com/res/v1/web/search"}
DEFAULTS: dict[str, Any] = {
    "results": 5,             # search results fetched per research question
    "connect_timeout_s": 5.0,
    "read_timeout_s": 15.0,
    "max_bytes": 5_000_000,   # a page larger than this is dropped while streaming
    "max_redirects": 5,
    "per_host": 2,            # fetches at once to one host
    "max_fetches": 8,         # fetches at once in the whole run (every research task together)
    "cache": True,
}


MAX_SEARCH_BYTES = 2_000_000  # a search answer is tens of KB: a bigger one is refused while streaming


def call_deadline(settings: Mapping[str, Any]) -> float:
    """The whole-call deadline of one request (search or page hop): a server that drips a byte a
    second never trips the read timeout, so each call also has a limit from start to end."""
    return float(settings["connect_timeout_s"]) + 2 * float(settings["read_timeout_s"])


def api_key(provider: str) -> str | None:
    """The hosted provider's key, from the environment only (never the config file or run.json)."""
    var = KEY_VARS.get(provider)
    key = os.environ.get(var) or None if var else None
    add_secret(key)  # scrubbed from every text from now on, whoever echoes it
    return key


def register_keys(env: Mapping[str, str] | None = None) -> None:
    """Every configured search key is a secret to scrub, even in a run that does not search."""
    env = os.environ if env is None else env
    for var in KEY_VARS.values():
        add_secret(env.get(var))


def resolve_web(*, no_web: bool, no_cache: bool, config: Mapping[str, Any],
                env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The run's web settings: `{"enabled": False, "why": ...}` or the provider, endpoint and limits.

    Nothing is on by default: web research needs `ORCH_SEARCH` (or `search:` in the config file).
    """
    env = os.environ if env is None else env
    register_keys(env)
    if no_web:
        return {"enabled": False, "why": "turned off with --no-web"}
    provider = (env.get("ORCH_SEARCH") or config.get("search") or "").strip().lower()
    if not provider or provider in ("none", "off"):
        return {"enabled": False, "why": "no search provider configured: set ORCH_SEARCH, see README"}
    if provider not in PROVIDERS:
        return {"enabled": False, "why": f"unknown search provider {provider!r} (known: {', '.join(PROVIDERS)})"}
    url = env.get("ORCH_SEARCH_URL") or config.get("search_url") or (
        env.get("SEARXNG_URL") if provider == "searxng" else DEFAULT_URLS.get(provider))
    if not url:
        return {"enabled": False, "why": "searxng needs SEARXNG_URL, e.g. http://localhost:8888"}
    if provider in KEY_VARS and not api_key(provider):
        return {"enabled": False, "why": f"{provider} needs {KEY_VARS[provider]} in the environment"}
    out = dict(DEFAULTS, enabled=True, provider=provider, url=url.rstrip("/"), cache=not no_cache)
    timeout = env.get("ORCH_WEB_TIMEOUT") or config.get("web_timeout_s")
    if timeout:
        try:
            out["read_timeout_s"] = out["connect_timeout_s"] = float(timeout)
        except ValueError:
            raise UsageError(f"web timeout must be a number of seconds, got {timeout!r}") from None
    out["allow_private"] = env.get("ORCH_WEB_ALLOW_PRIVATE", "") in ("1", "true", "yes")
    if config.get("web_results"):
        out["results"] = int(config["web_results"])
    return out
