"""`--batch FILE`: many goals, each one ordinary run, driven by one process (or by Ray).

Why not a shell loop: separate processes each had their own rate-limit back-off, cache handle and
token budget, no shared view of progress and no record of which goals were done. Here every goal is
`run_workflow` (utils/app/run.py), routed and checked exactly as on the command line, and all of
them share ONE model-call limit with its 429 back-off and ONE token budget
(`utils.model.limits.CallPool`) and the one on-disk response cache.

The batch folder (`--output-dir`, default runs/batch-<file name>) holds the run folders,
`batch.jsonl` (one record per goal as it starts and as it ends: its run folder and status) and, at
the end, `summary.csv`. Running the same command again skips goals that ended ok, resumes the others
from their run folders (journal: no finished task is paid twice) and starts the rest. A run folder
also names its goal in run.json (`meta.batch`), so a goal killed before its record was written is
found again.
"""
from __future__ import annotations

import csv
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from utils.app.batch_file import BadLine, Goal, read_batch
from utils.app.settings import Settings, build_settings
from utils.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, OrchError, UsageError
from utils.options import BATCH_WORKERS

LOG_FILE, SUMMARY_FILE = "batch.jsonl", "summary.csv"
SUMMARY_COLUMNS = ("goal", "id", "status", "workflow", "calls", "tokens", "cost", "seconds", "folder")
# batch-level flags that are not a goal's: the batch owns display, budget and where folders go
BATCH_ONLY = ("batch", "batch_workers", "executor", "ray_address", "ray_cpus", "json", "quiet", "max_tokens_total",
              "output_dir", "topic", "interactive", "resume", "run_plan")


@dataclass
class Job:
    """One goal to run, as a worker (thread or Ray task) needs it: plain data, picklable."""
    key: str
    line: int
    id: str | None
    goal: str
    flags: dict[str, Any]
    version: str | None = None
    folder: str | None = None   # a run folder to resume


@dataclass
class Progress:
    """A goal's live state for the progress table."""
    job: Job
    state: str = "queued"
    workflow: str = ""
    done: int = 0
    tasks: int = 0
    tokens: int = 0
    row: dict | None = None      # its summary row, once it ended
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- the record of a batch

class BatchLog:
    """`batch.jsonl`: appended as goals start and end; the last record of a goal is its state."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOG_FILE
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict]:
        last: dict[str, dict] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return last
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--batch: cannot read {self.path}: {str(exc)[:200]}") from None
        for raw in lines:  # a torn last line (killed mid-write) is skipped, never an error
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                last[record["key"]] = record
        return last

    def append(self, record: dict) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({**record, "at": round(time.time(), 3)}, ensure_ascii=False) + "\n")


def drop_empty_runs(folder: Path) -> list[str]:
    """Remove this batch's empty run folders: a driver killed between making a goal's folder and
    its first save (or a Ray driver before it logged the folder) leaves one, and the re-run starts
    that goal in a new one. Only empty folders named like runs: nothing of the user's is touched."""
    from utils.run.runstore import RUN_DIR_NAME

    gone = []
    for d in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            if d.is_dir() and RUN_DIR_NAME.match(d.name) and not any(d.iterdir()):
                d.rmdir()
                gone.append(d.name)
        except OSError:
            continue
    return gone


def found_folders(folder: Path) -> dict[str, str]:
    """Run folders of this batch by goal key, read from their run.json (`meta.batch.key`)."""
    found: dict[str, str] = {}
    for run_json in sorted(folder.glob("*/run.json")):
        try:
            key = ((json.loads(run_json.read_text(encoding="utf-8")).get("meta") or {}).get("batch") or {}).get("key")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(key, str):
            found[key] = str(run_json.parent)
    return found


# ---------------------------------------------------------------- one goal (a thread or a Ray task)

def goal_flags(batch_flags: dict[str, Any], goal: Goal, output_dir: Path) -> dict[str, Any]:
    """A goal's flags as if typed on the command line: the batch's own, the line's on top."""
    base = {k: v for k, v in batch_flags.items() if k not in BATCH_ONLY}
    return {**base, **goal.flags, "topic": goal.goal, "output_dir": str(output_dir)}


