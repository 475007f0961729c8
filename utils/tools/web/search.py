"""Search providers behind one small interface: `await search(client, settings, query) -> [Hit]`.

Each provider is a request builder plus a parser of its documented JSON response:
- SearXNG (self-hosted): `GET {SEARXNG_URL}/search?q=...&format=json` (the instance must allow the
  json format in its settings.yml) -> `{"results": [{"url", "title", "content"}, ...]}`;
- Tavily: `POST https://api.tavily.com/search` with a Bearer key and `{"query", "max_results"}`
  -> `{"results": [{"url", "title", "content", "score"}, ...]}`;
- Brave: `GET https://api.search.brave.com/res/v1/web/search?q=...&count=N` with the
  `X-Subscription-Token` header -> `{"web": {"results": [{"url", "title", "description"}, ...]}}`.
The API key is read from the environment per request and never stored in a hit, a cache entry or an error.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from utils.errors import ToolError
from utils.text import bracket_depth, valid_data
from utils.capped import BadEncoding, TooLarge
from utils.tools.web.fetch import read_capped
from utils.tools.web.settings import KEY_VARS, MAX_SEARCH_BYTES, api_key, call_deadline

_TAGS = re.compile(r"<[^>]+>")  # Brave marks query words in snippets with <strong>


@dataclass
class Hit:
    url: str
    title: str
    snippet: str


def _hits(items: Any, snippet_key: str) -> list[Hit]:
    out, seen = [], set()
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        url = str(item.get("url") or "").strip()
        if not url.startswith(("http://", "https://")) or url in seen:
            continue
        seen.add(url)
        out.append(Hit(url=url, title=_TAGS.sub("", str(item.get("title") or "")).strip(),
                       snippet=_TAGS.sub("", str(item.get(snippet_key) or "")).strip()))
    return out


def parse_searxng(body: Any) -> list[Hit]:
    return _hits(body.get("results") if isinstance(body, dict) else None, "content")


def parse_tavily(body: Any) -> list[Hit]:
    return _hits(body.get("results") if isinstance(body, dict) else None, "content")


def parse_brave(body: Any) -> list[Hit]:
    web = body.get("web") if isinstance(body, dict) else None
    return _hits(web.get("results") if isinstance(web, dict) else None, "description")


PARSERS = {"searxng": parse_searxng, "tavily": parse_tavily, "brave": parse_brave}


def _request(provider: str, url: str, query: str, count: int) -> dict[str, Any]:
    """Method, URL, params/JSON and headers for one search call (the key is added here, nowhere else)."""
    headers = {"Accept": "application/json"}
    if provider == "searxng":
        return {"method": "GET", "url": f"{url}/search", "params": {"q": query, "format": "json"},
                "headers": headers}
    key = api_key(provider)
    if not key:
        raise ToolError(f"{provider} search needs {KEY_VARS[provider]} in the environment")
    if provider == "tavily":
        return {"method": "POST", "url": url, "json": {"query": query, "max_results": count},
                "headers": {**headers, "Authorization": f"Bearer {key}"}}
    return {"method": "GET", "url": url, "params": {"q": query, "count": count},
            "headers": {**headers, "X-Subscription-Token": key}}


MAX_SEARCH_DEPTH = 32  # a documented answer nests 4 levels; deeper is not a search answer


async def search(client: Any, settings: dict, query: str) -> list[Hit]:
    """The provider's top `settings["results"]` hits for `query`; errors are ToolErrors naming the
    provider and status, never the key. The whole call has a deadline, the answer a decoded-size cap
    and a nesting limit (checked before parsing), so no answer can hang, flood memory or recurse."""
    import asyncio

    import httpx

    provider, count = settings["provider"], int(settings["results"])
    req = _request(provider, settings["url"], query, count)
    try:
        status, raw = await asyncio.wait_for(_call(client, req), call_deadline(settings))
    except (httpx.TimeoutException, asyncio.TimeoutError):
        raise ToolError(f"{provider} search timed out") from None
    except TooLarge:
        raise ToolError(f"{provider} search failed: its answer is over {MAX_SEARCH_BYTES:,} bytes") from None
    except BadEncoding as exc:
        raise ToolError(f"{provider} search failed: {exc}") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"{provider} search failed: {type(exc).__name__}") from None
    if status >= 400:
        hint = {403: " (is `json` in the instance's search formats?)"} if provider == "searxng" else \
            {401: f" (check {KEY_VARS.get(provider)})", 403: f" (check {KEY_VARS.get(provider)})"}
        raise ToolError(f"{provider} search answered HTTP {status}{hint.get(status, '')}")
    text = raw.decode("utf-8", errors="replace")
    if bracket_depth(text) > MAX_SEARCH_DEPTH:
        raise ToolError(f"{provider} search failed: its answer is nested too deeply")
    try:
        body = valid_data(json.loads(text))
    except ValueError:
        raise ToolError(f"{provider} search did not answer JSON (is format=json enabled?)") from None
    return PARSERS[provider](body)[:count]


async def _call(client: Any, req: dict[str, Any]) -> tuple[int, bytes]:
    """Status and decoded body of one search request, read with the size cap."""
    req = dict(req)
    async with client.stream(req.pop("method"), req.pop("url"), **req) as resp:
        if resp.status_code >= 400:
            return resp.status_code, b""
        return resp.status_code, await read_capped(resp, MAX_SEARCH_BYTES)
