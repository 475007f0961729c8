"""Side by side with LangGraph: the same DAGs on the same fake server, interleaved, one invocation.

Optional: runs only when `langgraph` is importable (it is never a requirement of the app; install it
into the venv to measure: `pip install langgraph`). Each system goes through its normal path:

- LangGraph: a StateGraph with one node per task, an edge from each dependency (a waiting edge
  from all of them where a task has several), each node building the same worker prompt
  (utils.run.context.worker_messages) and calling the same fake server with the openai SDK's
  AsyncOpenAI (max_retries 0), `await graph.ainvoke(...)`;
- ours through the CLI: `python main.py --workflow-file examples/blog.yaml "Benchmark goal"` with
  the plan preset by the fake server's planner reply, `--max-workers` = tasks, `--max-revisions
  0`, the run-wide call limit raised in the config file to match;
- ours through the Python API the CLI uses (flows.build_flow on a shared store, plan preset).

Shapes: fan-out 32, chain 10, diamond 1-8-1, random DAGs of 30 and 50 tasks; every task's latency is
drawn between 50 and 400 ms (fixed seed). Figure compared: the worker phase from the server's record
(first worker request in to last worker answer out), median of BENCH_REPEAT rounds, the systems
alternating inside each round. Goal: ours <= 0.95 x LangGraph on every shape. The bound (the
critical path) is printed too: no system can beat it, so where LangGraph is already within 5 % of
it the goal cannot be met, and the table says so.

    python bench/bench_langgraph.py
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, TypedDict

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (ROOT, RunFailed, Shape, chain, diamond, fanout, header, main_guard, make_llm,  # noqa: E402
                    make_shared, median, open_server, random_dag, run_graph, scratch, table, verdict,
                    worker_phase)

REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
TARGET = 0.95
SEED = 14


def merge(a: dict, b: dict) -> dict:
    return {**a, **b}


class State(TypedDict):
    """LangGraph's state: every task's output, merged as the nodes return them."""
    outputs: Annotated[dict, merge]


def with_latencies(shape: Shape, seed: int) -> Shape:
    rng = random.Random(seed)
    return Shape(shape.name + " (50-400 ms)", shape.tasks, {t[0]: round(rng.uniform(0.05, 0.4), 3) for t in shape.tasks})


def shapes() -> list[Shape]:
    return [with_latencies(fanout(32), SEED), with_latencies(chain(10), SEED + 1),
            with_latencies(diamond(8), SEED + 2),
            with_latencies(random_dag(30, SEED + 3, p=0.1, name="random 30"), SEED + 3),
            with_latencies(random_dag(50, SEED + 4, p=0.08, name="random 50"), SEED + 4)]


def langgraph_app(shape: Shape, base_url: str):
    """The LangGraph version of the plan: one node per task, edges from dependencies."""
    from langgraph.graph import END, START, StateGraph
    from openai import AsyncOpenAI

    from utils.run.context import worker_messages
    from utils.run.plan import Plan
    from utils.run.spec import load_spec

    spec, plan = load_spec("blog"), Plan.model_validate(shape.plan())
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)

    def node(task):
        async def run(state: State) -> dict:
            messages, _ = worker_messages(system=spec.roles[task.role].system, plan=plan, task=task,
                                          dep_outputs={d: state["outputs"][d] for d in task.depends_on},
                                          budget_tokens=6000)
            reply = await client.chat.completions.create(model="fake-model", messages=messages)
            return {"outputs": {task.id: reply.choices[0].message.content}}
        return run

    graph = StateGraph(State)
    has_dependents = set()
    for task in plan.tasks:
        graph.add_node(task.id, node(task))
        has_dependents.update(task.depends_on)
    for task in plan.tasks:
        deps = task.depends_on
        graph.add_edge(START if not deps else (deps[0] if len(deps) == 1 else list(deps)), task.id)
        if task.id not in has_dependents:
            graph.add_edge(task.id, END)
    return graph.compile(), client


def run_langgraph(shape: Shape, base_url: str) -> None:
    async def go():
        app, client = langgraph_app(shape, base_url)
        try:
            out = await app.ainvoke({"outputs": {}}, {"recursion_limit": 10_000})
        finally:
            await client.close()
        if len(out["outputs"]) != shape.n:
            raise RunFailed(f"LangGraph finished {len(out['outputs'])} of {shape.n} tasks")
    asyncio.run(go())


def run_cli(shape: Shape, base_url: str, home: Path) -> float:
    """Ours through main.py; returns the process's wall time."""
    out = scratch("runs")
    env = {**os.environ, "ORCH_HOME": str(home), "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-bench",
           "ORCH_MODEL": "fake-model", "PYTHONDONTWRITEBYTECODE": "1"}
    args = [sys.executable, "main.py", "--workflow-file", str(ROOT / "examples" / "blog.yaml"), "Benchmark goal",
            "--max-workers", str(shape.n), "--max-tasks", str(shape.n), "--max-revisions", "0", "--no-cache",
            "--json", "--output-dir", str(out)]
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RunFailed(f"main.py exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}")
    summary = json.loads(proc.stdout)
    if len(summary.get("done", [])) != shape.n:
        raise RunFailed(f"CLI run finished {len(summary.get('done', []))} of {shape.n} tasks")
    return wall


