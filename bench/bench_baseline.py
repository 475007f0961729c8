"""Baseline: the same plans run the textbook way, one task after another.

The textbook version is a plain sequential KayGraph `BatchNode` (from utils.engine) whose `exec`
builds the same worker prompt (utils.run.context.worker_messages, dependency outputs included) and calls
the same LLMClient for each task in plan order, on one reused event loop (asyncio.Runner). Ours is
the real graph (flows.build_flow, plan preset, max_revisions 0) at --max-workers 4 (the default) and
unlimited. Both are timed the same way: the worker phase from the fake server's record (first worker
request in to last worker answer out).

    python bench/bench_baseline.py
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (RunFailed, blog, chain, diamond, fanout, header, layered, main_guard, make_llm,  # noqa: E402
                    make_shared, open_server, random_dag, run_graph, table, worker_phase)


def textbook_node():
    from utils.run.context import worker_messages
    from utils.engine import BatchNode
    from utils.run.plan import Plan
    from utils.run.spec import load_spec

    class SequentialWorkers(BatchNode):
        """The textbook pattern: prep lists the tasks, exec runs one, post stores them all."""

        spec = load_spec("blog")

        def prep(self, shared):
            plan = Plan.model_validate(shared["plan"])
            outputs: dict[str, str] = {}
            return [(task, plan, outputs, shared["llm"], shared["runner"]) for task in plan.tasks]

        def exec(self, item):
            task, plan, outputs, llm, runner = item
            role = self.spec.roles[task.role]
            messages, _ = worker_messages(system=role.system, plan=plan, task=task, budget_tokens=6000,
                                          dep_outputs={d: outputs[d] for d in task.depends_on})
            reply = runner.run(llm.complete(messages, purpose=f"task {task.id} ({task.role})"))
            outputs[task.id] = reply.text
            return task.id, reply.text

        def post(self, shared, prep_res, exec_res):
            shared["results"] = dict(exec_res)
            return None

    return SequentialWorkers()


def run_textbook(shape, base_url: str) -> None:
    llm = make_llm(base_url)
    with asyncio.Runner() as runner:
        shared = {"plan": shape.plan(), "llm": llm, "runner": runner}
        textbook_node().run(shared)
        runner.run(llm.aclose())
    if len(shared["results"]) != shape.n:
        raise RunFailed(f"textbook run finished {len(shared['results'])} of {shape.n} tasks")


def main() -> None:
    header("Baseline: textbook sequential BatchNode vs our graph")
    print("same plans, prompts, LLMClient and fake server (100 ms a call; random DAG 50-200 ms); "
          "worker phase from the server's record")
    shapes = [chain(10), fanout(32), diamond(8), layered(4, 8, 2), blog(8, 0.1), random_dag(50)]
    rows = []
    with open_server() as server:
        server.script(shapes[0].tasks, shapes[0].latency)
        run_textbook(shapes[0], server.base_url)  # warm-up: imports and first-use costs
        for shape in shapes:
            server.script(shape.tasks, shape.latency)
            run_textbook(shape, server.base_url)
            base = worker_phase(server.records())
            ours = {}
            for label, w in (("4", 4), ("unlimited", shape.n)):
                server.script(shape.tasks, shape.latency)
                run_graph(make_shared(shape.plan(), make_llm(server.base_url), max_workers=w))
                ours[label] = worker_phase(server.records())
            rows.append([shape.name, shape.n, round(shape.total_work() * 1000), round(base * 1000),
                         f"{base / shape.total_work():.3f}", round(ours["4"] * 1000), f"{ours['4'] / base:.3f}",
                         round(ours["unlimited"] * 1000), f"{ours['unlimited'] / base:.3f}"])
    table(["plan", "tasks", "total work ms", "textbook ms", "textbook / total work", "ours w=4 ms",
           "ours w=4 / textbook", "ours unlimited ms", "ours unlimited / textbook"], rows)


if __name__ == "__main__":
    main_guard(main)
