"""End to end with the planning call counted (issue 23): work that starts while the plan streams in.

A 12-task plan (about 800 output tokens) streams from the fake server at BENCH_TOKENS_PER_S tokens a
second (default 50; 4 characters a token), each worker call takes 1.5-4.5 s (fixed per task), the
review and the cohesion pass 1.5 s each. Three runs of the same goal on the same server, alternating,
median of BENCH_REPEAT rounds:

- ours, overlap on (the default): the plan streams and each task starts when its object is complete
  and its dependencies are known;
- ours, overlap off (`--no-overlap`): plan, then work (a server that cannot stream behaves so);
- LangGraph, plan node then the DAG: a StateGraph whose first node asks for the plan (a whole reply,
  which a non-streaming server sends once it is all generated), then one node per task with edges from
  its dependencies, then review and cohesion nodes; the DAG's shape is compiled in advance (it favours
  LangGraph: building it from the reply would only add time). Runs only when langgraph is installed.

Figures, all from the fake server's record with the planning request's arrival as zero: the first
worker request, the end of the planning response, end to end (the last answer: cohesion), and the
overlapped lower bound: each task starts no earlier than the moment its object finished streaming
(the chunk holding its closing brace, from the server's record of the run) and its dependencies
ended, then review and cohesion follow. Both the bound and the plan-then-run bound use the scripted
latencies, so they are what a zero-overhead engine would reach.

    python bench/bench_plan_stream.py
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, TypedDict

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RunFailed, header, main_guard, make_llm, make_shared, median, run_graph, table  # noqa: E402
from bench_model import FakeLLMServer, Reply, request_kind, task_id  # noqa: E402

REPEAT = int(os.environ.get("BENCH_REPEAT", "2"))
TOKENS_PER_S = float(os.environ.get("BENCH_TOKENS_PER_S", "50"))
CHARS_PER_TOKEN = 4
REVIEW_S = COHESION_S = 1.5
# (id, role, depends_on, latency s): research in parallel, analysis on two of them, sections, a wrap-up
TASKS = [("t1", "analyst", [], 3.0), ("t2", "analyst", [], 2.5), ("t3", "analyst", [], 2.0),
         ("t4", "analyst", ["t1", "t2"], 3.5), ("t5", "writer", ["t1"], 3.0), ("t6", "writer", ["t2"], 2.5),
         ("t7", "writer", ["t3", "t4"], 4.0), ("t8", "writer", ["t4"], 3.0), ("t9", "writer", ["t5", "t6"], 3.5),
         ("t10", "writer", ["t3"], 2.0), ("t11", "writer", ["t7", "t8", "t9"], 4.5), ("t12", "writer", ["t11", "t10"], 1.5)]
LATENCY = {t[0]: t[3] for t in TASKS}
DEPS = {t[0]: t[2] for t in TASKS}


def plan_text() -> str:
    """The plan as the model writes it: realistic titles and instructions (~800 tokens in all)."""
    words = "Cover it from the reader's side, cite the figures given, name the trade-offs plainly."
    tasks = [{"id": tid, "title": f"Part {tid}: the {role}'s view, step {i + 1}", "role": role,
              "instructions": f"{words} Focus {i + 1}: {' '.join(words.split()[i % 5:i % 5 + 6])}.",
              "depends_on": deps, "priority": 3} for i, (tid, role, deps, _) in enumerate(TASKS)]
    return json.dumps({"notes": "Audience: practitioners; tone: plain, concrete, sourced.", "tasks": tasks})


PLAN = plan_text()
CHUNK = CHARS_PER_TOKEN  # one token a delta
DELAY = 1.0 / TOKENS_PER_S


def responder(req):
    kind = request_kind(req)
    if kind == "plan":  # streamed at the decoding speed; a whole reply only once it is all generated
        if req.stream:
            return Reply(text=PLAN, chunk_size=CHUNK, chunk_delay=DELAY)
        return Reply(text=PLAN, latency=len(range(0, len(PLAN), CHUNK)) * DELAY)
    if kind == "review":
        return Reply(text=json.dumps({"score": 8, "summary": "fine", "tasks": []}), latency=REVIEW_S)
    if kind == "cohesion":
        return Reply(text=json.dumps({"title": "Bench", "meta_description": "Bench", "introduction": "Intro.",
                                      "transitions": {}}), latency=COHESION_S)
    tid = task_id(req) or "?"
    return Reply(text=f"## Section {tid}\n\nText for {tid}.", latency=LATENCY.get(tid, 0.0))


def streamed_at(req) -> dict[str, float]:
    """Seconds after the planning request arrived at which each task's object had fully streamed."""
    ends, depth, in_str, esc = {}, 0, False, False
    for i, ch in enumerate(PLAN):  # closing brace of each object inside the tasks array
        if in_str:
            esc, in_str = (False, in_str) if esc else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if ch == "}" and depth == 2:
                ends[len(ends)] = i
    out = {}
    for n, pos in ends.items():
        when = next(t for t, sent in req.chunks if sent > pos)
        out[TASKS[n][0]] = when - req.t_in
    return out


