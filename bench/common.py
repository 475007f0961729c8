"""Shared setup for the benchmarks: paths, a private ORCH_HOME, synthetic plans, runs, tables.

Benchmarks measure; they assert nothing. A script exits non-zero only when a run inside it fails
(a task not done, a CLI exit code other than 0), never because a target is missed.

Every figure comes from the real graph (`flows.build_flow`) talking to the fake OpenAI-compatible
server of the tests (`fakes/fake_llm.py`: real HTTP on 127.0.0.1, fixed latency per reply, a record
of every request with `time.monotonic()` arrival and answer times), unless a table says otherwise.
"""
from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # write nothing into the repository, not even __pycache__

import asyncio  # noqa: E402
import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterable  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A private home before any app module reads it: the cache and config never touch ~/.orchestrator.
_HOME = Path(tempfile.mkdtemp(prefix="orch-bench-"))
os.environ["ORCH_HOME"] = str(_HOME / "home")
(_HOME / "home").mkdir()
for _name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ORCH_MODEL", "ORCH_PROVIDER"):
    os.environ.pop(_name, None)
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import BenchScript, FakeLLMServer, RecordedRequest, Reply, plan_json, request_kind, task_id  # noqa: E402

LATENCY_S = 0.1          # the fixed per-call latency of the fixed-latency plans
MIXED_LATENCIES_S = (0.05, 0.1, 0.15, 0.2)
SEED = 20261125
Task = tuple  # (id, role, depends_on)


def scratch(name: str) -> Path:
    """A fresh folder under this process's temp dir (removed at exit)."""
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_HOME))
    return path


# -- the fake server --------------------------------------------------------------------------------
def request_body(tid: str, prompt_chars: int) -> bytes:
    """A raw chat request (no app) of about `prompt_chars` that the fake server attributes to `tid`."""
    prompt = "x" * prompt_chars + f"\n\n# Your task [{tid}]"
    return json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": prompt}],
                       "temperature": 0.2}).encode()


