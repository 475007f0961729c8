"""Run folders: one append-only journal per run, from which `run.json` and `--resume` are derived.

A run that costs money must never be lost. Every change of state (the plan, a task ending, a
review) is one line in `journal.jsonl`, handed to a writer thread so the event loop pays O(1) per
task; `run.json` is a checkpoint of the same state (written at the start, after a plan or review,
every few seconds and at the end) that records how far into the journal it goes. Loading a run
reads `run.json` and replays the journal lines after it, so a `kill -9` loses nothing that was
handed over. Files are written through a temporary file and a rename (never half a file), get the
user's umask, and the folder is fsync'd so the rename itself survives a crash.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

from utils.errors import StorageError, UsageError
from utils.events import Event
from utils.files import read_user_text, write_atomic
from utils.run.journal import JournalWriter, read_journal, trim_torn_tail
from utils.run.results import saved_result
from utils.run.state import count_revisions, record_result
from utils.text import bracket_depth, for_file, for_markdown, json_text, scrub, valid_data

FORMAT = "orchestrator-run/1"
JOURNAL, CALLS, RUN_JSON = "journal.jsonl", "calls.jsonl", "run.json"
CHECKPOINT_EVERY_S = 5.0
MAX_RUN_BYTES = 256_000_000  # read whole: a bigger run.json is refused before a byte is parsed
MAX_RUN_DEPTH = 100  # a run nests a model reply (at most 64 levels) a few levels down; deeper is not ours
# Top-level fields the runner sets; results, the plan and reviews arrive as events only.
SET_FIELDS = ("goal", "workflow", "workflow_file", "options", "inputs", "hashes", "revisions_done", "rounds",
              "document", "title", "meta_description", "status", "status_reason", "stopped",
              "totals", "meta", "verification")


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()  # what open() would give: the user's umask, not mkstemp's 0600


def slugify(text: str, max_len: int = 40) -> str:
    """A folder-name-safe slug: ASCII letters, digits and dashes only, so no path can escape."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_len].strip("-") or "run"


def atomic_write(path: Path, data: str | bytes, *, mode: int | None = None) -> None:
    """`utils.files.write_atomic`, durable (fsync of file and folder), with the user's umask (or
    `mode`). Text gets the terminal's neutralising (`for_file`: valid UTF-8, no control or bidi
    characters) and the one scrub of secrets on the way; bytes (a PNG) are written as given."""
    body = data if isinstance(data, bytes) else scrub(for_file(data)).encode("utf-8")
    write_atomic(path, body, mode=FILE_MODE if mode is None else mode)


def clean_stray_temps(folder: Path) -> list[str]:
    """Remove temporary files a killed process left behind (`.<name>.<random>.tmp`)."""
    removed = []
    for tmp in folder.glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp.name)
        except OSError:
            pass
    return removed


RUN_DIR_NAME = re.compile(r"^\d{8}-\d{6}-")  # how every name `new_run_dir` makes begins


