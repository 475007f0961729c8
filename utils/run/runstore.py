"""Run folders: `run.json` is the shared store made durable, written atomically as the run goes.

A run that costs money must never be lost: the plan is saved when it exists and every task the
moment it ends (the store listens to the same progress events as the display), always through a
temporary file and a rename, so a `kill -9` leaves either the old or the new file, never half of one.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

from utils.errors import UsageError
from utils.events import Event

FORMAT = "orchestrator-run/1"
PERSISTED = ("goal", "workflow", "workflow_file", "options", "inputs", "plan", "results", "reviews",
             "revisions_done", "rounds", "document", "title", "meta_description", "status", "status_reason", "stopped",
             "totals", "meta")


def slugify(text: str, max_len: int = 40) -> str:
    """A folder-name-safe slug: ASCII letters, digits and dashes only, so no path can escape."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_len].strip("-") or "run"


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target."""
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def _jsonable_result(result: dict) -> dict:
    out = dict(result)
    arts = out.get("artifacts") or {}
    out["artifacts"] = sorted(arts) if isinstance(arts, dict) else list(arts)
    return out


def merge_results(saved: dict[str, dict], current: dict[str, dict]) -> dict[str, dict]:
    """Per task, the most recent ending; finished work is never replaced by a task not started.

    Events save tasks as they end, the shared store only after a whole pass: after a Ctrl-C the
    events are fresher, so neither side may simply overwrite the other.
    """
    merged = dict(saved)
    for tid, res in current.items():
        old = merged.get(tid)
        if old is None:
            merged[tid] = res
        elif res.get("state") == "pending" and old.get("state") == "done":
            continue
        elif (res.get("finished") or 0) >= (old.get("finished") or 0):
            merged[tid] = res
    return merged


def snapshot(shared: dict) -> dict:
    """The persisted part of the shared store (no runtime objects, no chart bytes, no secrets)."""
    state = {k: shared[k] for k in PERSISTED if k in shared}
    state["results"] = {k: _jsonable_result(v) for k, v in shared.get("results", {}).items()}
    return state


class RunStore:
    """Keeps `run.json` current; call it with events (`store(event)`) and with `save(shared)`."""

    def __init__(self, run_dir: Path, state: dict | None = None) -> None:
        self.dir = run_dir
        self.state: dict[str, Any] = {"format": FORMAT, **(state or {})}
        self._lock = threading.Lock()
        self._encoded: dict[str, tuple[dict, str]] = {}

    def __call__(self, event: Event) -> None:
        if event.kind == "llm":  # running totals: kept in memory, written with the next task or plan
            with self._lock:
                self.state["totals"] = dict(event.data)
            return
        if event.kind == "plan":
            with self._lock:
                self.state["plan"] = event.data["plan"]
                self.state["rounds"] = max(int(self.state.get("rounds") or 0), int(event.data.get("round") or 0))
                self._write()
        elif event.kind == "review":  # so a resumed run keeps counting revisions where it stopped
            with self._lock:
                reviews = self.state.setdefault("reviews", [])
                if event.data not in reviews:
                    reviews.append(dict(event.data))
                self.state["revisions_done"] = sum(1 for r in reviews if r.get("rerun"))
                self._write()
        elif event.kind == "task" and "result" in event.data:
            result = event.data["result"]
            if result["state"] == "pending" and self.state.get("results", {}).get(result["id"], {}).get("state") == "done":
                return  # never overwrite finished work with a task that was not started
            with self._lock:
                self._write_artifacts(result)
                self.state.setdefault("results", {})[result["id"]] = _jsonable_result(result)
                self._write()

    def save(self, shared: dict) -> None:
        with self._lock:
            for result in shared.get("results", {}).values():
                self._write_artifacts(result)
            fresh = snapshot(shared)
            fresh["results"] = merge_results(self.state.get("results", {}), fresh["results"])
            self.state.update(fresh)
            self.state["updated"] = time.time()
            self._write()

    def write_document(self, document: str) -> Path:
        path = self.dir / "output.md"
        atomic_write(path, document)
        return path

    def _write_artifacts(self, result: dict) -> None:
        arts = result.get("artifacts")
        if isinstance(arts, dict):
            for name, blob in arts.items():
                target = self.dir / Path(name).name
                if not target.exists():
                    atomic_write(target, blob)

    def _write(self) -> None:
        """Write run.json; each task's JSON is encoded once and reused until that task changes.

        The file is rewritten after every task, so re-encoding every finished task each time
        would make a long run quadratic in encoding work.
        """
        parts = []
        for tid, result in self.state.get("results", {}).items():
            cached = self._encoded.get(tid)
            if cached is None or cached[0] is not result:
                cached = (result, json.dumps(result, default=str))
                self._encoded[tid] = cached
            parts.append(f"  {json.dumps(tid)}: {cached[1]}")
        head = json.dumps({k: v for k, v in self.state.items() if k != "results"}, indent=1, default=str)
        body = head[:-1].rstrip() + (",\n" if head != "{}" else "")
        atomic_write(self.dir / "run.json", body + ' "results": {\n' + ",\n".join(parts) + "\n }\n}\n")


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
    """Read a run folder's `run.json`, refusing anything that is not one of our runs."""
    file = run_dir / "run.json"
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--resume: {run_dir} is not a run folder (no run.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--resume: cannot read {file}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"--resume: {file} was not written by this app")
    return state