def main() -> None:
    try:
        import langgraph  # noqa: F401
    except ImportError:
        print("bench_langgraph: langgraph is not installed; skipped (pip install langgraph to compare)")
        return
    from importlib.metadata import version

    header("Against LangGraph: the same DAGs, the same fake server, interleaved")
    print(f"langgraph {version('langgraph')}; worker phase from the server's record, median of {REPEAT} rounds; "
          "every task 50-400 ms; ours with a worker per task")
    home = scratch("home")
    (home / "config.yaml").write_text("max_concurrency: 256\n")  # the run-wide call limit, as a user sets it
    cases = shapes()
    figures: dict[str, dict[str, list[float]]] = {s.name: {"langgraph": [], "cli": [], "api": []} for s in cases}
    with open_server() as server:
        warm = cases[1]
        server.script(warm.tasks, warm.latency, plan=True)
        run_langgraph(warm, server.base_url)
        run_cli(warm, server.base_url, home)
        for _ in range(REPEAT):
            for shape in cases:
                for system in ("langgraph", "cli", "api"):
                    server.script(shape.tasks, shape.latency, plan=system == "cli")
                    if system == "langgraph":
                        run_langgraph(shape, server.base_url)
                    elif system == "cli":
                        run_cli(shape, server.base_url, home)
                    else:
                        run_graph(make_shared(shape.plan(), make_llm(server.base_url, concurrency=256),
                                              max_workers=shape.n))
                    figures[shape.name][system].append(worker_phase(server.records()))
    rows, worst = [], 0.0
    for shape in cases:
        f = {k: median(v) for k, v in figures[shape.name].items()}
        bound, lg = shape.critical_path(), f["langgraph"]
        worst = max(worst, f["cli"] / lg)
        best_possible = bound / lg
        rows.append([shape.name, shape.n, round(bound * 1000), round(lg * 1000), round(f["cli"] * 1000),
                     round(f["api"] * 1000), f"{f['cli'] / lg:.3f}", f"{f['api'] / lg:.3f}", f"{lg / bound:.3f}",
                     f"{f['cli'] / bound:.3f}", f"{best_possible:.3f}",
                     verdict(f["cli"] / lg <= TARGET) + ("" if best_possible <= TARGET else " (unreachable)")])
    table(["plan", "tasks", "bound ms", "LangGraph ms", "ours CLI ms", "ours API ms", "CLI / LangGraph",
           "API / LangGraph", "LangGraph / bound", "CLI / bound", "bound / LangGraph (best possible)",
           f"CLI <= {TARGET} x LangGraph"], rows)
    print(f"\nworst CLI / LangGraph: {worst:.3f}. 'unreachable': LangGraph is within 5 % of the critical "
          "path there, so no schedule can be 5 % faster than it")


if __name__ == "__main__":
    main_guard(main)