def section_text(tid: str, chars: int = 0) -> str:
    body = f"Text for {tid}."
    if chars > len(body):
        filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
        body = (body + " " + filler * (chars // len(filler) + 1))[:chars]
    return f"## Section {tid}\n\n{body}"


def scripted(tasks: list[Task], latency: dict[str, float], *, reply_chars: int = 0, plan: bool = False) -> BenchScript:
    """Worker replies take each task's own latency; plan/review/cohesion answer at once."""
    return BenchScript(plan=plan_json(tasks, goal="Benchmark goal") if plan else None,
                       worker=lambda tid: Reply(text=section_text(tid, reply_chars), latency=latency.get(tid, 0.0)))


# -- synthetic plans --------------------------------------------------------------------------------
@dataclass
class Shape:
    name: str
    tasks: list[Task]
    latency: dict[str, float]

    @property
    def n(self) -> int:
        return len(self.tasks)

    def plan(self) -> dict:
        return plan_json(self.tasks, goal="Benchmark goal")

    def critical_path(self) -> float:
        """The longest dependency chain's total latency (tasks are listed in a topological order)."""
        finish: dict[str, float] = {}
        for tid, _, deps in self.tasks:
            finish[tid] = max((finish[d] for d in deps), default=0.0) + self.latency[tid]
        return max(finish.values())

    def total_work(self) -> float:
        return sum(self.latency.values())

    def bound(self, workers: int) -> float:
        """Lower bound of the wall time with `workers` slots: max(critical path, total work / w)."""
        return max(self.critical_path(), self.total_work() / workers)


def _fixed(name: str, tasks: list[Task], lat: float = LATENCY_S) -> Shape:
    return Shape(name, tasks, {t[0]: lat for t in tasks})


def chain(n: int = 10) -> Shape:
    return _fixed(f"chain {n}", [(f"t{i}", "analyst" if i == 0 else "writer", [f"t{i-1}"] if i else [])
                                 for i in range(n)])


def fanout(n: int = 32) -> Shape:
    return _fixed(f"fan-out {n}", [(f"t{i}", "writer", []) for i in range(n)])


def diamond(width: int = 8) -> Shape:
    mids = [f"m{i}" for i in range(width)]
    tasks = [("a", "analyst", [])] + [(m, "writer", ["a"]) for m in mids] + [("z", "writer", mids)]
    return _fixed(f"diamond 1-{width}-1", tasks)


def layered(layers: int, width: int, fan_in: int, seed: int = SEED) -> Shape:
    """`layers` x `width` tasks; each task after the first layer depends on `fan_in` of the previous."""
    rng = random.Random(seed)
    tasks: list[Task] = []
    prev: list[str] = []
    for layer in range(layers):
        ids = [f"l{layer}x{i}" for i in range(width)]
        for tid in ids:
            deps = sorted(rng.sample(prev, min(fan_in, len(prev)))) if prev else []
            tasks.append((tid, "writer", deps))
        prev = ids
    return _fixed(f"layered {layers}x{width} (fan-in {fan_in})", tasks)


def random_dag(n: int = 50, seed: int = SEED, p: float = 0.08, max_deps: int = 3, window: int | None = None,
               latencies: Iterable[float] = MIXED_LATENCIES_S, name: str | None = None) -> Shape:
    """Each task depends on up to `max_deps` earlier tasks (each with probability `p`, optionally only
    among the `window` before it); its latency is drawn from `latencies`. Fixed seed: same DAG each run."""
    rng = random.Random(seed)
    lats = list(latencies)
    tasks: list[Task] = []
    for i in range(n):
        lo = 0 if window is None else max(0, i - window)
        earlier = [f"r{j}" for j in range(lo, i) if rng.random() < p]
        deps = sorted(rng.sample(earlier, min(max_deps, len(earlier))), key=lambda s: int(s[1:]))
        tasks.append((f"r{i}", "writer", deps))
    latency = {t[0]: rng.choice(lats) for t in tasks}
    return Shape(name or f"random {n} (seed {seed})", tasks, latency)


def blog(sections: int, lat: float = 0.0) -> Shape:
    """A real blog plan's shape: an analysis task, then sections that each depend on the analysis and
    on the previous section."""
    tasks: list[Task] = [("t0", "analyst", [])]
    for i in range(1, sections + 1):
        tasks.append((f"t{i}", "writer", ["t0"] + ([f"t{i-1}"] if i > 1 else [])))
    return _fixed(f"blog {sections} sections", tasks, lat)


def critical_path_shapes() -> list[Shape]:
    return [chain(10), fanout(32), diamond(8), layered(4, 8, 2), layered(6, 5, 3, seed=SEED + 1),
            random_dag(50, SEED), random_dag(50, SEED + 1, p=0.04)]


# -- running the real graph -------------------------------------------------------------------------
def make_llm(base_url: str, *, cache: bool = False, home: Path | None = None, concurrency: int = 64):
    from utils.model.client import LLMClient, LLMSettings

    settings = LLMSettings(provider="openai", model="fake-model", base_url=base_url, api_key="sk-bench",
                           cache=cache, max_concurrency=concurrency, max_retries=0)
    return LLMClient(settings, home=home)


def make_shared(plan: dict | None, llm, *, emit: Callable | None = None, **options) -> dict:
    from utils.events import null_emit
    from utils.app.run import new_shared
    from utils.options import DEFAULT_OPTIONS
    from utils.run.spec import load_spec

    opts = {**DEFAULT_OPTIONS, "max_revisions": 0, "max_tasks": 10_000, **options}
    shared = new_shared(goal="Benchmark goal", spec=load_spec("blog"), options=opts,
                        inputs={"inputs": [], "data": None}, llm=llm, emit=emit or null_emit)
    if plan is not None:
        shared["plan"] = plan  # preset: the OrchestratorNode makes no model call
    return shared


def warm_client(llm) -> None:
    """Create the SDK client in the running loop now, as a CLI run's planning call does before the
    worker phase (a preset plan skips that call, and the first worker would pay for it instead)."""
    make = getattr(llm, "_client", None)
    if callable(make):
        make()


class WarmFlow:
    """A flow that warms the model client first (see warm_client); for run.execute."""

    def __init__(self, flow, llm) -> None:
        self.flow, self.llm = flow, llm

    async def run_async(self, shared: dict) -> Any:
        warm_client(self.llm)
        return await self.flow.run_async(shared)


async def _run_graph(shared: dict) -> None:
    from flows import build_flow

    try:
        warm_client(shared["runtime"]["llm"])
        await build_flow(shared["options"]["strategy"]).run_async(shared)
    finally:
        close = getattr(shared["runtime"]["llm"], "aclose", None)
        if close is not None:
            await close()


class RunFailed(Exception):
    pass


def run_graph(shared: dict) -> float:
    """Run the whole graph on `shared`; returns its wall time. Raises RunFailed unless every task is done."""
    started = time.perf_counter()
    asyncio.run(_run_graph(shared))
    wall = time.perf_counter() - started
    check_ok(shared)
    return wall


def run_with_store(plan: dict, llm, **options) -> float:
    """Wall seconds of one whole run through `execute()` with a real run store (as the CLI runs)."""
    from flows import build_flow
    from utils.app.run import execute
    from utils.run.runstore import RunStore

    store = RunStore(scratch("run"))
    shared = make_shared(plan, llm, emit=store, **options)
    started = time.perf_counter()
    outcome = execute(shared, build_flow("dependency"), store, meta={})
    wall = time.perf_counter() - started
    check_ok(shared)
    if outcome.exit_code != 0:
        raise RunFailed(f"execute() exited {outcome.exit_code}: {outcome.error}")
    return wall


def check_ok(shared: dict) -> None:
    plan_ids = [t["id"] for t in shared["plan"]["tasks"]]
    bad = {tid: shared["results"].get(tid, {}).get("state") for tid in plan_ids
           if shared["results"].get(tid, {}).get("state") != "done"}
    if bad or shared.get("status") != "ok":
        sample = dict(list(bad.items())[:3])
        errors = [shared["results"].get(t, {}).get("error") for t in sample]
        raise RunFailed(f"run status {shared.get('status')!r}; tasks not done: {sample} {errors}")


def worker_phase(records: list["Rec"]) -> float:
    """First worker request in to last worker answer out, from the server's record."""
    reqs = [r for r in records if r.kind == "worker"]
    if not reqs or any(r.t_out is None or r.status != 200 for r in reqs):
        raise RunFailed("worker requests missing or not answered 200")
    return max(r.t_out for r in reqs) - min(r.t_in for r in reqs)


class TimedLLM:
    """Wraps an LLM client and notes when each `complete()` call starts and returns (client side), so
    the engine's own hand-over time (a dependency's answer back -> its dependent's call) is visible
    apart from SDK, HTTP and server time. Everything else is delegated unchanged."""

    def __init__(self, llm) -> None:
        self._llm = llm
        self.calls: dict[str, tuple[float, float]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    async def complete(self, messages, **kwargs):
        started = time.monotonic()
        reply = await self._llm.complete(messages, **kwargs)
        purpose = kwargs.get("purpose", "")
        if purpose.startswith("task "):
            self.calls[purpose.split()[1]] = (started, time.monotonic())
        return reply

    def handovers(self, tasks: list[Task]) -> list[float]:
        """Per task with dependencies: its call's start minus its last dependency's return (seconds)."""
        return [self.calls[tid][0] - max(self.calls[d][1] for d in deps) for tid, _, deps in tasks if deps]


class StubLLM:
    """In-process stand-in for LLMClient: same `complete()` signature, returns a utils.model.client.Completion
    at once (or after the task's latency, with asyncio.sleep), no SDK, no HTTP. Isolates the engine."""

    offline = False

    def __init__(self, latency: dict[str, float] | None = None) -> None:
        from utils.model.client import Totals

        self.latency = latency or {}
        self.calls: dict[str, tuple[float, float]] = {}
        self.totals = Totals()

    async def complete(self, messages: list[dict], *, model: str | None = None, temperature: float = 0.3,
                       max_tokens: int | None = None, schema: Any = None, purpose: str = ""):
        from utils.model.client import Completion
        from utils.run.outputs import Cohesion, ReviewResult

        started = time.monotonic()
        tid = purpose.split()[1] if purpose.startswith("task ") else None
        if self.latency.get(tid):
            await asyncio.sleep(self.latency[tid])
        if isinstance(schema, type) and issubclass(schema, ReviewResult):  # the run's review model
            data = ReviewResult(score=8, summary="fine", tasks=[])
        elif schema is not None and schema.__name__ == "Cohesion":  # the run's cohesion model
            data = Cohesion(title="Stub title", introduction="Stub introduction.")
        elif schema is not None:
            raise RunFailed(f"the stub has no answer for schema {schema.__name__}")
        else:
            data = None
        text = data.model_dump_json() if data is not None else section_text(tid or "?")
        p_tok = sum(len(m.get("content") or "") for m in messages) // 4
        self.totals.calls += 1
        self.totals.prompt_tokens += p_tok
        if tid:
            self.calls[tid] = (started, time.monotonic())
        return Completion(text=text, data=data, prompt_tokens=p_tok, completion_tokens=len(text) // 4,
                          model=model or "stub", latency_s=0.0)

    def handovers(self, tasks: list[Task]) -> list[float]:
        return [self.calls[tid][0] - max(self.calls[d][1] for d in deps) for tid, _, deps in tasks if deps]

    def phase(self) -> float:
        return max(e for _, e in self.calls.values()) - min(s for s, _ in self.calls.values())

    def totals_dict(self) -> dict:
        return self.totals.as_dict()

    async def aclose(self) -> None:
        return None


def simulate(shape: Shape, workers: int) -> float:
    """Makespan of the dependency strategy's own list schedule with zero overhead: whenever a slot is
    free, the best-ranked ready task starts (the scheduler's rank: priority - all 3 here - then the
    longest remaining chain by task count, then plan position). max(critical path, work / w) is not
    always reachable; this is what the scheduler aims for."""
    import heapq

    from utils.run.plan import Task as PlanTask
    from utils.run.scheduler import remaining_path

    remaining = remaining_path([PlanTask(id=t, title=t, role=r, depends_on=list(d)) for t, r, d in shape.tasks])
    deps = {tid: set(d) for tid, _, d in shape.tasks}
    dependents: dict[str, list[str]] = {tid: [] for tid in deps}
    for tid, d in deps.items():
        for x in d:
            dependents[x].append(tid)
    pos = {tid: i for i, (tid, _, _) in enumerate(shape.tasks)}
    rank = lambda t: (-remaining[t], pos[t], t)  # noqa: E731
    ready = sorted(rank(t) for t, d in deps.items() if not d)
    running: list[tuple[float, str]] = []
    now, free, done = 0.0, workers, 0
    while done < len(deps):
        while free and ready:
            tid = heapq.heappop(ready)[-1]
            heapq.heappush(running, (now + shape.latency[tid], tid))
            free -= 1
        now, _ = running[0]
        while running and running[0][0] == now:  # everything ending now, before slots are granted
            _, tid = heapq.heappop(running)
            free += 1
            done += 1
            for other in dependents[tid]:
                deps[other].discard(tid)
                if not deps[other]:
                    heapq.heappush(ready, rank(other))
    return now


def handovers(records: list["Rec"], tasks: list[Task]) -> list[float]:
    """From the server's record: for each task with dependencies, its request's arrival minus the
    moment its last dependency's answer left the server (seconds)."""
    by_task = {r.task: r for r in records if r.kind == "worker"}
    return [by_task[tid].t_in - max(by_task[d].t_out for d in deps) for tid, _, deps in tasks if deps]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)] if ordered else float("nan")


def timeline_dir() -> Path:
    """Where the benchmarks' timeline pictures go: $BENCH_OUT, else a fixed folder in the temp dir."""
    path = Path(os.environ.get("BENCH_OUT") or Path(tempfile.gettempdir()) / "orch-bench-timelines")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_timeline(name: str, shared: dict, workers: int) -> Path:
    """The run's timeline.png, as a CLI run folder gets it, under timeline_dir()."""
    from utils.run.timeline import timeline_png

    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    path = timeline_dir() / f"{slug}-w{workers}.png"
    path.write_bytes(timeline_png(shared["plan"], shared["results"], workers=workers, title=name))
    return path


# -- output -----------------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """Print a Markdown table (pastes straight into the README)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def header(title: str) -> None:
    from utils.engine import ENGINE

    print(f"# {title}")
    print(f"{time.strftime('%Y-%m-%d')} · {platform.python_implementation()} {platform.python_version()} · "
          f"{os.cpu_count()} CPUs · engine {ENGINE}")
    sys.stdout.flush()


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def import_ms(module: str) -> float:
    """Median wall time of `import module` in a fresh interpreter, ms (of 3): what a user's process
    pays for it, without the interpreter's own start."""
    import subprocess

    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return median([float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                         check=True).stdout) for _ in range(3)]) * 1000


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main_guard(fn: Callable[[], None]) -> None:
    """Run a benchmark's main; a failed run exits 1 with one line."""
    try:
        fn()
    except RunFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)


