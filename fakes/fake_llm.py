"""A fake OpenAI-compatible server for tests: real HTTP on 127.0.0.1, scripted replies.

Why real HTTP: the LLM client's retry, timeout, streaming and concurrency logic lives on top of the
real `openai` SDK and its HTTP stack. Mocking the SDK would test our assumptions about it; a socket
tests what actually happens (status codes, Retry-After headers, SSE framing, dropped connections).

Scripting, in the order the server consults it for each chat request:
1. `refuse_json_schema=True` answers 400 to any request with `response_format.type == "json_schema"`;
2. replies queued with `push(...)` / `fail_next(...)`, first in first out;
3. `schema_mode`, for requests that carry a `json_schema` response_format:
   - "literal": a random value that satisfies the schema exactly and nothing more (a server doing
     constrained decoding, as vLLM, Ollama, llama.cpp and OpenAI strict mode do), seeded by `seed`;
   - "malformed": the same, but about 30 % of replies are broken JSON (cut short, or prose around
     an unclosed object);
   - None (default) or "ignore": the server ignores `response_format`; the responder answers;
4. `responder(request) -> Reply | str | dict` (a str is the reply text, a dict is serialised as the
   reply's JSON content); the default responder answers "ok".

Every chat request is recorded in `requests` (with arrival/answer times from `time.monotonic()`),
and `max_in_flight` is the highest number of chat requests the server was handling at once, which
lets tests prove a concurrency limit without sleeping.
"""
from __future__ import annotations

import json
import random
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from fakes.schema_random import random_instance, random_match  # noqa: F401 - re-exported for tests

WAIT_FOR_TIMEOUT_S = 10.0


@dataclass
class Reply:
    """One scripted answer. `text`/`json` fill the assistant message; `status` >= 400 makes it an
    OpenAI-style error (`error_message`); `body` replaces the whole HTTP body verbatim."""

    text: str | None = None
    json: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    latency: float = 0.0
    body: str | bytes | None = None
    content_type: str | None = None
    error_message: str | None = None
    usage: dict[str, int] | None = None
    drop_connection: bool = False
    wait_for: threading.Event | None = None
    chunk_size: int = 7  # characters per streamed delta
    finish_reason: str = "stop"  # "length": the reply was cut at max_tokens
    write: Callable[[Any, "RecordedRequest"], None] | None = None  # writes the whole answer (fakes/fake_faults.py)

    def content(self) -> str:
        if self.text is not None:
            return self.text
        if self.json is not None:
            return json.dumps(self.json)
        return "ok"


@dataclass
class RecordedRequest:
    """What the server received (and, once answered, what it did)."""

    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    t_in: float
    t_out: float | None = None
    status: int | None = None
    query: str = ""

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def model(self) -> str | None:
        return self.body.get("model")

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.body.get("response_format")

    def last_user(self) -> str:
        """The text of the last user message (handy in responders)."""
        for msg in reversed(self.messages):
            if msg.get("role") == "user":
                content = msg.get("content")
                return content if isinstance(content, str) else json.dumps(content)
        return ""


Responder = Callable[[RecordedRequest], "Reply | str | dict"]


def _default_responder(request: RecordedRequest) -> Reply:
    return Reply(text="ok")


