"""The KayGraph nodes of the orchestrator–worker pattern.

Each node is thin: `prep` reads the shared store, `exec` does one thing (usually one model call)
and `post` writes the shared store and returns the action that picks the next node. Logic that can
be a pure function lives in `utils/`. Nodes never print: they emit progress events, and `main.py`
decides how to show them. No run state lives on a node: graphs copy nodes, and the worker batch
shares one instance across all its items.

The shared store's keys are documented once, in the README's design section.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from utils.run.assemble import assemble, document_sections, run_status
from utils.run.context import cohesion_messages, planner_messages, review_messages, worker_messages
from utils.engine import AsyncNode, AsyncParallelBatchNode
from utils.errors import BudgetExceeded, OrchError, PlanError
from utils.events import Event
from utils.run.outputs import OUTPUT_SCHEMAS, Cohesion, ReviewResult
from utils.run.plan import Plan, dependents_closure, plan_problems
from utils.run.scheduler import Schedule, Stopped
from utils.run.standins import offline_cohesion, offline_next_step, offline_plan, offline_review
from utils.tools import ToolInput, run_tool
from utils.tools.web.cite import cite_web

DONE, FAILED, SKIPPED, PENDING = "done", "failed", "skipped", "pending"
PLANNING = {"full": "planning", "next": "planning the next step", "revise": "re-planning"}  # error prefixes


def _runtime(shared: dict) -> tuple[Any, Any]:
    rt = shared["runtime"]
    return rt["llm"], rt["emit"]


def _phase(shared: dict, name: str) -> Any:
    """Announce the phase a node starts (planning, working...); returns the run's LLM client."""
    llm, emit = _runtime(shared)
    emit(Event("phase", {"name": name}))
    return llm


def _input_names(shared: dict) -> list[str]:
    return list(shared.get("inputs", {}).get("inputs", []))


async def _ask_for_plan(llm, *, spec, goal: str, options: dict, inputs: list[str], standin,
                        known: dict[str, dict] | None = None, pending: list[dict] | None = None,
                        mode: str = "full", allow_empty: bool = False) -> Plan:
    """One planning call plus at most one repair round-trip with the exact problems."""
    feedback = ""
    for attempt in (1, 2):
        messages = planner_messages(spec=spec, goal=goal, max_tasks=options["max_tasks"], inputs=inputs,
                                    feedback=feedback, results=known, pending=pending, mode=mode)
        reply = await llm.complete(messages, model=options.get("planner_model"), schema=Plan,
                                   temperature=0.2, purpose=PLANNING[mode], offline_reply=standin)
        plan: Plan = reply.data
        plan.goal = goal
        problems = plan_problems(plan, spec.roles, options["max_tasks"], allow_empty=allow_empty,
                                 known_ids=(known or {}).keys())
        clashes = [t.id for t in plan.tasks if t.id in (known or {})]
        problems += [f"task id '{tid}' is already used by a finished task" for tid in clashes]
        if not problems:
            return plan
        feedback = "\n".join(f"- {p}" for p in problems)
    raise PlanError("the orchestrator's plan is still invalid after one repair: " + "; ".join(problems[:3]))


def _frontier(plan: Plan, results: dict[str, dict]) -> list[str]:
    """Pending tasks whose dependencies have all ended (hybrid runs one frontier per batch)."""
    ended = {tid for tid, r in results.items() if r.get("state") in (DONE, FAILED, SKIPPED)}
    return [t.id for t in plan.tasks if t.id not in ended and set(t.depends_on) <= ended]


def _queue_for(plan: Plan, results: dict[str, dict], strategy: str) -> list[str]:
    if strategy == "hybrid":
        return _frontier(plan, results)
    return [t.id for t in plan.tasks if results.get(t.id, {}).get("state") != DONE]