def new_run_dir(output_dir: Path, topic: str, workflow: str) -> Path:
    """`<output_dir>/<YYYYmmdd-HHMMSS>-<workflow>-<slug>`, created now so a bad folder fails early."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{slugify(workflow, 20)}-{slugify(topic)}"
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"cannot write to output folder {output_dir}: it is a file, not a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            candidate = output_dir / (base if n == 1 else f"{base}-{n}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as exc:
        raise UsageError(f"cannot write to output folder {output_dir}: {exc.strerror or exc}") from exc
    raise UsageError(f"too many runs named {base} in {output_dir}")


def apply_record(state: dict, record: dict) -> None:
    """Apply one journal record to a run's state: the one place state changes are defined,
    used live by the writer thread and again when a run is loaded (replay)."""
    kind = record.get("k")
    if kind == "set":
        state.update(record.get("v") or {})
    elif kind == "plan":
        state["plan"] = record["plan"]
        state["rounds"] = max(int(state.get("rounds") or 0), int(record.get("round") or 0))
    elif kind == "review":  # so a resumed run keeps counting revisions where it stopped
        reviews = state.setdefault("reviews", [])
        if record["review"] not in reviews:
            reviews.append(record["review"])
        state["revisions_done"] = count_revisions(reviews)
    elif kind == "task":
        record_result(state.setdefault("results", {}), record["result"])
    if "totals" in record:
        state["totals"] = record["totals"]
    if "seq" in record:
        state["journal_seq"] = record["seq"]


def replay(state: dict, journal: Path) -> dict:
    """`state` (a run.json checkpoint) brought up to date with the journal lines written after it."""
    after = state.get("journal_seq") or 0
    for record in read_journal(journal):
        seq = record.get("seq")
        if not isinstance(seq, int) or seq <= after:
            continue
        try:
            apply_record(state, record)
        except (KeyError, TypeError, AttributeError, ValueError):
            continue  # a malformed record: the schema check on load judges what is left
    return state


def encode_run(state: dict) -> str:
    """run.json's text: the header indented, one line per task result (diff- and grep-friendly)."""
    results = state.get("results") or {}
    head = json_text({k: v for k, v in state.items() if k != "results"}, indent=1)
    parts = [f"  {json_text(tid)}: {json_text(r)}" for tid, r in results.items()]
    body = head[:-1].rstrip() + (",\n" if head != "{}" else "")
    return body + ' "results": {\n' + ",\n".join(parts) + "\n }\n}\n"


