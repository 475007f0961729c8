"""Append-only journals written by one background thread, so the event loop never waits on disk.

A run's state changes arrive as small records (a task ended, a plan, a review). Putting one on
the queue is O(1) for the event loop; the writer thread encodes it, appends one line, and applies
it to the state that `run.json` is derived from. Lines are flushed after every batch, so a
`kill -9` loses nothing already handed over, and fsync'd once per batch, so the cost of
durability does not grow with the number of tasks.

The thread also runs small jobs in order with the lines (writing `run.json` at a checkpoint,
writing a chart file), so everything touching the run folder happens on one thread, in order.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from utils.text import bracket_depth, json_text, scrub, valid_data

MAX_LINE_BYTES = 64_000_000  # one record (a task result): a longer line is not ours and is skipped
MAX_RECORD_DEPTH = 100
_STOP = object()
_BARRIER = object()  # answered even after a write error, so `flush` never waits for nothing
# The writer wakes when the event loop hands it a record, which is the moment the loop is busy
# sending the dependents' requests; waiting this long first leaves it the GIL for that hand-over
# (about 0.6 ms a hop, bench/bench_hop.py) and gathers more records into each fsync.
SETTLE_S = 0.004


def read_journal(path: Path) -> Iterator[dict]:
    """The records of a journal file. A torn last line (the process was killed mid-write) and any
    line that is not a JSON object are skipped: they were never acknowledged as written. Lines over
    `MAX_LINE_BYTES` or nested too deeply are skipped unparsed, so memory and recursion stay bounded."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return
    with fh:
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw.endswith(b"\n"):
                if len(raw) <= MAX_LINE_BYTES:
                    break  # the end, or a torn last line
                while raw and not raw.endswith(b"\n"):  # an over-long line: skipped unread
                    raw = fh.readline(1 << 20)
                continue
            if bracket_depth(raw.decode("utf-8", "replace")) > MAX_RECORD_DEPTH:
                continue
            try:
                record = valid_data(json.loads(raw))
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def trim_torn_tail(path: Path) -> None:
    """Cut a half-written last line off, so lines appended by a resumed run start on a line of their own."""
    try:
        with path.open("rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if not size:
                return
            pos = size
            while pos > 0:
                step = min(65536, pos)
                fh.seek(pos - step)
                chunk = fh.read(step)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    end = pos - step + cut + 1
                    if end != size:
                        fh.truncate(end)
                    return
                pos -= step
            fh.truncate(0)
    except FileNotFoundError:
        return


class JournalWriter:
    """One writer thread for a run folder's journals. `append` and `call` never block."""

    def __init__(self, encode: Callable[[Any], str] | None = None) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._encode = encode or json_text
        self._files: dict[Path, Any] = {}
        self._error: BaseException | None = None
        self._failed: BaseException | None = None  # stays set: nothing is written after a failure
        self._thread = threading.Thread(target=self._loop, name="run-journal", daemon=True)
        self._thread.start()

    def append(self, path: Path, record: dict, then: Callable[[dict], None] | None = None) -> None:
        """Queue one line for `path`; `then(record)` runs on the writer thread once it is written."""
        self._queue.put((path, record, then))

    def call(self, job: Callable[[], None]) -> None:
        """Run `job` on the writer thread after every line queued before it is written."""
        self._queue.put((None, None, job))

    @property
    def failed(self) -> BaseException | None:
        """The first write error (full disk, folder gone); from then on nothing more is written."""
        return self._failed

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until everything queued so far is on disk (not for the event loop: end of run, tests).
        A write error is raised at once: the barrier is answered even after one."""
        done = threading.Event()
        self._queue.put((_BARRIER, None, done.set))
        if not done.wait(timeout):
            raise TimeoutError("the run journal did not finish writing in time")
        self._raise_error()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=60)
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    # -- the writer thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            time.sleep(SETTLE_S)
            while True:  # take everything already waiting: one flush and fsync per batch
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            dirty: set[Path] = set()
            for item in batch:
                if item is _STOP:
                    stopping = True
                    continue
                path, record, then = item
                if path is _BARRIER:
                    try:
                        self._sync(dirty)
                    except OSError as exc:
                        self._fail(exc)
                    then()
                    continue
                if self._failed is not None:
                    continue  # after a write error nothing more is written: the run is being stopped
                try:
                    if path is None:
                        self._sync(dirty)
                        then()
                        continue
                    self._handle(path).write(scrub(self._encode(record)) + "\n")
                    dirty.add(path)
                    if then is not None:
                        then(record)
                except BaseException as exc:  # noqa: BLE001 - kept and raised on the caller's thread
                    self._fail(exc)
            try:
                self._sync(dirty)
            except OSError as exc:
                self._fail(exc)
        for fh in self._files.values():
            try:
                fh.close()
            except OSError as exc:  # buffered lines that no longer fit
                self._fail(exc)
        self._files.clear()

    def _fail(self, exc: BaseException) -> None:
        self._error = self._error or exc
        self._failed = self._failed or exc

    def _handle(self, path: Path):
        fh = self._files.get(path)
        if fh is None:
            fh = self._files[path] = path.open("a", encoding="utf-8")
        return fh

    def _sync(self, dirty: set[Path]) -> None:
        paths = list(dirty)
        dirty.clear()
        for path in paths:
            fh = self._files[path]
            fh.flush()
            os.fsync(fh.fileno())