class OrchestratorNode(AsyncNode):
    """Plans the goal into tasks (or takes the plan a user edited, or a resumed run's plan)."""

    async def prep_async(self, shared):
        llm = _phase(shared, "planning")
        return {"llm": llm, "spec": shared["spec"], "goal": shared["goal"], "options": shared["options"],
                "inputs": _input_names(shared), "plan": shared.get("plan")}

    async def exec_async(self, p):
        if p["plan"]:
            return Plan.model_validate(p["plan"]), "saved"
        opts = p["options"]
        standin = lambda: offline_plan(p["spec"], p["goal"], p["inputs"], opts["max_tasks"])
        if opts["strategy"] == "dynamic":
            first = lambda: offline_next_step(standin(), set())
            plan = await _ask_for_plan(p["llm"], spec=p["spec"], goal=p["goal"], options=opts,
                                       inputs=p["inputs"], standin=first, mode="next")
        else:
            plan = await _ask_for_plan(p["llm"], spec=p["spec"], goal=p["goal"], options=opts,
                                       inputs=p["inputs"], standin=standin)
        return plan, "offline" if p["llm"].offline else "model"

    async def post_async(self, shared, p, exec_res):
        plan, source = exec_res
        shared["plan"] = plan.model_dump()
        results = shared.setdefault("results", {})
        shared["queue"] = _queue_for(plan, results, shared["options"]["strategy"])
        shared["pass_kind"] = "plan"
        shared["runtime"]["emit"](Event("plan", {"plan": shared["plan"], "round": shared.get("rounds", 0),
                                                 "source": source}))
        return "plan_only" if shared["options"].get("plan_only") else "work"