def _estimate_usage(request: RecordedRequest, text: str) -> dict[str, int]:
    chars = sum(len(m.get("content") or "") if isinstance(m.get("content"), str) else len(json.dumps(m.get("content")))
                for m in request.messages)
    prompt, completion = max(1, chars // 4), max(1, len(text) // 4) if text else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class FakeLLMServer:
    """Start with `with FakeLLMServer() as server:` or `start()`/`stop()`; point clients at `base_url`."""

    def __init__(self, *, refuse_json_schema: bool = False, require_key: str | None = None,
                 models: list[str] | None = None, keep_alive: bool = True, schema_mode: str | None = None,
                 seed: int = 0, tls: Any = None) -> None:
        self.responder: Responder = _default_responder
        self.tls = tls  # an ssl.SSLContext (server side, with its certificate): serve HTTPS on "localhost"
        self.schema_mode = schema_mode
        self._rng = random.Random(seed)
        self.keep_alive = keep_alive  # like real servers: successful replies keep the connection open
        self.refuse_json_schema = refuse_json_schema
        self.require_key = require_key
        self.models = models or ["fake-model"]
        self.requests: list[RecordedRequest] = []
        self.other_requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "FakeLLMServer":
        handler = type("Handler", (_Handler,), {"fake": self})
        httpd = _Server(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port}/v1" if self.tls is not None else f"http://127.0.0.1:{self.port}/v1"

    # -- scripting -------------------------------------------------------------------------------
    def push(self, *replies: Reply | str | dict) -> None:
        """Queue replies; they answer the next chat requests in order, before the responder."""
        with self._lock:
            self._queue.extend(_as_reply(r) for r in replies)

    def fail_next(self, status: int, n: int = 1, retry_after: float | None = None,
                  message: str | None = None) -> None:
        """Queue `n` error answers (429/500/...), optionally with a `Retry-After` header (seconds)."""
        headers = {"Retry-After": _fmt_seconds(retry_after)} if retry_after is not None else {}
        self.push(*[Reply(status=status, headers=dict(headers), error_message=message) for _ in range(n)])

    def completed(self) -> list[RecordedRequest]:
        """Chat requests answered with status 200."""
        with self._lock:
            return [r for r in self.requests if r.status == 200]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.other_requests.clear()
            self._queue.clear()
            self.max_in_flight = 0

    # -- used by the handler ---------------------------------------------------------------------
    def _next_reply(self, request: RecordedRequest) -> Reply:
        if self.refuse_json_schema and (request.response_format or {}).get("type") == "json_schema":
            return Reply(status=400, error_message="Invalid parameter: 'response_format' of type 'json_schema' "
                                                   "is not supported with this model.")
        with self._lock:
            queued = self._queue.popleft() if self._queue else None
        if queued is not None:
            return queued
        schema = ((request.response_format or {}).get("json_schema") or {}).get("schema")
        if schema is not None and self.schema_mode in ("literal", "malformed"):
            with self._lock:  # one generator, drawn from in arrival order
                value = random_instance(schema, self._rng)
                broken = self.schema_mode == "malformed" and self._rng.random() < 0.3
                cut = self._rng.random()
            text = json.dumps(value)
            if broken:
                text = text[: max(1, int(len(text) * cut))] if cut < 0.5 else f"Here it is: {text[:-1]} -- done"
            return Reply(text=text)
        return _as_reply(self.responder(request))

    def _enter(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _as_reply(value: Reply | str | dict) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(text=value)
    if isinstance(value, (dict, list)):
        return Reply(json=value)
    raise TypeError(f"responder must return Reply, str or dict, got {type(value).__name__}")


_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                404: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error"}
_DEFAULT_MESSAGES = {400: "Bad request.", 401: "Incorrect API key provided.", 403: "Permission denied.",
                     404: "The model does not exist or you do not have access to it.",
                     429: "Rate limit reached. Please try again later.", 500: "The server had an error."}


class _Server(ThreadingHTTPServer):
    """A listen backlog of 5 (the default) resets connections when many workers call at once."""

    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in separate writes; with Nagle on, a kept-alive connection waits for
    # the client's delayed ACK (~40 ms) before the body. Real servers set TCP_NODELAY too.
    disable_nagle_algorithm = True
    fake: FakeLLMServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle client socket cannot pin a handler thread for long

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass

    def _read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = {"_raw": raw.decode("utf-8", "replace")}
        return data if isinstance(data, dict) else {"_raw": data}

    def _record(self, body: dict[str, Any]) -> RecordedRequest:
        return RecordedRequest(method=self.command, path=self.path.split("?")[0], body=body,
                               headers={k.lower(): v for k, v in self.headers.items()}, t_in=time.monotonic(),
                               query=self.path.partition("?")[2])

    def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        keep_alive = status == 200 and self.fake.keep_alive
        if not keep_alive:
            self.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        self.close_connection = not keep_alive

    def _client_gone(self) -> bool:
        """True when the client closed its socket while we were 'thinking' (its timeout fired)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        rec = self._record({})
        with self.fake._lock:
            self.fake.other_requests.append(rec)
        wrong_key = self.fake.require_key is not None and \
            rec.headers.get("authorization") != f"Bearer {self.fake.require_key}"
        if rec.path.rstrip("/") == "/v1/models" and wrong_key:
            self._send_json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
            rec.status = 401
        elif rec.path.rstrip("/") == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.fake.models]
            self._send_json(200, {"object": "list", "data": data})
            rec.status = 200
        else:
            self._send_json(404, {"error": {"message": f"no route {rec.path}", "type": "invalid_request_error"}})
            rec.status = 404
        rec.t_out = time.monotonic()

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self._read_body()
        rec = self._record(body)
        if rec.path.rstrip("/") != "/v1/chat/completions":
            with self.fake._lock:
                self.fake.other_requests.append(rec)
            self._send_json(404, {"error": {"message": f"no route {rec.path}", "type": "invalid_request_error"}})
            rec.status, rec.t_out = 404, time.monotonic()
            return
        self.fake._enter(rec)
        try:
            self._answer_chat(rec)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            rec.status = rec.status or 499  # the client went away (its timeout), like nginx logs it
        finally:
            rec.t_out = time.monotonic()
            self.fake._leave()

    def _answer_chat(self, rec: RecordedRequest) -> None:
        fake = self.fake
        if fake.require_key is not None and rec.headers.get("authorization") != f"Bearer {fake.require_key}":
            reply = Reply(status=401)
        else:
            reply = fake._next_reply(rec)
        if reply.wait_for is not None:
            reply.wait_for.wait(WAIT_FOR_TIMEOUT_S)
        if reply.latency:
            fake._stopping.wait(reply.latency)
        if self._client_gone():
            rec.status = 499  # the client timed out and hung up, like nginx logs it
            return
        if reply.drop_connection:
            rec.status = 0
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if reply.write is not None:
            rec.status = reply.status
            reply.write(self, rec)
            return
        if reply.body is not None:
            payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
            rec.status = reply.status
            self._send(reply.status, payload, reply.content_type or "text/html", reply.headers)
            return
        if reply.status >= 400:
            message = reply.error_message or _DEFAULT_MESSAGES.get(reply.status, f"Error {reply.status}.")
            err = {"error": {"message": message, "type": _ERROR_TYPES.get(reply.status, "server_error"),
                             "param": None, "code": None}}
            rec.status = reply.status
            self._send_json(reply.status, err, reply.headers)
            return
        text = reply.content()
        usage = reply.usage or _estimate_usage(rec, text)
        model = rec.model or "fake-model"
        if rec.stream:
            rec.status = reply.status
            self._stream(rec, reply, text, usage, model)
            return
        data = {"id": f"chatcmpl-fake-{len(fake.requests)}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "usage": usage,
                "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                             "message": {"role": "assistant", "content": text}}]}
        rec.status = reply.status
        self._send_json(reply.status, data, reply.headers)

    def _stream(self, rec: RecordedRequest, reply: Reply, text: str, usage: dict[str, int], model: str) -> None:
        """Server-sent events like OpenAI's: role chunk, content deltas, finish, usage chunk, [DONE]."""
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True
        base = {"id": "chatcmpl-fake-stream", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model}

        def event(choices: list[dict[str, Any]], **extra: Any) -> None:
            self.wfile.write(f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n".encode())
            self.wfile.flush()

        event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        size = max(1, reply.chunk_size)
        for start in range(0, len(text), size):
            event([{"index": 0, "delta": {"content": text[start:start + size]}, "finish_reason": None}])
        event([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}])
        if (rec.body.get("stream_options") or {}).get("include_usage"):
            event([], usage=usage)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