def run_goal(job: Job, pool: Any, on_change: Callable[[dict], None],
             on_folder: Callable[[str, str], None]) -> dict:
    """Run one goal to its end, the ordinary way, and return its summary row. `on_change` gets
    progress snapshots; `on_folder(folder, workflow)` is told the run folder before the run starts."""
    from utils.app.batch_view import GoalDisplay
    from utils.app.request import request_for
    from utils.app.run import run_workflow
    from utils.run.runstore import new_run_dir

    started = time.monotonic()
    row = {"goal": job.goal, "id": job.id, "line": job.line, "key": job.key, "status": "failed", "workflow": None,
           "calls": 0, "tokens": 0, "cost": None, "seconds": None, "folder": job.folder, "error": None}
    display = GoalDisplay(on_change)
    try:
        flags = dict(job.flags)
        if job.folder:  # resume: the saved goal and workflow; the line's options by the one precedence rule
            flags.update(topic=None, resume=job.folder, example=None, workflow_file=None, data=None, input=None)
        settings = build_settings(flags, version=job.version).replace(model_pool=pool)
        display.change(state="routing" if not job.folder else "resuming")
        request = request_for(settings, display)
        request.meta = {**request.meta, "batch": {"key": job.key, "line": job.line}}
        if request.run_dir is None:
            request.run_dir = new_run_dir(settings.output_dir, request.goal, request.spec.name)
        row.update(folder=str(request.run_dir), workflow=request.spec.name)
        on_folder(str(request.run_dir), request.spec.name)
        display.change(state="running", workflow=request.spec.name)
        outcome = run_workflow(settings, request, display, offline_note=False, show_document=False)
        info = outcome.info
        row.update(status=info["status"], calls=info["calls"], cost=info["cost_usd"],
                   tokens=info["prompt_tokens"] + info["completion_tokens"],
                   error=info.get("reason") or outcome.error)
    except OrchError as exc:
        row["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in one goal must not stop the batch; the row says it
        row.update(status="crashed", error=f"{type(exc).__name__}: {exc}")
    row["seconds"] = round(time.monotonic() - started, 3)
    display.change(state=row["status"], final=True)
    return row


# ---------------------------------------------------------------- the batch

def run_batch(settings: Settings, parse_line: Callable[[list[str]], dict] | None) -> int:
    """Read the file, plan what is left, run it (threads or Ray), write summary.csv, exit code."""
    from utils.app.batch_view import BatchView, final_lines
    from utils.app.render import choose_mode
    from utils.app.run import OFFLINE_NOTE
    from utils.model.limits import AdaptiveLimit, CallPool, TokenBudget
    from utils.model.settings import settings_from_env

    if parse_line is None:
        raise UsageError("--batch needs the command line's parser (run it through main.py)")
    path = Path(settings.flag("batch"))
    folder = Path(settings.flags["output_dir"]) if settings.flag("output_dir") else \
        Path(settings.config.output_dir or "runs") / f"batch-{path.stem}"
    executor = settings.flag("executor") or "local"
    if executor == "ray":
        from utils.app.batch_ray import import_ray
        import_ray()  # without Ray: one line saying how to install it, before anything is read or run
    if executor == "ray":
        folder = folder.resolve()  # Ray workers need not share this process's working directory
    goals, bad = read_batch(path, parse_line)
    jobs, bad = plan_jobs(settings, goals, bad, folder)
    log = BatchLog(folder)
    done_before = log.load()
    for b in bad:
        print(f"error: {path}:{b.line}: {b.error} (line skipped)", file=sys.stderr)
    drop_empty_runs(folder)
    found = found_folders(folder)
    todo, rows = [], {}
    for job in jobs:
        record = done_before.get(job.key) or {}
        if record.get("status") == "ok" and record.get("folder") and Path(record["folder"]).is_dir():
            rows[job.key] = {**{k: record.get(k) for k in (*SUMMARY_COLUMNS, "line", "key", "error")},
                             "line": job.line, "skipped": True}
            continue
        job.folder = record.get("folder") if record.get("folder") and Path(record["folder"]).is_dir() \
            else found.get(job.key)
        if job.folder and not (Path(job.folder) / "run.json").is_file():
            job.folder = None  # killed before its first save: nothing to resume, start afresh
        todo.append(job)
    model = settings_from_env(settings.llm_overrides(), settings.llm_config())
    budget_total = settings.options.get("max_tokens_total")
    spent = sum(int(r.get("tokens") or 0) for r in done_before.values())
    limit_ceiling = int(model.max_concurrency)
    pool = CallPool(AdaptiveLimit(limit_ceiling), TokenBudget(budget_total, spent) if budget_total else None)
    mode = choose_mode(quiet=settings.quiet, json_out=settings.json)
    if model.provider == "offline" and mode != "json":
        print(f"warning: {OFFLINE_NOTE}", file=sys.stderr)
    workers = int(settings.flag("batch_workers") or BATCH_WORKERS)
    progress = {job.key: Progress(job) for job in todo}
    view = BatchView(mode, total=len(jobs), finished=len(rows))
    started = time.monotonic()
    interrupted = False
    try:
        if executor == "ray":
            import contextlib

            from utils.app.batch_ray import run_on_ray
            # Ray prints its error messages (a worker died...) to stdout: with --json, stdout is the document
            with contextlib.redirect_stdout(sys.stderr) if settings.json else contextlib.nullcontext():
                ended, peak = run_on_ray(todo, settings, log, progress, view, budget_total=budget_total,
                                         spent=spent, limit=limit_ceiling)
        else:
            ended = run_local(todo, workers, pool, log, progress, view)
            peak = pool.limit.peak
    except KeyboardInterrupt:
        interrupted, peak = True, pool.limit.peak
        ended = {k: p.row for k, p in progress.items() if p.row}
        for key, p in progress.items():
            if p.row is None and p.state not in ("queued",):
                log.append({"key": key, "line": p.job.line, "goal": p.job.goal, "id": p.job.id,
                            "status": "interrupted", "folder": p.extra.get("folder")})
    finally:
        view.stop()
    rows.update(ended)
    ordered = [rows[j.key] for j in jobs if j.key in rows]
    write_summary(folder, ordered)
    code = EXIT_INTERRUPTED if interrupted else \
        EXIT_OK if not bad and len(ordered) == len(jobs) and all(r["status"] == "ok" for r in ordered) else EXIT_FAILED
    doc = {"batch": str(path), "folder": str(folder), "summary_csv": str(folder / SUMMARY_FILE),
           "executor": executor, "seconds": round(time.monotonic() - started, 3), "goals": ordered,
           "bad_lines": [asdict(b) for b in bad], "peak_calls_in_flight": peak,
           "counts": counts(ordered), "exit_code": code}
    if settings.json:
        print(json.dumps(doc, indent=1))
    else:
        for line in final_lines(doc, quiet=settings.quiet):
            print(line)
    return code


def plan_jobs(settings: Settings, goals: list[Goal], bad: list[BadLine], folder: Path) -> tuple[list[Job], list[BadLine]]:
    """Each goal's flags checked now by `build_settings`, as the command line would (conflicting
    flags, a topic too long...): a goal that fails is a bad line, reported before anything runs."""
    jobs = []
    for goal in goals:
        flags = goal_flags(dict(settings.flags), goal, folder)
        try:
            build_settings(flags, version=settings.version)
        except OrchError as exc:
            bad.append(BadLine(goal.line, str(exc)))
            continue
        jobs.append(Job(key=goal.key, line=goal.line, id=goal.id, goal=goal.goal, flags=flags, version=settings.version))
    return jobs, sorted(bad, key=lambda b: b.line)


def run_local(jobs: list[Job], workers: int, pool: Any, log: BatchLog, progress: dict[str, Progress],
              view: Any) -> dict[str, dict]:
    """The goals on `workers` threads of this process (each its own event loop), sharing `pool`."""
    warm_imports()
    queue = list(reversed(jobs))
    lock = threading.Lock()
    ended: dict[str, dict] = {}

    def work() -> None:
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            p = progress[job.key]
            row = run_goal(job, pool, lambda snap, p=p: _apply(p, snap), _folder_recorder(log, job, p))
            log.append(row)
            with lock:
                p.row = ended[job.key] = row

    threads = [threading.Thread(target=work, name=f"batch-{i}", daemon=True) for i in range(min(workers, len(jobs)))]
    for t in threads:
        t.start()
    view.start(progress)
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=0.25)
            view.refresh(progress)
    view.refresh(progress)
    return ended


