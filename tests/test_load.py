"""Load: a preset plan of 200 tasks (a random DAG, fixed seed) against the fake server with a
concurrency cap and injected faults (about 20% 429s with Retry-After: 0 and 5% 500s on early
attempts, decided per task and attempt by a seeded RNG, so the run is the same every time).

Every task must be done exactly once: the server saw exactly one successful worker request per task
id, the run's results (in memory and in run.json) agree, retries stay within the configured bound,
and the cap on in-flight calls holds.
"""
from __future__ import annotations

import random
import threading
from collections import Counter

from flows import build_flow
from fakes.fake_llm import Reply
from tests.scripted import Script, plan_json, request_kind, task_id
from tests.helpers import read_state
from utils.events import Collector
from utils.model.client import LLMClient, LLMSettings
from utils.app.run import execute, fanout, new_shared
from utils.options import DEFAULT_OPTIONS
from utils.run.runstore import RunStore, new_run_dir
from utils.run.spec import load_spec

N_TASKS = 200
MAX_RETRIES = 4
CAP = 8
SEED = 20261125


def random_dag(n: int, seed: int) -> dict:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        earlier = [f"w{j:03d}" for j in range(max(0, i - 30), i)]
        deps = rng.sample(earlier, k=min(len(earlier), rng.choice([0, 0, 1, 1, 2, 3])))
        tasks.append((f"w{i:03d}", "writer", sorted(deps), rng.randint(1, 5)))
    return plan_json(tasks, goal="A very long guide", notes="Keep it short.")


class FlakyServer:
    """Worker requests fail on their first two attempts with a probability drawn from
    Random(seed, task, attempt): deterministic whatever the order requests arrive in."""

    def __init__(self, script: Script) -> None:
        self.script, self.lock = script, threading.Lock()
        self.attempts: Counter = Counter()
        self.injected: Counter = Counter()

    def __call__(self, req):
        if request_kind(req) != "worker":
            return self.script(req)
        tid = task_id(req)
        with self.lock:
            self.attempts[tid] += 1
            attempt = self.attempts[tid]
        draw = random.Random(f"{SEED}:{tid}:{attempt}").random()
        if attempt <= 2 and draw < 0.20:
            with self.lock:
                self.injected[429] += 1
            return Reply(status=429, headers={"Retry-After": "0"})
        if attempt <= 2 and draw < 0.25:
            with self.lock:
                self.injected[500] += 1
            return Reply(status=500)
        return Reply(text=f"## {tid}\n\nSection {tid} body.")


def test_two_hundred_tasks_with_faults_are_each_done_exactly_once(fake_llm, tmp_path):
    plan = random_dag(N_TASKS, SEED)
    ids = [t["id"] for t in plan["tasks"]]
    flaky = FlakyServer(Script())
    fake_llm.responder = flaky
    llm = LLMClient(LLMSettings(provider="openai", base_url=fake_llm.base_url, api_key="sk-load", cache=False,
                                max_concurrency=CAP, max_retries=MAX_RETRIES, backoff_base_s=0.001,
                                backoff_max_s=0.001, timeout_s=30))
    # more workers than the LLM's cap: the run-wide limit on in-flight calls is what must hold
    opts = {**DEFAULT_OPTIONS, "max_workers": 2 * CAP, "max_tasks": N_TASKS, "max_revisions": 0}
    run_dir = new_run_dir(tmp_path / "runs", "load", "blog")
    store, events = RunStore(run_dir), Collector()
    shared = new_shared(goal=plan["goal"], spec=load_spec("blog"), options=opts,
                        inputs={"inputs": [], "data": None}, llm=llm, emit=fanout(store, events))
    shared["plan"] = plan  # preset: no planning call

    outcome = execute(shared, build_flow("dependency"), store, meta={})

    assert outcome.status == "ok", outcome.error
    assert flaky.injected[429] > 0.1 * N_TASKS and flaky.injected[500] > 0.02 * N_TASKS  # faults did happen
    workers = [r for r in fake_llm.requests if request_kind(r) == "worker"]
    ok = Counter(task_id(r) for r in workers if r.status == 200)
    assert ok == Counter({tid: 1 for tid in ids}), "every task exactly one successful model call"
    assert len(workers) <= N_TASKS * (1 + MAX_RETRIES)
    assert len(workers) - N_TASKS == flaky.injected[429] + flaky.injected[500] == llm.totals.retries
    assert not [r for r in fake_llm.requests if request_kind(r) == "plan"]
    assert fake_llm.max_in_flight <= CAP
    # the run's own record agrees, in memory and on disk
    for results in (shared["results"], read_state(run_dir)["results"]):
        assert sorted(results) == ids
        assert all(r["state"] == "done" and r["output"] == f"## {tid}\n\nSection {tid} body."
                   for tid, r in results.items())
    ended = Counter(e["id"] for e in events.of("task") if e["state"] in ("done", "failed", "skipped"))
    assert ended == Counter({tid: 1 for tid in ids}), "each task ended exactly once"
    # dependencies were respected: no task started before all of its dependencies had finished
    results = shared["results"]
    for t in plan["tasks"]:
        for dep in t["depends_on"]:
            assert results[t["id"]]["started"] >= results[dep]["finished"], (t["id"], dep)
    doc = (run_dir / "output.md").read_text(encoding="utf-8")
    assert all(doc.count(f"Section {tid} body.") == 1 for tid in ids)