def finish_times(start_floor: dict[str, float]) -> dict[str, float]:
    done: dict[str, float] = {}
    for tid, _, deps, lat in TASKS:  # listed in a topological order
        done[tid] = max([start_floor[tid]] + [done[d] for d in deps]) + lat
    return done


def figures(requests) -> dict[str, float]:
    plan = next(r for r in requests if request_kind(r) == "plan" and r.status == 200)
    workers = [r for r in requests if request_kind(r) == "worker"]
    last = max(r.t_out for r in requests)
    return {"first_worker": min(r.t_in for r in workers) - plan.t_in, "plan_end": plan.t_out - plan.t_in,
            "end_to_end": last - plan.t_in}


def run_ours(server: FakeLLMServer, overlap: bool) -> tuple[dict[str, float], float | None]:
    server.reset()
    server.responder = responder
    shared = make_shared(None, make_llm(server.base_url), max_workers=12, max_tasks=12, overlap=overlap)
    run_graph(shared)
    reqs = list(server.requests)
    out = figures(reqs)
    bound = None
    if overlap:
        plan = next(r for r in reqs if request_kind(r) == "plan")
        bound = max(finish_times(streamed_at(plan)).values()) + REVIEW_S + COHESION_S
    return out, bound


def merge(a: dict, b: dict) -> dict:
    return {**a, **b}


class State(TypedDict):
    outputs: Annotated[dict, merge]


def run_langgraph(server: FakeLLMServer) -> dict[str, float]:
    from langgraph.graph import END, START, StateGraph
    from openai import AsyncOpenAI

    from utils.run.context import planner_messages, worker_messages
    from utils.run.plan import Plan
    from utils.run.spec import load_spec

    server.reset()
    server.responder = responder
    spec = load_spec("blog")
    client = AsyncOpenAI(base_url=server.base_url, api_key="sk-bench", max_retries=0)
    box: dict = {}

    def schema(name: str) -> dict:
        return {"type": "json_schema", "json_schema": {"name": name, "schema": {"type": "object"}}}

    async def plan_node(state: State) -> dict:
        messages = planner_messages(spec=spec, goal="Benchmark goal", max_tasks=12, inputs=[], feedback="",
                                    results={}, pending=None, mode="full")
        reply = await client.chat.completions.create(model="fake-model", messages=messages,
                                                     response_format=schema("Plan"))
        box["plan"] = Plan.model_validate({"goal": "Benchmark goal", **json.loads(reply.choices[0].message.content)})
        return {"outputs": {}}

    def task_node(tid: str):
        async def run(state: State) -> dict:
            plan = box["plan"]
            task = plan.task(tid)
            messages, _ = worker_messages(system=spec.roles[task.role].system, plan=plan, task=task,
                                          dep_outputs={d: state["outputs"][d] for d in task.depends_on},
                                          budget_tokens=6000)
            reply = await client.chat.completions.create(model="fake-model", messages=messages)
            return {"outputs": {tid: reply.choices[0].message.content}}
        return run

    def tail_node(name: str, marker: str):
        async def run(state: State) -> dict:
            await client.chat.completions.create(model="fake-model", response_format=schema(name),
                                                 messages=[{"role": "user", "content": marker}])
            return {"outputs": {name: True}}
        return run

    graph = StateGraph(State)
    graph.add_node("plan", plan_node)
    graph.add_edge(START, "plan")
    for tid, _, deps, _ in TASKS:
        graph.add_node(tid, task_node(tid))
        graph.add_edge("plan" if not deps else (deps[0] if len(deps) == 1 else list(deps)), tid)
    graph.add_node("review", tail_node("ReviewResult", "# Review round 1"))
    graph.add_node("cohesion", tail_node("Cohesion", "# Assembled sections"))
    sinks = [t[0] for t in TASKS if not any(t[0] in o[2] for o in TASKS)]
    graph.add_edge(sinks[0] if len(sinks) == 1 else sinks, "review")
    graph.add_edge("review", "cohesion")
    graph.add_edge("cohesion", END)
    app = graph.compile()

    async def go():
        try:
            out = await app.ainvoke({"outputs": {}}, {"recursion_limit": 1000})
        finally:
            await client.close()
        if sum(1 for k in out["outputs"] if k.startswith("t")) != len(TASKS):
            raise RunFailed("LangGraph did not finish every task")
    asyncio.run(go())
    return figures(list(server.requests))


