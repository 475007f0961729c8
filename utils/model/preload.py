"""The SDK (`openai`, its HTTP package and the CA certificates) loaded in a background thread.

`import openai` is the largest single cost before the first request (bench/bench_first_request.py),
so it starts as early as the process knows a model will be called: `main.py` starts it right after
parsing the flags when a key, a base URL or `--provider openai` is given, and the model client starts
it (a no-op by then) when it is made. `--help`, offline runs and `import utils.tools` never pay for it.

Standard library only, so `main.py` can import this before anything heavy. Whoever needs the SDK
calls `tls_context()` first: it waits for the thread (importing one package in two threads at once
can deadlock), then imports normally (a no-op once loaded, the real error if the thread failed).
"""
from __future__ import annotations

import importlib
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

_lock = threading.Lock()
_thread: threading.Thread | None = None
_tls: list[Any] = []  # at most one SSLContext, appended by whichever thread builds it first


def preload_http() -> None:
    """Start importing the SDK and loading the CA certificates in a daemon thread (once per process).
    The thread is published only once started, so a concurrent `tls_context` never joins a thread
    that has not started (a batch makes clients in several threads at once)."""
    global _thread
    with _lock:
        if _thread is not None or _tls:
            return
        thread = threading.Thread(target=_load_quietly, name="http-import", daemon=True)
        thread.start()
        _thread = thread


def _load_quietly() -> None:
    try:
        context = http_lib(importlib.import_module("openai")).create_ssl_context()
        with _lock:
            if not _tls:
                _tls.append(context)
    except Exception:  # noqa: BLE001 - the real import in `tls_context` reports it
        pass


def http_lib(openai: Any) -> Any:
    """The HTTP package the SDK is built on (httpx, or httpx2 in newer SDKs)."""
    return sys.modules[openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0]]


def tls_context() -> "ssl.SSLContext":
    """The process's one verifying SSL context (the SDK's HTTP package's defaults, which honour
    SSL_CERT_FILE/DIR). Why shared: building one parses the whole CA bundle, 60-100 ms of CPU that
    a lazily made client would pay right before its first request; the preload thread builds it."""
    thread = _thread
    if thread is not None:
        thread.join()  # already importing the SDK, which the caller needs anyway
    if not _tls:
        import openai

        context = http_lib(openai).create_ssl_context()
        with _lock:
            if not _tls:
                _tls.append(context)
    return _tls[0]