class RunStore:
    """Keeps a run folder current. Call it with events (`store(event)`): each plan, task and review
    becomes a journal record, written off the event loop. `save(shared)` records the runner's own
    fields (status, document, totals...) and waits until `run.json` is on disk."""

    def __init__(self, run_dir: Path, state: dict | None = None) -> None:
        self.dir = run_dir
        # Owned by the writer thread once records flow: read it after `flush()`.
        self.state: dict[str, Any] = {"format": FORMAT, **(state or {})}
        self._seq = int(self.state.get("journal_seq") or 0)
        self._lock = threading.Lock()
        self._totals: dict | None = None
        self._last_checkpoint = 0.0
        self._writer: JournalWriter | None = None
        if run_dir.is_dir():  # a resumed (or killed) run: no stray temporaries, no torn last line
            clean_stray_temps(run_dir)
            trim_torn_tail(run_dir / JOURNAL)

    def __call__(self, event: Event) -> None:
        if event.kind == "llm":  # running totals: carried by the next record
            self._totals = dict(event.data)
        elif event.kind == "call":
            self._writer_().append(self.dir / CALLS, dict(event.data))
        elif event.kind == "plan":
            self._record({"k": "plan", "plan": event.data["plan"], "round": event.data.get("round") or 0},
                         checkpoint=True)
        elif event.kind == "review":
            self._record({"k": "review", "review": dict(event.data)}, checkpoint=True)
        elif event.kind in ("task", "claims") and "result" in event.data:  # claims: a draft marked by the check
            result = event.data["result"]
            arts = result.get("artifacts")
            blobs = dict(arts) if isinstance(arts, dict) and arts else None
            self._record({"k": "task", "result": saved_result(result)}, artifacts=blobs)

    def save(self, shared: dict) -> None:
        """Record the runner's fields and write run.json now; blocks (never call it on the loop)."""
        fields = {k: shared[k] for k in SET_FIELDS if k in shared}
        fields["updated"] = time.time()
        self._record({"k": "set", "v": fields}, checkpoint=True)
        self.flush()

    def flush(self) -> None:
        """Wait until every record handed over so far is written (journal, files, checkpoints)."""
        if self._writer is not None:
            try:
                self._writer.flush()
            except OSError as exc:
                raise self.storage_error(exc) from None

    def close(self) -> None:
        """Write what is queued and stop the writer thread (a later record starts a new one)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                raise self.storage_error(exc) from None

    def write_document(self, document: str) -> Path:
        path = self.dir / "output.md"
        try:
            atomic_write(path, for_markdown(document))
        except OSError as exc:
            raise self.storage_error(exc) from None
        return path

    def storage_error(self, exc: BaseException) -> StorageError:
        """One line naming the folder, the cause and the free space (a full disk is the usual cause)."""
        try:
            free = f"{shutil.disk_usage(self.dir).free / 1024:,.0f} KiB free"
        except OSError:
            free = "free space unknown"
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return StorageError(f"cannot write to the run folder {self.dir}: {why} ({free})")

    def save_crashed(self, reason: str) -> bool:
        """After a write failure: try once to leave run.json saying `crashed` (a small file may still
        fit where a task output did not). The writer thread writes nothing more, so its state is still."""
        state = {**self.state, "status": "crashed", "stopped": reason}
        try:
            atomic_write(self.dir / RUN_JSON, encode_run(state))
            return True
        except OSError:
            return False

    # -- caller side: O(1) per record ----------------------------------------------------------
    def _writer_(self) -> JournalWriter:
        if self._writer is None:
            self._writer = JournalWriter()
        return self._writer

    def _record(self, record: dict, *, checkpoint: bool = False, artifacts: dict | None = None) -> None:
        if self._totals is not None:
            record["totals"], self._totals = self._totals, None
        failed = self._writer.failed if self._writer is not None else None
        if failed is not None:  # the disk is full (or the folder gone): stop the run at once
            raise self.storage_error(failed)
        with self._lock:  # sequence numbers in queue order, whichever thread emits
            self._seq += 1
            record["seq"] = self._seq
            self._writer_().append(self.dir / JOURNAL, record,
                                   lambda rec: self._apply(rec, artifacts, checkpoint))

    # -- writer thread -------------------------------------------------------------------------
    def _apply(self, record: dict, artifacts: dict | None, checkpoint: bool) -> None:
        if record.get("k") == "task":
            old = (self.state.get("results") or {}).get(record["result"]["id"]) or {}
            apply_record(self.state, record)
            if artifacts:
                self._write_artifacts(artifacts, old.get("artifacts") or [])
        else:
            apply_record(self.state, record)
        now = time.monotonic()
        if checkpoint or now - self._last_checkpoint >= CHECKPOINT_EVERY_S:
            self._last_checkpoint = now
            atomic_write(self.dir / RUN_JSON, encode_run(self.state))

    def _write_artifacts(self, blobs: dict[str, bytes], previous: list[str]) -> None:
        """Write a task's files; a revision's new files replace the old ones (no stale charts)."""
        for name, blob in blobs.items():
            atomic_write(self.dir / Path(name).name, blob)
        for name in set(previous) - set(blobs):
            stale = self.dir / Path(str(name)).name
            if stale.is_file():
                stale.unlink()


def find_run(ref: str, output_dir: Path) -> Path:
    """A run folder from a path or an id (folder name, or a unique prefix of one, in output_dir)."""
    path = Path(ref)
    if not path.is_dir():
        matches = sorted(p for p in output_dir.glob(f"{ref}*") if p.is_dir()) if output_dir.is_dir() else []
        if len(matches) != 1:
            raise UsageError(f"--resume: no run folder '{ref}'" + (" (ambiguous)" if matches else ""))
        path = matches[0]
    return path


def load_run(run_dir: Path) -> dict:
    """A run folder's state: `run.json` plus the journal lines after it, validated against the
    run file's schema (and its recorded inputs' hashes), so a damaged or tampered file is a
    one-line error, never a crash or a read of some other file."""
    from utils.run.runfile import validate_run

    file = run_dir / RUN_JSON
    text = read_user_text(file, "--resume", max_bytes=MAX_RUN_BYTES,
                          missing=f"--resume: {run_dir} is not a run folder (no run.json)",
                          too_big=f"--resume: {file} is over {MAX_RUN_BYTES // 1_000_000} MB; not a run this app wrote")
    if bracket_depth(text) > MAX_RUN_DEPTH:
        raise UsageError(f"--resume: {file} is nested too deeply")
    try:
        state = valid_data(json.loads(text))  # a lone surrogate escaped in the file becomes U+FFFD here
    except ValueError as exc:
        raise UsageError(f"--resume: cannot read {file}: {str(exc)[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"--resume: {file} was not written by this app")
    return validate_run(replay(state, run_dir / JOURNAL), file)
