"""Headless Chromium driven over the DevTools protocol on a pipe, for the report.html tests.

Why a pipe and not a port: `--remote-debugging-pipe` needs no free port, no websocket library and no
network at all; messages are JSON separated by NUL bytes on fds 3 (to the browser) and 4 (from it).
One browser serves several pages; every wait is bounded.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DEAD_PROXY = "127.0.0.1:9"  # the discard port: anything sent through the proxy goes nowhere


def _high(fd: int) -> int:
    import fcntl
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, NAMES) if path), None)


@dataclass
class PageLoad:
    """What loading one page did: console errors, exceptions, every request, and what it looks like."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    screenshot: bytes = b""
    pdf: bytes = b""


class Chromium:
    def __init__(self, binary: str, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.profile = tempfile.mkdtemp(prefix="orch-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # above fd 10 first, so the child's dup2 to 3 and 4 can neither clobber nor be a no-op
        to_child_r, from_child_w = (_high(fd) for fd in (to_child_r, from_child_w))

        def wire() -> None:  # in the child: the protocol's fds 3 and 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={self.profile}", f"--proxy-server={DEAD_PROXY}", "--no-first-run",
             "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-extensions", "--hide-scrollbars", "--window-size=1100,1400",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, close_fds=False)  # fds 3 and 4 are inherited (dup2 makes them so)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    # -- protocol ---------------------------------------------------------------------------
    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        want = self._id
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == want:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result") or {}
            self.events.append(reply)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\0", 1)
        return json.loads(line)

    def wait_event(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + self.timeout_s
        while True:
            for e in self.events:
                if e.get("method") == method and e.get("sessionId") == session:
                    return e
            self.events.append(self._read(deadline))

    # -- one page -----------------------------------------------------------------------------
    def load(self, page: Path, probe: str) -> PageLoad:
        """Open `page`, let it load, run `probe` (a JS expression returning JSON-able data) from
        DevTools (not the page: its CSP forbids scripts), and take a screenshot and a PDF."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", {}, session)
        self.events.clear()
        self.send("Page.navigate", {"url": page.resolve().as_uri()}, session)
        self.wait_event("Page.loadEventFired", session)
        out = PageLoad()
        out.facts = json.loads(self.send("Runtime.evaluate", {"expression": f"JSON.stringify({probe})",
                                                              "returnByValue": True}, session)["result"]["value"])
        out.screenshot = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"}, session)["data"])
        out.pdf = base64.b64decode(self.send("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69},
                                             session)["data"])
        for e in self.events:
            if e.get("sessionId") != session:
                continue
            p = e.get("params") or {}
            if e.get("method") == "Runtime.exceptionThrown":
                out.errors.append(str(p.get("exceptionDetails")))
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.errors.append(str(p.get("args")))
            elif e.get("method") == "Log.entryAdded" and (p.get("entry") or {}).get("level") == "error":
                out.errors.append(str(p["entry"].get("text")))
            elif e.get("method") == "Network.requestWillBeSent":
                out.requests.append(str((p.get("request") or {}).get("url")))
        self.send("Target.closeTarget", {"targetId": target})
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
