"""One request to an OpenAI-compatible server through the official `openai` SDK, and what its
failure means.

`Transport.send` sends once and sorts every failure into three kinds, which is all the client's
single retry loop needs to know: `Transient` (429, 5xx, timeouts, lost connections, a stream cut
short: worth another try), `Rejected` (400/422: maybe an unsupported parameter, which structured
output can work around) and `Fatal` (401, 404, a bad URL, a reply that is not JSON or too large:
retrying cannot help).

The SDK brings what users expect from it (OPENAI_ORG_ID/OPENAI_PROJECT_ID, Azure OpenAI, proxies
from the environment, typed errors); its own retries are off (`max_retries=0`) so the app's loop is
the only one. Three things stay ours, because the SDK does not bound them: every request has one
whole-call deadline (`timeout_s`; the SDK's timeout is per read, so a server dripping a byte every
few seconds never trips it), every body is decoded with a cap on the decoded bytes (utils/capped.py,
a gzip bomb stops at the cap), and the reply is read defensively (utils/model/reply.py). The SDK
(0.3-0.9 s of CPU to import) loads in a background thread (utils/model/preload.py), so `--help`,
offline runs and `import utils.tools` never pay for it.
"""
from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from utils.capped import BadEncoding, TooLarge, decoded, encodings
from utils.model import preload
from utils.model.preload import tls_context
from utils.model.reply import NotJSON, Parsed, StreamReader, parse_reply, server_message, wait_hint
from utils.model.settings import LLMSettings, safe_base_url

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "not-needed"  # Ollama, vLLM, LM Studio... accept any key
MAX_REPLY_BYTES = 8_000_000     # decoded; the longest real reply is well under 1 MB
HTML_500_TRIES = 3              # a 500 with an HTML page is a broken server, not a busy one
_AZURE_HOSTS = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")