def main() -> None:
    try:
        import langgraph  # noqa: F401
        have_lg = True
    except ImportError:
        have_lg = False
    header("End to end with the planning call counted: work starts while the plan streams in")
    plan_s = len(range(0, len(PLAN), CHUNK)) * DELAY
    print(f"plan: {len(TASKS)} tasks, {len(PLAN)} characters (~{len(PLAN) // CHARS_PER_TOKEN} tokens) streamed at "
          f"{TOKENS_PER_S:g} tokens/s = {plan_s:.1f} s; workers 1.5-4.5 s; review and cohesion {REVIEW_S} s each; "
          f"median of {REPEAT} rounds; times from the planning request's arrival (server record)")
    systems = ["on", "off"] + (["langgraph"] if have_lg else [])
    got: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    bounds: list[float] = []
    with FakeLLMServer() as server:
        run_ours(server, True)  # warm: the SDK import and the first connection
        for _ in range(REPEAT):
            for system in systems:
                if system == "langgraph":
                    got[system].append(run_langgraph(server))
                else:
                    out, bound = run_ours(server, system == "on")
                    got[system].append(out)
                    if bound is not None:
                        bounds.append(bound)
    med = {s: {k: median(r[k] for r in rows) for k in rows[0]} for s, rows in got.items()}
    bound = median(bounds)
    serial = plan_s + max(finish_times({t[0]: 0.0 for t in TASKS}).values()) + REVIEW_S + COHESION_S
    names = {"on": "ours, overlap on (default)", "off": "ours, overlap off (plan, then run)",
             "langgraph": "LangGraph: plan node, then the DAG"}
    rows = [[names[s], f"{m['first_worker']:.2f}", f"{m['plan_end']:.2f}", f"{m['plan_end'] - m['first_worker']:.2f}",
             f"{m['end_to_end']:.2f}", f"{m['end_to_end'] / med['off']['end_to_end']:.3f}",
             f"{m['end_to_end'] / bound:.3f}"] for s, m in med.items()]
    table(["run", "first worker request s", "plan response ends s", "lead s", "end to end s", "/ overlap off",
           "/ overlapped bound"], rows)
    on = med["on"]
    print(f"\noverlapped lower bound {bound:.2f} s; plan-then-run bound {serial:.2f} s (zero-overhead engine).")
    print(f"first worker request {on['plan_end'] - on['first_worker']:.2f} s before the plan ended (goal >= 1 s: "
          f"{'met' if on['plan_end'] - on['first_worker'] >= 1 else 'missed'}); end to end "
          f"{on['end_to_end'] / med['off']['end_to_end']:.3f} x overlap off (goal <= 0.80: "
          f"{'met' if on['end_to_end'] <= 0.8 * med['off']['end_to_end'] else 'missed'}), "
          f"{on['end_to_end'] / bound:.3f} x the overlapped bound (goal <= 1.10: "
          f"{'met' if on['end_to_end'] <= 1.1 * bound else 'missed'})")
    if not have_lg:
        print("LangGraph row skipped: langgraph is not installed (pip install langgraph to compare)")


if __name__ == "__main__":
    main_guard(main)