class WorkerBatch(AsyncParallelBatchNode):
    """Runs the queued tasks: every item starts at once and waits in the shared `Schedule` for its
    dependencies and a worker slot, so each task starts as soon as its inputs exist."""

    async def prep_async(self, shared):
        plan = Plan.model_validate(shared["plan"])
        results = shared.get("results", {})  # prep only reads the store
        queue = set(shared.get("queue", []))
        opts = shared["options"]
        _phase(shared, "revising" if shared.get("pass_kind") == "revision" else "working")
        to_run = [t for t in plan.tasks if t.id in queue]
        satisfied = {tid for tid, r in results.items() if r.get("state") == DONE and tid not in queue}
        sched = Schedule(to_run, max_workers=opts["max_workers"], strategy=opts["strategy"],
                         satisfied=satisfied)
        llm, emit = _runtime(shared)
        common = {"plan": plan, "sched": sched, "llm": llm, "emit": emit, "spec": shared["spec"],
                  "options": opts, "prior": results, "inputs": shared.get("inputs", {}),
                  "feedback": shared.get("feedback", {}) if shared.get("pass_kind") == "revision" else {}}
        return [{**common, "task": t} for t in to_run]

    async def exec_async(self, item):
        task, sched, emit = item["task"], item["sched"], item["emit"]
        prev = item["prior"].get(task.id, {})
        result = {"id": task.id, "title": task.title, "role": task.role, "state": PENDING, "output": "",
                  "data": None, "error": None, "prompt_tokens": 0, "completion_tokens": 0,
                  "revision": prev.get("revision", -1) + 1 if prev.get("state") == DONE else 0,
                  "worker": None, "started": None, "finished": None, "elapsed_s": 0.0, "artifacts": {}}
        self._report(emit, result, "waiting")
        unmet = await sched.wait_for_dependencies(task.id)
        if unmet:
            # After a stop (token budget) a task whose inputs never came is not started, not skipped.
            state = PENDING if sched.stopped else SKIPPED
            result.update(state=state, error=sched.stopped or "dependency did not finish: " + ", ".join(unmet))
            sched.skip(task.id, state)
            self._report(emit, result, state)
            return result
        self._report(emit, result, "ready")
        try:
            slot = await sched.acquire(task.id)
        except Stopped as stop:
            result["error"] = str(stop)
            sched.skip(task.id, PENDING)
            self._report(emit, result, PENDING)
            return result
        result.update(worker=slot, started=time.time())
        self._report(emit, result, "running")
        try:
            result.update(await self._work(item), state=DONE)
        except BudgetExceeded as exc:
            sched.stop(str(exc))
            result.update(state=PENDING, error=str(exc))
        except OrchError as exc:
            result.update(state=FAILED, error=str(exc))
        except Exception as exc:  # isolate the failure to this task; the summary reports it
            result.update(state=FAILED, error=f"{type(exc).__name__}: {exc}")
        finally:
            result["finished"] = time.time()
            result["elapsed_s"] = round(result["finished"] - result["started"], 3)
            sched.finish(task.id, result["state"], result)  # wake dependents before freeing the slot
            sched.release(slot)
            self._report(emit, result, result["state"])
        return result

    @staticmethod
    def _report(emit, result: dict, state: str) -> None:
        data = {k: result[k] for k in ("id", "title", "role", "worker", "elapsed_s", "error", "revision")}
        data.update(state=state, tokens=result["prompt_tokens"] + result["completion_tokens"])
        if state in (DONE, FAILED, SKIPPED, PENDING):
            data["result"] = result
        emit(Event("task", data))

    async def _work(self, item) -> dict:
        task, spec, plan, sched = item["task"], item["spec"], item["plan"], item["sched"]
        role = spec.roles[task.role]
        deps = {d: sched.results.get(d) or item["prior"].get(d, {}) for d in task.depends_on}
        if role.kind == "tool":
            return await asyncio.to_thread(self._run_tool, item, role, deps)
        feedback = item["feedback"].get(task.id, "")
        messages, shortened = worker_messages(
            system=role.system, plan=plan, task=task, budget_tokens=item["options"]["context_budget"],
            dep_outputs={d: r.get("output", "") for d, r in deps.items()}, feedback=feedback,
            previous=item["prior"].get(task.id, {}).get("output", "") if feedback else "")
        schema = OUTPUT_SCHEMAS.get(role.output or "")
        standin = (lambda: role.offline_data) if schema and role.offline_data else None
        reply = await item["llm"].complete(
            messages, model=role.model or item["options"].get("role_models", {}).get(task.role)
            or item["options"].get("model"), schema=schema,
            purpose=f"task {task.id} ({task.role})", offline_reply=standin)
        out = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
               "model": reply.model, "context_shortened": shortened}
        if schema:
            out.update(data=reply.data.model_dump(), output=reply.data.markdown())
        else:
            out.update(output=reply.text)
        return out

    @staticmethod
    def _run_tool(item, role, deps: dict[str, dict]) -> dict:
        task, inputs = item["task"], item["inputs"]
        data_path = inputs.get("data")
        tool_in = ToolInput(task=task.model_dump(), data_path=Path(data_path) if data_path else None,
                            input_paths=[Path(p) for p in inputs.get("inputs", [])],
                            deps={d: {"data": r.get("data"), "output": r.get("output", "")} for d, r in deps.items()},
                            params=dict(role.params), goal=item["plan"].goal, web=inputs.get("web"))
        res = run_tool(role.tool, tool_in)
        markdown = res.markdown
        artifacts = {}
        for name, blob in res.artifacts.items():  # one folder per run: prefix names by task id
            unique = f"{task.id}-{name}"
            markdown = markdown.replace(f"]({name})", f"]({unique})")
            artifacts[unique] = blob
        return {"output": markdown, "data": res.data, "artifacts": artifacts, "model": f"tool:{role.tool}"}

    async def post_async(self, shared, prep_res, exec_res):
        results = shared.setdefault("results", {})
        for r in exec_res:
            if r["state"] == PENDING and results.get(r["id"], {}).get("state") == DONE:
                continue  # a revision that never started keeps the approved version
            results[r["id"]] = r
        stopped = next((r["error"] for r in exec_res if r["state"] == PENDING), None)
        shared["queue"] = []
        if stopped:
            shared["stopped"] = stopped
            return "stopped"
        if shared.get("pass_kind") == "plan" and shared["options"]["strategy"] in ("dynamic", "hybrid"):
            return "replan"
        return "review"