# -- the fake server in its own process -------------------------------------------------------------
@dataclass
class Rec:
    """What the server recorded about one chat request (a picklable digest of RecordedRequest)."""
    kind: str
    task: str | None
    t_in: float
    t_out: float | None
    status: int | None
    prompt_chars: int
    prompt: str = ""  # the messages' text, system first (for the shared-prefix share)


def _digest(req: RecordedRequest) -> Rec:
    texts = [m.get("content") for m in req.messages if isinstance(m.get("content"), str)]
    kind = request_kind(req)
    return Rec(kind, task_id(req), req.t_in, req.t_out, req.status, sum(map(len, texts)),
               "\n".join(texts) if kind == "worker" else "")


def _serve(conn) -> None:
    """Child process: a FakeLLMServer driven over a pipe (script, records, stop)."""
    server = FakeLLMServer().start()
    conn.send(server.base_url)
    while True:
        try:
            cmd, *args = conn.recv()
        except EOFError:
            break
        try:
            if cmd == "script":
                tasks, latency, reply_chars, plan = args
                server.reset()
                server.responder = scripted(tasks, latency, reply_chars=reply_chars, plan=plan)
                conn.send(None)
            elif cmd == "records":
                conn.send([_digest(r) for r in list(server.requests)])
            elif cmd == "stop":
                conn.send(None)
                break
        except Exception as exc:  # noqa: BLE001 - report to the parent, keep serving
            conn.send(RuntimeError(f"{type(exc).__name__}: {exc}"))
    server.stop()


