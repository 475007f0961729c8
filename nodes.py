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

from utils.run.assemble import assemble, document_sections
from utils.run.claim_evidence import check_drafts
from utils.run.claims import digest, totals
from utils.run.context import cohesion_messages, review_messages, worker_messages
from utils.engine import AsyncNode, AsyncParallelBatchNode
from utils.errors import BudgetExceeded, OrchError
from utils.events import Event
from utils.run.outputs import Cohesion, ReviewResult, cohesion_model, output_model, review_model
from utils.run.plan import Plan, bounded_rerun
from utils.run.plan_stream import overlap_applies, plan_overlapped
from utils.run.planning import ask_for_plan, wire_spec_needs
from utils.run.results import ENDED, SAVED_STATES, TaskResult, TaskState, results_digest
from utils.run.state import RunState, count_revisions, record_result
from utils.run.scheduler import Schedule
from utils.tools import RUN_FILES, ToolInput, run_tool
from utils.tools.sources import NO_SOURCES, report_sources
from utils.tools.web.cite import cite_web

DONE, FAILED, PENDING = TaskState.DONE, TaskState.FAILED, TaskState.PENDING


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


def _notify(emit, notes: list[str]) -> None:
    for note in notes:
        emit(Event("notice", {"level": "warn", "message": note}))


def _plan(shared: dict) -> Plan:
    """The run's plan as a `Plan`. The store keeps its saved (dict) form; the typed plan is validated
    once per plan (when `shared["plan"]` is a new object) and kept in `runtime`, never saved."""
    cached = shared["runtime"].get("plan")
    if cached is None or cached[0] is not shared["plan"]:
        cached = shared["runtime"]["plan"] = (shared["plan"], Plan.model_validate(shared["plan"]))
    return cached[1]


def _set_plan(shared: dict, plan: Plan) -> None:
    shared["plan"] = plan.model_dump()
    shared["runtime"]["plan"] = (shared["plan"], plan)


def _frontier(plan: Plan, results: dict[str, dict]) -> list[str]:
    """Pending tasks whose dependencies have all ended (hybrid runs one frontier per batch)."""
    ended = {tid for tid, r in results.items() if r.get("state") in ENDED}
    return [t.id for t in plan.tasks if t.id not in ended and set(t.depends_on) <= ended]


def _announce(emit, plan: Plan, notes: list[str], round_no: int, source: str) -> None:
    _notify(emit, notes)
    emit(Event("plan", {"plan": plan.model_dump(), "round": round_no, "source": source}))


def _worker_item(p: dict):
    """One worker-pass item for a task started while its plan streams (the WorkerBatch path)."""
    worker = WorkerBatch()  # holds no run state: only its per-task methods are used
    common = {"llm": p["llm"], "emit": p["emit"], "spec": p["spec"], "options": p["options"],
              "prior": p["prior"], "inputs": p["worker_inputs"], "feedback": {}}
    return lambda task, plan, sched: worker.exec_async({**common, "plan": plan, "sched": sched, "task": task})


def _took_overlap(shared: dict, ran) -> None:
    """The results of tasks that ran beside planning; the queue keeps what has not ended. The first
    planning call's times stay (the timeline's planning bar); every round's arrival times add up."""
    shared["results"].update(ran.results)
    shared["queue"] = [tid for tid in shared["queue"] if ran.results.get(tid, {}).get("state") not in ENDED]
    record = shared.setdefault("planning", {**ran.planning, "streamed": {}, "discarded": []})
    record["streamed"].update(ran.streamed)
    record["discarded"] += ran.discarded


def _queue_for(plan: Plan, results: dict[str, dict], strategy: str) -> list[str]:
    if strategy == "hybrid":
        return _frontier(plan, results)
    return [t.id for t in plan.tasks if results.get(t.id, {}).get("state") != DONE]