class ReplanNode(AsyncNode):
    """dynamic: plan the next step(s) from results so far; hybrid: add/drop/rewrite pending tasks."""

    async def prep_async(self, shared):
        llm = _phase(shared, "replanning")
        return {"llm": llm, "spec": shared["spec"], "goal": shared["goal"], "options": shared["options"],
                "plan": Plan.model_validate(shared["plan"]), "results": shared.get("results", {}),
                "rounds": shared.get("rounds", 0), "inputs": _input_names(shared)}

    async def exec_async(self, p):
        opts, plan, results = p["options"], p["plan"], p["results"]
        finished = [t for t in plan.tasks if t.id in results]
        known = {t.id: {**results[t.id], "title": t.title} for t in finished}
        pending = [t for t in plan.tasks if t.id not in results]
        if p["rounds"] + 1 >= opts["max_rounds"]:
            return None  # bounded: no more planning rounds
        if opts["strategy"] == "dynamic":
            example = offline_plan(p["spec"], p["goal"], p["inputs"], opts["max_tasks"])
            standin = lambda: offline_next_step(example, set(results))
            mode = "next"
        else:
            standin = lambda: Plan(goal=p["goal"], notes=plan.notes, tasks=pending, done=not pending)
            mode = "revise"
        room = dict(opts, max_tasks=max(opts["max_tasks"] - len(finished), 0))
        new = await _ask_for_plan(p["llm"], spec=p["spec"], goal=p["goal"], options=room, inputs=p["inputs"],
                                  standin=standin, known=known, pending=[t.model_dump() for t in pending],
                                  mode=mode, allow_empty=True)
        return Plan(goal=plan.goal, notes=new.notes or plan.notes, tasks=finished + new.tasks, done=new.done)

    async def post_async(self, shared, p, new_plan):
        shared["rounds"] = p["rounds"] + 1
        if new_plan is None:
            # Out of planning rounds: hybrid runs what is still pending in one last pass;
            # dynamic plans as it goes, so nothing is pending and it goes to review.
            pending = [t.id for t in p["plan"].tasks if t.id not in p["results"]]
            if not pending:
                return "review"
            shared["queue"], shared["pass_kind"] = pending, "final"
            return "work"
        shared["plan"] = new_plan.model_dump()
        shared["runtime"]["emit"](Event("plan", {"plan": shared["plan"], "round": shared["rounds"],
                                                 "source": "replan"}))
        queue = _queue_for(new_plan, shared.get("results", {}), shared["options"]["strategy"])
        if not queue:
            return "review"
        shared["queue"], shared["pass_kind"] = queue, "plan"
        return "work"