class LocalServer:
    """The fake server in this process (its threads share the GIL with the app), same interface as
    RemoteServer."""

    def __init__(self) -> None:
        self.server = FakeLLMServer().start()
        self.base_url = self.server.base_url

    def script(self, tasks: list[Task], latency: dict[str, float], *, reply_chars: int = 0, plan: bool = False) -> None:
        self.server.reset()
        self.server.responder = scripted(tasks, latency, reply_chars=reply_chars, plan=plan)

    def records(self) -> list[Rec]:
        return [_digest(r) for r in list(self.server.requests)]

    def close(self) -> None:
        self.server.stop()

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_server() -> "RemoteServer | LocalServer":
    """The fake server in a child process (default), or in this one with BENCH_SERVER=inprocess."""
    return LocalServer() if os.environ.get("BENCH_SERVER") == "inprocess" else RemoteServer()


class RemoteServer:
    """The fake server in a child process, so its threads don't compete with the app for the GIL
    (a real model server runs elsewhere). Its record comes back as `Rec` digests."""

    def __init__(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self._proc.start()
        self.base_url: str = self._conn.recv()

    def _ask(self, *msg: Any) -> Any:
        self._conn.send(msg)
        reply = self._conn.recv()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def script(self, tasks: list[Task], latency: dict[str, float], *, reply_chars: int = 0, plan: bool = False) -> None:
        """Reset the record and answer with `scripted(...)` from now on."""
        self._ask("script", tasks, latency, reply_chars, plan)

    def records(self) -> list[Rec]:
        return self._ask("records")

    def close(self) -> None:
        try:
            self._ask("stop")
        except (EOFError, OSError, BrokenPipeError):
            pass
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()

    def __enter__(self) -> "RemoteServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