class OrchestratorNode(AsyncNode):
    """Plans the goal into tasks (or takes the plan a user edited, or a resumed run's plan)."""

    async def prep_async(self, shared):
        llm = _phase(shared, "planning")
        return {"llm": llm, "spec": shared["spec"], "goal": shared["goal"], "options": shared["options"],
                "inputs": _input_names(shared), "plan": _plan(shared) if shared.get("plan") else None, "emit": shared["runtime"]["emit"],
                "prior": shared.get("results", {}), "round": shared.get("rounds", 0),
                "worker_inputs": shared.get("inputs", {})}

    async def exec_async(self, p):
        if p["plan"]:
            return p["plan"], "saved", [], None
        opts, source = p["options"], "offline" if p["llm"].offline else "model"

        async def ask(on_text=None):
            plan, notes = await ask_for_plan(p["llm"], spec=p["spec"], goal=p["goal"], options=opts, on_text=on_text,
                                              inputs=p["inputs"], mode="next" if opts["strategy"] == "dynamic" else "full")
            return plan, notes + wire_spec_needs(plan, p["spec"])

        if not overlap_applies(opts, p["llm"]):
            plan, notes = await ask()
            return plan, source, notes, None
        # Work starts while the plan streams in (utils/run/plan_stream.py): the plan event and its
        # notices go out when the plan is final, while the tasks started early still run.
        announce = lambda plan, notes: _announce(p["emit"], plan, notes, p["round"], source)  # noqa: E731
        plan, _, ran = await plan_overlapped(ask=ask, work=_worker_item(p), spec=p["spec"], goal=p["goal"],
                                             options=opts, prior=p["prior"], emit=p["emit"], on_plan=announce)
        return plan, source, [], ran

    async def post_async(self, shared, p, exec_res):
        plan, source, notes, ran = exec_res
        _set_plan(shared, plan)
        results = shared.setdefault("results", {})
        shared["queue"] = _queue_for(plan, results, shared["options"]["strategy"])
        shared["pass_kind"] = "plan"
        if ran is None:
            _announce(shared["runtime"]["emit"], plan, notes, shared.get("rounds", 0), source)
        else:  # what ran beside planning is kept; the next worker pass runs only the rest
            _took_overlap(shared, ran)
        return "plan_only" if shared["options"].get("plan_only") else "work"