def warm_imports() -> None:
    """Import what runs import lazily, once, here: first imports racing in several threads can meet
    a module another thread has only half initialised (a circular import between tool modules)."""
    import importlib
    import pkgutil

    import flows  # noqa: F401 - imports nodes and the engine
    import utils.run
    import utils.tools
    for package in (utils.run, utils.tools):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)


def _apply(p: Progress, snap: dict) -> None:
    for k in ("state", "workflow", "done", "tasks", "tokens"):
        if k in snap:
            setattr(p, k, snap[k])


def _folder_recorder(log: BatchLog, job: Job, p: Progress) -> Callable[[str, str], None]:
    def record(folder: str, workflow: str) -> None:
        p.extra["folder"] = folder
        log.append({"key": job.key, "line": job.line, "goal": job.goal, "id": job.id, "status": "running",
                    "folder": folder, "workflow": workflow})
    return record


def counts(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def write_summary(folder: Path, rows: list[dict]) -> Path:
    """summary.csv: one row per goal, in the file's order."""
    from utils.run.runstore import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    lines: list[list[str]] = [list(SUMMARY_COLUMNS)]
    for r in rows:
        lines.append(["" if r.get(c) is None else str(r.get(c)) for c in SUMMARY_COLUMNS])
    import io
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    path = folder / SUMMARY_FILE
    atomic_write(path, buf.getvalue())
    return path