class Transient(Exception):
    """Worth retrying; `final` is the give-up message, `overload` marks a 429, `max_tries` bounds
    the attempts where the deadline alone would retry for too long."""

    def __init__(self, reason: str, final: str, detail: str = "", retry_after: float | None = None,
                 overload: bool = False, refused: bool = False, max_tries: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.final, self.detail = reason, final, detail
        self.retry_after, self.overload, self.refused, self.max_tries = retry_after, overload, refused, max_tries


class Rejected(Exception):
    """The server refused the request as invalid (400/422): maybe an unsupported parameter."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Fatal(Exception):
    """No retry can succeed; the message is one line without the call's purpose."""


class Transport:
    """The SDK client for one base URL and key, re-created per event loop (its pool is tied to it)."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.shown_url = safe_base_url(self.base_url)
        self._sdk: Any = None
        self._sdk_loop: Any = None
        self._stream_options_ok = True
        preload.preload_http()  # a no-op when main.py started it already

    async def aclose(self) -> None:
        if self._sdk is not None:
            sdk, self._sdk = self._sdk, None
            await sdk.close()

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._sdk is None or self._sdk_loop is not loop:
            self._sdk, self._sdk_loop = self._new_client(), loop
        return self._sdk

    def _new_client(self) -> Any:
        """AsyncOpenAI, or AsyncAzureOpenAI for an Azure host; a query in the base URL
        (`?api-version=`) is sent with every request through `default_query`."""
        tls_context()  # waits for the preload thread: importing openai in two threads at once can deadlock
        import openai

        parts = urlsplit(self.base_url)
        query = dict(parse_qsl(parts.query))
        base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        http = openai.DefaultAsyncHttpxClient(verify=tls_context(), event_hooks={"response": [_capped]},
                                              headers={"Accept-Encoding": "gzip, deflate"})
        common = dict(api_key=self.settings.api_key or PLACEHOLDER_KEY, max_retries=0,
                      timeout=self.settings.timeout_s, http_client=http)
        if (parts.hostname or "").endswith(_AZURE_HOSTS):
            version = query.pop("api-version", None) or self.settings.api_version
            return openai.AsyncAzureOpenAI(azure_endpoint=base.split("/openai")[0], api_version=version,
                                           default_query=query or None, **common)
        return openai.AsyncOpenAI(base_url=base, default_query=query or None, **common)

    async def send(self, messages: list[dict], model: str, temperature: float, max_tokens: int | None,
                   response_format: dict | None, on_delta: Callable[[str], None] | None = None) -> tuple[Parsed, float]:
        """One request under one whole-call deadline; raises Transient, Rejected or Fatal.
        Streaming (`stream: true` in the settings) hands each piece of text to `on_delta`."""
        self._client()  # the deadline is the server's: it starts once the SDK is loaded
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                parsed = await self._send(messages, model, temperature, max_tokens, response_format, on_delta)
        except (Transient, Rejected, Fatal):
            raise
        except TimeoutError:
            raise self._timeout() from None
        except NotJSON:
            raise Fatal(self._not_json()) from None
        except TooLarge as exc:
            raise Fatal(f"the reply from {self.shown_url} is {exc}") from None
        except BadEncoding as exc:
            raise Fatal(f"the reply from {self.shown_url} cannot be decoded: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - sorted by `_sdk_error`; anything else is a bug, re-raised
            raise self._sdk_error(exc, model) from None
        return parsed, time.monotonic() - started

    async def _send(self, messages, model, temperature, max_tokens, response_format, on_delta) -> Parsed:
        body: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature}
        body.update({k: v for k, v in (("max_tokens", max_tokens), ("response_format", response_format)) if v})
        create = self._client().chat.completions.with_streaming_response.create
        if not self.settings.stream:
            async with create(**body) as resp:
                return parse_reply(await resp.read())
        extra = {"stream_options": {"include_usage": True}} if self._stream_options_ok else {}
        try:
            async with create(**body, stream=True, **extra) as resp:
                return await _read_events(resp, on_delta, self.shown_url)
        except Exception as exc:
            error = self._sdk_error(exc, model)
            if not (extra and isinstance(error, Rejected) and "stream_options" in error.message):
                raise
        self._stream_options_ok = False  # an older server that refuses `stream_options`: ask without
        return await self._send(messages, model, temperature, max_tokens, response_format, on_delta)

    async def models(self) -> list[str]:
        """The ids the server's `/models` lists (for a custom base URL given no model)."""
        sdk = self._client()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                page = await sdk.models.list()
                ids = [getattr(m, "id", None) for m in page.data]
        except (TimeoutError, TooLarge, BadEncoding):
            raise Fatal(f"{self.shown_url}/models did not answer a list of models") from None
        except Exception as exc:  # noqa: BLE001 - sorted by `_sdk_error`
            error = self._sdk_error(exc, "")
            if isinstance(error, Fatal) and getattr(exc, "status_code", 404) != 404:
                raise error from None  # a refused key says so, not "no list of models"
            raise Fatal(f"{self.shown_url}/models did not answer a list of models"
                        f" ({getattr(error, 'final', None) or str(error)})") from None
        return [i for i in ids if isinstance(i, str) and i]

    # -- what a failure means ----------------------------------------------------------------------
    def _sdk_error(self, exc: BaseException, model: str) -> Exception:
        """The SDK's (or its HTTP layer's) exception as Transient, Rejected or Fatal; a bug is re-raised."""
        import openai

        if isinstance(exc, (Transient, Rejected, Fatal)):
            return exc
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc.status_code, exc.response, model)
        if isinstance(exc, openai.APITimeoutError):
            return self._timeout()
        if isinstance(exc, UnicodeEncodeError):  # headers are encoded ascii/latin-1; the JSON body utf-8
            if exc.encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
                return Fatal(f"cannot send a request to {self.shown_url}: its text holds characters that are "
                             f"not valid Unicode ({exc.reason})")
            return Fatal(f"cannot send a request to {self.shown_url}: a header value (the API key?) holds "
                         "characters HTTP does not allow")
        if isinstance(exc, openai.APIConnectionError):
            exc = exc.__cause__ or exc
        name = type(exc).__name__
        if name in ("UnsupportedProtocol", "InvalidURL", "LocalProtocolError"):
            return Fatal(f"cannot send a request to {self.shown_url}: the URL is not a valid http(s) URL")
        if "Timeout" in name:
            return self._timeout()
        if "Connect" in name:
            return Transient(f"connection failed: {exc}", f"cannot reach {self.shown_url}",
                             " (is the server running? is the base URL right?)", refused=True)
        if _http_error(exc):
            detail = " ".join(str(exc).split())[:160] or name or "connection closed"
            return Transient(f"connection lost: {detail}", f"connection to {self.shown_url} lost", f": {detail}")
        raise exc

    def _status_error(self, status: int, response: Any, model: str) -> Exception:
        try:
            raw = response.content.decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - a body that could not be read: the status still says enough
            raw = ""
        msg, url, html = server_message(raw), self.shown_url, raw.lstrip().startswith("<")
        if status == 429:
            return Transient(f"429 rate limited: {msg}", f"rate limited (429) by {url}", f": {msg}",
                             wait_hint(response.headers), overload=True)
        if status >= 500 or status in (408, 409):
            return Transient(f"{status} server error: {msg}", f"server error {status} from {url}",
                             f": {msg}", wait_hint(response.headers),
                             max_tries=HTML_500_TRIES if html and status == 500 else None)
        if status == 401:
            return Fatal("authentication failed (check OPENAI_API_KEY)")
        if status == 403:
            return Fatal(f"permission denied by {url}: {msg}")
        if status == 404:
            return Fatal(f"model '{model}' not found at {url} ({msg})")
        if status == 400 and "No connected db" in msg:  # a LiteLLM proxy, for a key it does not know
            return Fatal(f"authentication failed at {url}: it answered '{msg}', which a LiteLLM proxy says "
                         "for a key it does not know (check OPENAI_API_KEY)")
        if html or not raw.strip().startswith(("{", "[")):
            return Fatal(self._not_json(f" (HTTP {status})"))
        return Rejected(status, msg)

    def _timeout(self) -> Transient:
        return Transient("timeout", f"no answer from {self.shown_url} within {self.settings.timeout_s:g}s")

    def rejected(self, exc: Rejected) -> str:
        return f"request rejected by {self.shown_url} ({exc.status}): {exc.message}"

    def _not_json(self, extra: str = "") -> str:
        return (f"server at {self.shown_url} did not answer JSON{extra}; is this an OpenAI-compatible "
                "API (the base URL usually ends in /v1)?")