class WorkerBatch(AsyncParallelBatchNode):
    """Runs the queued tasks: every item starts at once and waits in the shared `Schedule` for its
    dependencies and a worker slot, so each task starts as soon as its inputs exist."""

    async def prep_async(self, shared):
        plan = _plan(shared)
        results = shared.get("results", {})  # prep only reads the store
        queue = set(shared.get("queue", []))
        opts = shared["options"]
        revising = shared.get("pass_kind") in ("revision", "claims")  # claims: sent back by the citation check
        _phase(shared, "revising" if revising else "working")
        to_run = [t for t in plan.tasks if t.id in queue]
        satisfied = {tid for tid, r in results.items() if r.get("state") == DONE and tid not in queue}
        sched = Schedule(to_run, max_workers=opts["max_workers"], strategy=opts["strategy"],
                         satisfied=satisfied)
        llm, emit = _runtime(shared)
        common = {"plan": plan, "sched": sched, "llm": llm, "emit": emit, "spec": shared["spec"],
                  "options": opts, "prior": results, "inputs": shared.get("inputs", {}),
                  "feedback": shared.get("feedback", {}) if revising else {}}
        return [{**common, "task": t} for t in to_run]

    async def exec_async(self, item):
        task, sched, emit = item["task"], item["sched"], item["emit"]
        prev = item["prior"].get(task.id, {})
        result = TaskResult.start(task, prev).as_dict()

        def note(state: str, error: str | None) -> None:  # the schedule says where the task stands
            if error is not None:
                result.update(state=state, error=error)
            self._report(emit, result, state)

        await sched.run(task.id, lambda slot: self._attempt(item, result, slot), note)
        return result

    async def _attempt(self, item, result: dict, slot: int) -> tuple[str, dict]:
        """One task in its worker slot; failures stay with this task (the summary reports them)."""
        result.update(worker=slot, started=time.time())
        self._report(item["emit"], result, TaskState.RUNNING)
        try:
            result.update(await self._work(item), state=DONE)
        except BudgetExceeded as exc:
            item["sched"].stop(str(exc))
            result.update(state=PENDING, error=str(exc))
        except OrchError as exc:
            result.update(state=FAILED, error=str(exc))
        except Exception as exc:  # isolate the failure to this task; the summary reports it
            result.update(state=FAILED, error=f"{type(exc).__name__}: {exc}")
        finally:
            result["finished"] = time.time()
            result["elapsed_s"] = round(result["finished"] - result["started"], 3)
        return result["state"], result

    @staticmethod
    def _report(emit, result: dict, state: str) -> None:
        data = {k: result[k] for k in ("id", "title", "role", "worker", "elapsed_s", "error", "revision")}
        data.update(state=state, tokens=result["prompt_tokens"] + result["completion_tokens"])
        if state in SAVED_STATES:
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
        team = (item["options"].get("tool_params") or {}).get("team")  # --team or proposed: what staffs it
        schema = output_model(role.output, spec.roles, team)
        reply = await item["llm"].complete(
            messages, model=role.model or item["options"].get("role_models", {}).get(task.role)
            or item["options"].get("model"), schema=schema,
            purpose=f"task {task.id} ({task.role})")
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
                            params={**role.params, **item["options"].get("tool_params", {})},  # --team etc.
                            goal=item["plan"].goal, target=inputs.get("target"), web=inputs.get("web"))
        res = run_tool(role.tool, tool_in)
        markdown = res.markdown
        artifacts = {}
        for name, blob in res.artifacts.items():  # one folder per run: prefix names by task id
            if name in RUN_FILES:                 # except a run's own result file (analysis.json)
                artifacts[name] = blob
                continue
            unique = f"{task.id}-{name}"
            markdown = markdown.replace(f"]({name})", f"]({unique})")
            artifacts[unique] = blob
        return {"output": markdown, "data": res.data, "artifacts": artifacts, "model": f"tool:{role.tool}"}

    async def post_async(self, shared, prep_res, exec_res):
        results = shared.setdefault("results", {})
        for r in exec_res:
            record_result(results, r)  # a revision that never started keeps the approved version
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
                "plan": _plan(shared), "results": shared.get("results", {}),
                "rounds": shared.get("rounds", 0), "inputs": _input_names(shared), "emit": shared["runtime"]["emit"],
                "prior": shared.get("results", {}), "worker_inputs": shared.get("inputs", {})}

    async def exec_async(self, p):
        opts, plan, results = p["options"], p["plan"], p["results"]
        finished = [t for t in plan.tasks if t.id in results]
        known = {t.id: {**results[t.id], "title": t.title} for t in finished}
        pending = [t for t in plan.tasks if t.id not in results]
        if p["rounds"] + 1 >= opts["max_rounds"]:
            return None  # bounded: no more planning rounds
        mode = "next" if opts["strategy"] == "dynamic" else "revise"
        room = dict(opts, max_tasks=max(opts["max_tasks"] - len(finished), 0))

        async def ask(on_text=None):
            new, notes = await ask_for_plan(p["llm"], spec=p["spec"], goal=p["goal"], options=room, on_text=on_text,
                                             inputs=p["inputs"], known=known,
                                             pending=[t.model_dump() for t in pending], mode=mode, allow_empty=True)
            merged = Plan(goal=plan.goal, notes=new.notes or plan.notes, tasks=finished + new.tasks, done=new.done)
            return merged, notes + wire_spec_needs(merged, p["spec"], {t.id for t in finished})

        try:
            if not overlap_applies(opts, p["llm"]):
                return dict(zip(("plan", "notes"), await ask()))
            merged, notes, ran = await plan_overlapped(  # new tasks start as the re-plan streams in
                ask=ask, work=_worker_item(p), spec=p["spec"], goal=plan.goal, options=room, prior=results,
                emit=p["emit"], on_plan=lambda *_: None)
            return {"plan": merged, "notes": notes, "ran": ran}
        except BudgetExceeded as exc:  # a stop, not a failure: what is done gets assembled
            return {"stopped": str(exc)}
        except OrchError as exc:  # finished work is worth more than a better plan: keep the plan
            return {"failed": str(exc)}

    async def post_async(self, shared, p, out):
        shared["rounds"] = p["rounds"] + 1
        emit = shared["runtime"]["emit"]
        if out is not None and "stopped" in out:
            shared["stopped"] = out["stopped"]
            return "stopped"
        if out is not None and "failed" in out:
            reason = f"re-planning failed, the plan was kept as it was: {out['failed']}"
            shared["status_reason"] = reason
            emit(Event("notice", {"level": "warn", "message": reason}))
            out = None
        new_plan = out["plan"] if out else None
        if out:
            _notify(emit, out["notes"])
        if new_plan is None:
            # Out of planning rounds: hybrid runs what is still pending in one last pass;
            # dynamic plans as it goes, so nothing is pending and it goes to review.
            pending = [t.id for t in p["plan"].tasks if t.id not in p["results"]]
            if not pending:
                return "review"
            shared["queue"], shared["pass_kind"] = pending, "final"
            return "work"
        _set_plan(shared, new_plan)
        shared["runtime"]["emit"](Event("plan", {"plan": shared["plan"], "round": shared["rounds"],
                                                 "source": "replan"}))
        queue = _queue_for(new_plan, shared.get("results", {}), shared["options"]["strategy"])
        if not queue:
            return "review"
        shared["queue"], shared["pass_kind"] = queue, "plan"
        if out.get("ran") is not None:  # what ran beside the re-plan is kept; the pass runs the rest
            _took_overlap(shared, out["ran"])
        return "work"