class ReviewerNode(AsyncNode):
    """Reviews finished work against the workflow's criteria; sends flagged tasks back (bounded)."""

    async def prep_async(self, shared):
        llm = _phase(shared, "reviewing")
        emit = shared["runtime"]["emit"]
        return {"llm": llm, "emit": emit, "spec": shared["spec"], "plan": Plan.model_validate(shared["plan"]),
                "results": shared.get("results", {}), "round": len(shared.get("reviews", [])) + 1,
                "options": shared["options"]}

    async def exec_async(self, p):
        done = [tid for tid, r in p["results"].items() if r.get("state") == DONE]
        if not done:
            return ReviewResult(score=None, summary="Nothing finished to review.", tasks=[])
        messages = review_messages(spec=p["spec"], plan=p["plan"], results=p["results"], round_no=p["round"],
                                   budget_tokens=p["options"]["context_budget"] * 2)
        try:
            reply = await p["llm"].complete(messages, model=p["options"].get("reviewer_model"),
                                            schema=ReviewResult, temperature=0.1,
                                            purpose=f"review round {p['round']}",
                                            offline_reply=lambda: offline_review(done))
        except BudgetExceeded:
            raise  # the run stops (resumable); the runner records it
        except OrchError as exc:  # finished work is worth more than its review: keep it, say so
            p["emit"](Event("notice", {"level": "warn", "message": f"review skipped, work kept as is: {exc}"}))
            return ReviewResult(score=None, summary=f"Review failed, work kept as is: {exc}", tasks=[])
        return reply.data

    async def post_async(self, shared, p, review: ReviewResult):
        plan, results = p["plan"], p["results"]
        flagged = {v.id: v.feedback for v in review.tasks
                   if v.verdict == "revise" and results.get(v.id, {}).get("state") == DONE}
        revisions_done = shared.get("revisions_done", 0)
        will_revise = bool(flagged) and revisions_done < shared["options"]["max_revisions"]
        rerun = [tid for tid in dependents_closure(plan, flagged)
                 if results.get(tid, {}).get("state") == DONE] if will_revise else []
        record = {"round": p["round"], "score": review.score, "summary": review.summary,
                  "revise": [{"id": k, "feedback": v} for k, v in flagged.items()],
                  "approved": [v.id for v in review.tasks if v.verdict == "approve"],
                  "rerun": rerun, "bounded": bool(flagged) and not will_revise}
        shared.setdefault("reviews", []).append(record)
        shared["runtime"]["emit"](Event("review", record))
        if not will_revise:
            return "approve"
        shared["revisions_done"] = revisions_done + 1
        shared["feedback"] = {tid: flagged.get(tid) or "A task you depend on was revised; update your part to match."
                              for tid in rerun}
        shared["queue"], shared["pass_kind"] = rerun, "revision"
        return "revise"


class AggregatorNode(AsyncNode):
    """Assembles the document in plan order and makes one cohesion pass (title, intro, transitions)."""

    async def prep_async(self, shared):
        llm = _phase(shared, "assembling")
        return {"llm": llm, "spec": shared["spec"], "plan": Plan.model_validate(shared["plan"]),
                "results": shared.get("results", {}), "options": shared["options"],
                "stopped": shared.get("stopped"), "inputs": _input_names(shared),
                "web": shared.get("inputs", {}).get("web")}

    async def exec_async(self, p):
        spec, plan = p["spec"], p["plan"]
        sections = document_sections(plan, p["results"], spec.assembly.include_roles, spec.assembly.summary_role)
        notes, cohesion = [], None
        # A stopped run (token budget) makes no further model calls: the cohesion pass waits for --resume.
        if not p["stopped"] and any(r.get("state") == DONE for r in p["results"].values()):
            try:
                reply = await p["llm"].complete(
                    cohesion_messages(spec=spec, plan=plan, sections=sections,
                                      budget_tokens=p["options"]["context_budget"] * 2),
                    model=p["options"].get("reviewer_model"), schema=Cohesion, purpose="cohesion pass",
                    offline_reply=lambda: offline_cohesion(plan.goal))
                cohesion = reply.data
            except OrchError as exc:  # the sections are worth more than the polish
                notes.append(f"Cohesion pass skipped: {exc}")
        if p["stopped"]:
            notes.append(f"Run stopped before all tasks ran: {p['stopped']}. Resume with --resume.")
        sources = [Path(x).name for x in p["inputs"]] if spec.assembly.cite_inputs else []
        doc = assemble(plan, sections, cohesion, offline=p["llm"].offline, notes=notes, sources=sources)
        doc = cite_web(doc, [p["results"].get(t.id, {}) for t in plan.tasks], p["web"], len(sources))
        return {"document": doc, "title": cohesion.title if cohesion else plan.goal,
                "meta_description": cohesion.meta_description if cohesion else "",
                "status": run_status(plan, p["results"], p["stopped"])}

    async def post_async(self, shared, p, out):
        shared.update(out)
        shared["runtime"]["emit"](Event("phase", {"name": "done"}))
        return None