def _http_error(exc: BaseException) -> bool:
    """An error of the HTTP layer (httpx or httpx2): a lost connection, a broken reply."""
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "h11", "openai")


async def _read_events(resp: Any, on_delta: Callable[[str], None] | None, url: str) -> Parsed:
    reader = StreamReader()
    async for line in resp.iter_lines():
        text = reader.line(line)
        if text and on_delta is not None:
            on_delta(text)
        if reader.done:
            break
    parsed = reader.result()
    if not reader.finished:
        raise Transient("stream ended early", f"the reply stream from {url} ended before the reply was finished",
                        " (no finish reason)")
    return parsed


async def _capped(response: Any) -> None:
    """httpx response hook: the body is decoded here, capped at MAX_REPLY_BYTES as it streams, and
    the HTTP package's own (unbounded) decoder sees plain bytes."""
    lib = sys.modules[type(response).__module__.split(".")[0]]
    try:
        applied: list[str] | BadEncoding = encodings(response.headers.get_list("content-encoding"))
    except BadEncoding as exc:
        applied = exc  # raised when the body is read, so the response is closed as usual
    if "content-encoding" in response.headers:
        del response.headers["content-encoding"]
    response.stream = _bounded(response.stream, applied, lib.AsyncByteStream)


def _bounded(stream: Any, applied: "list[str] | BadEncoding", base: type) -> Any:
    """The response stream, decoded and capped (a subclass of the HTTP package's AsyncByteStream,
    which its response requires)."""

    class Bounded(base):  # type: ignore[misc, valid-type]
        async def __aiter__(self):  # noqa: ANN204
            if isinstance(applied, BadEncoding):
                raise applied
            async for piece in decoded(stream.__aiter__(), applied, MAX_REPLY_BYTES):
                yield piece

        async def aclose(self) -> None:
            await stream.aclose()

    return Bounded()