class ClaimsNode(AsyncNode):
    """Holds each new model draft to its sources before review (`utils/run/claims.py`): a sentence
    that fails goes back to its worker once, with the exact problem; if the revision still fails,
    the sentence is marked unverified in the document and counted."""

    async def prep_async(self, shared):
        llm = _phase(shared, "checking claims")
        spec, results = shared["spec"], shared.get("results", {})
        ordered = [results[t.id] for t in _plan(shared).tasks if t.id in results]
        kind = {r["id"]: getattr(spec.roles.get(r.get("role")), "kind", None) for r in ordered}
        drafts = {r["id"]: r.get("output") or "" for r in ordered if r.get("state") == DONE and kind[r["id"]] == "llm"
                  and (r.get("claims") or {}).get("digest") != digest(r.get("output") or "")}
        return {"offline": llm.offline, "mode": spec.claims, "inputs": _input_names(shared), "results": ordered,
                "tools": [r for r in ordered if kind[r["id"]] == "tool"], "drafts": drafts,
                "sent": dict(shared.get("claims_sent", {}))}

    async def exec_async(self, p):
        if p["offline"]:  # no model wrote anything: placeholders are not claims
            return {}
        return await asyncio.to_thread(check_drafts, p["mode"], p["inputs"], p["results"], p["tools"],
                                       p["drafts"], p["sent"])

    async def post_async(self, shared, p, checked):
        emit, results = shared["runtime"]["emit"], shared.setdefault("results", {})
        sent, back = shared.setdefault("claims_sent", {}), {}
        for tid, out in checked.items():
            if "feedback" in out:
                sent[tid], back[tid] = out["record"]["sent_back"], out["feedback"]
                continue
            results[tid].update(output=out["output"], claims=out["record"])
            emit(Event("claims", {"id": tid, "result": results[tid]}))
            marked = out["record"]["unsupported"] + out["record"]["uncited"]
            if marked:
                emit(Event("notice", {"level": "warn", "message": f"claims: {tid}: {marked} sentence(s) marked "
                                                                  "unverified (reasons in footnotes)"}))
        records = [r["claims"] for r in results.values() if r.get("state") == DONE and r.get("claims")]
        if records:
            shared["verification"] = totals(records)
        if not back:
            return "review"
        emit(Event("notice", {"level": "info", "message": "claims: sent back to their workers once: " + ", ".join(
            f"{tid} ({sent[tid]} sentence(s))" for tid in back)}))
        shared["feedback"], shared["queue"], shared["pass_kind"] = back, list(back), "claims"
        return "revise"


class ReviewerNode(AsyncNode):
    """Reviews finished work against the workflow's criteria; sends flagged tasks back (bounded)."""

    async def prep_async(self, shared):
        llm = _phase(shared, "reviewing")
        emit = shared["runtime"]["emit"]
        results, reviews = shared.get("results", {}), shared.get("reviews", [])
        digest = results_digest(results)
        last = reviews[-1] if reviews else {}
        # A resumed run whose work has not changed since its last clean review: that review stands.
        reuse = bool(last) and last.get("digest") == digest and not last.get("failed") and not last.get("rerun")
        return {"llm": llm, "emit": emit, "spec": shared["spec"], "plan": _plan(shared),
                "results": results, "round": len(reviews) + 1, "options": shared["options"],
                "digest": digest, "reuse": reuse}

    async def exec_async(self, p):
        if p["reuse"]:
            return {"reused": True}
        done = [tid for tid, r in p["results"].items() if r.get("state") == DONE]
        if not done:
            return ReviewResult(score=None, summary="Nothing finished to review.", tasks=[])
        messages = review_messages(spec=p["spec"], plan=p["plan"], results=p["results"], round_no=p["round"],
                                   budget_tokens=p["options"]["context_budget"] * 2)
        # Offline there is no judge: the stand-in approves without a score, which the run's schema
        # (a score is required of a model) would refuse.
        schema = ReviewResult if p["llm"].offline else review_model(done)
        try:
            reply = await p["llm"].complete(messages, model=p["options"].get("reviewer_model"),
                                            schema=schema, temperature=0.1,
                                            purpose=f"review round {p['round']}")
        except BudgetExceeded as exc:  # a stop: the document is still assembled, resumable
            return {"stopped": str(exc)}
        except OrchError as exc:  # a failed review is not an approval: keep the work, say it is unreviewed
            return {"failed": str(exc)}
        return reply.data

    async def post_async(self, shared, p, review):
        emit = shared["runtime"]["emit"]
        if isinstance(review, dict):
            if review.get("reused"):
                shared.pop("unreviewed", None)
                return "approve"
            if "stopped" in review:
                shared["stopped"] = review["stopped"]
                return "stopped"
            reason = f"review round {p['round']} failed; the work is kept unreviewed: {review['failed']}"
            emit(Event("notice", {"level": "warn", "message": reason}))
            shared["unreviewed"] = reason
            record = {"round": p["round"], "score": None, "summary": reason, "failed": review["failed"],
                      "revise": [], "approved": [], "rerun": [], "bounded": False}
            shared.setdefault("reviews", []).append(record)
            emit(Event("review", record))
            return "approve"
        shared.pop("unreviewed", None)
        plan, results = p["plan"], p["results"]
        # Feedback-free "revise" verdicts give a worker nothing to act on: they are not revisions.
        flagged = {v.id: v.feedback.strip() for v in review.tasks
                   if v.verdict == "revise" and v.feedback.strip() and results.get(v.id, {}).get("state") == DONE}
        will_revise = bool(flagged) and count_revisions(shared.get("reviews")) < shared["options"]["max_revisions"]
        rerun, held = bounded_rerun(plan, flagged, results, shared["options"].get("max_rerun")) if will_revise \
            else ([], [])
        record = {"round": p["round"], "score": review.score, "summary": review.summary,
                  "revise": [{"id": k, "feedback": v} for k, v in flagged.items()],
                  "approved": [v.id for v in review.tasks if v.verdict == "approve"],
                  "rerun": rerun, "held": held, "bounded": bool(flagged) and not will_revise, "digest": p["digest"]}
        shared.setdefault("reviews", []).append(record)
        shared["revisions_done"] = count_revisions(shared["reviews"])  # saved in run.json for older readers
        emit(Event("review", record))
        if will_revise:
            emit(Event("notice", {"level": "info", "message": (
                f"revision: {len(rerun)} task(s) will re-run ({len(flagged)} sent back, "
                f"{len(rerun) - len(flagged)} depending on them)"
                + (f"; {len(held)} further dependent(s) keep their version (cap {len(rerun)})" if held else ""))}))
        if not will_revise:
            return "approve"
        shared["feedback"] = {tid: flagged.get(tid) or "A task you depend on was revised; update your part to match."
                              for tid in rerun}
        shared["queue"], shared["pass_kind"] = rerun, "revision"
        return "revise"


class AggregatorNode(AsyncNode):
    """Assembles the document in plan order and makes one cohesion pass (title, intro, transitions)."""

    async def prep_async(self, shared):
        llm = _phase(shared, "assembling")
        state = RunState.of({**shared, "plan": _plan(shared)})
        return {"llm": llm, "spec": shared["spec"], "plan": state.plan, "state": state,
                "results": shared.get("results", {}), "options": shared["options"],
                "stopped": shared.get("stopped"), "inputs": _input_names(shared), "emit": shared["runtime"]["emit"],
                "web": shared.get("inputs", {}).get("web")}

    async def exec_async(self, p):
        spec, plan = p["spec"], p["plan"]
        sections = document_sections(plan, p["results"], spec.assembly.include_roles, spec.assembly.summary_role)
        notes, cohesion = [], None
        # A stopped run (token budget) makes no further model calls: the cohesion pass waits for --resume.
        if not p["stopped"] and p["state"].any_done():
            try:
                reply = await p["llm"].complete(
                    cohesion_messages(spec=spec, plan=plan, sections=sections,
                                      budget_tokens=p["options"]["context_budget"] * 2),
                    model=p["options"].get("reviewer_model"), schema=cohesion_model([s[0] for s in sections]),
                    purpose="cohesion pass")
                cohesion = Cohesion.model_validate(reply.data.model_dump())
            except OrchError as exc:  # the sections are worth more than the polish; said, not hidden
                notes.append(f"Cohesion pass skipped: {exc}")
                p["emit"](Event("notice", {"level": "warn", "message": f"cohesion pass skipped: {exc}"}))
        if p["stopped"]:
            notes.append(f"Run stopped before all tasks ran: {p['stopped']}. Resume with --resume.")
        sources = (report_sources([Path(x).name for x in p["inputs"]], p["results"], [t.id for t in plan.tasks], sections)
                   if spec.assembly.cite_inputs else [])
        if spec.assembly.cite_inputs and not sources and not (p["web"] or {}).get("enabled"):  # say plainly that nothing backs it
            sections.insert(0, ("sources", "Sources", f"> **{NO_SOURCES}**"))
        doc = assemble(plan, sections, cohesion, offline=p["llm"].offline, notes=notes, sources=sources)
        doc = cite_web(doc, [p["results"].get(t.id, {}) for t in plan.tasks], p["web"], len(sources))
        minimum = p["options"].get("min_score")
        status, reason = p["state"].status(spec.review.min_score if minimum is None else minimum)
        return {"document": doc, "title": cohesion.title if cohesion else plan.goal,
                "meta_description": cohesion.meta_description if cohesion else "",
                "status": status, "status_reason": reason}

    async def post_async(self, shared, p, out):
        shared.update(out)
        shared["runtime"]["emit"](Event("phase", {"name": "done"}))
        return None
