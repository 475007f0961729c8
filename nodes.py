"""The KayGraph nodes of the orchestrator–worker pattern.

Each node is thin: `prep` reads the shared store, `exec` does one thing (usually one model call)
and `post` writes the shared store and returns the action that picks the next node. Logic that can
be a pure function lives in `utils/run/`: what a pass runs and a re-plan is told (passes.py), one
task's work (work.py), review verdicts (review.py), the claims check's input (claim_evidence.py),
the document (assemble.py), the typed plan and the task states (state.py). Nodes never print: they emit progress events, and `main.py`
decides how to show them. No run state lives on a node: graphs copy nodes, and the worker batch
shares one instance across all its items.

The shared store's keys are documented once, in the README's design section.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from utils.run.assemble import cohesion_call, document_sections, final_document
from utils.run.claim_evidence import check_drafts, drafts_to_check, verification_records
from utils.run.claims import totals
from utils.engine import AsyncNode, AsyncParallelBatchNode
from utils.errors import BudgetExceeded, OrchError
from utils.events import Event
from utils.run.outputs import Cohesion, ReviewResult
from utils.run.passes import not_started, queue_for, replanning, satisfied, still_queued
from utils.run.plan import Plan
from utils.run.plan_stream import overlap_applies, plan_overlapped
from utils.run.planning import planner
from utils.run.results import TaskResult, TaskState, results_digest
from utils.run.review import failed_review, review_call, reusable, verdict
from utils.run.state import RunState, count_revisions, plan_of, record_result, set_plan, state_of
from utils.run.scheduler import Schedule
from utils.run.work import do_task, task_event

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
    shared["queue"] = still_queued(shared["queue"], ran.results)
    record = shared.setdefault("planning", {**ran.planning, "streamed": {}, "discarded": []})
    record["streamed"].update(ran.streamed)
    record["discarded"] += ran.discarded


class OrchestratorNode(AsyncNode):
    """Plans the goal into tasks (or takes the plan a user edited, or a resumed run's plan)."""

    async def prep_async(self, shared):
        llm = _phase(shared, "planning")
        return {"llm": llm, "spec": shared["spec"], "goal": shared["goal"], "options": shared["options"],
                "inputs": _input_names(shared), "plan": plan_of(shared) if shared.get("plan") else None, "emit": shared["runtime"]["emit"],
                "prior": shared.get("results", {}), "round": shared.get("rounds", 0),
                "worker_inputs": shared.get("inputs", {})}

    async def exec_async(self, p):
        if p["plan"]:
            return p["plan"], "saved", [], None
        opts, source = p["options"], "offline" if p["llm"].offline else "model"
        ask = planner(p["llm"], spec=p["spec"], goal=p["goal"], options=opts, inputs=p["inputs"],
                      mode="next" if opts["strategy"] == "dynamic" else "full")
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
        set_plan(shared, plan)
        results = shared.setdefault("results", {})
        shared["queue"] = queue_for(plan, results, shared["options"]["strategy"])
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
        plan = plan_of(shared)
        results = shared.get("results", {})  # prep only reads the store
        queue = set(shared.get("queue", []))
        opts = shared["options"]
        revising = shared.get("pass_kind") in ("revision", "claims")  # claims: sent back by the citation check
        _phase(shared, "revising" if revising else "working")
        to_run = [t for t in plan.tasks if t.id in queue]
        sched = Schedule(to_run, max_workers=opts["max_workers"], strategy=opts["strategy"],
                         satisfied=satisfied(results, queue))
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
        emit(Event("task", task_event(result, state)))

    @staticmethod
    async def _work(item) -> dict:
        task, prior, sched = item["task"], item["prior"], item["sched"]
        return await do_task(task=task, spec=item["spec"], plan=item["plan"], options=item["options"],
                             llm=item["llm"], inputs=item["inputs"], feedback=item["feedback"].get(task.id, ""),
                             deps={d: sched.results.get(d) or prior.get(d, {}) for d in task.depends_on},
                             previous=prior.get(task.id, {}).get("output", ""))

    async def post_async(self, shared, prep_res, exec_res):
        results = shared.setdefault("results", {})
        for r in exec_res:
            record_result(results, r)  # a revision that never started keeps the approved version
        stopped = next((r["error"] for r in exec_res if state_of(r) == PENDING), None)
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
                "plan": plan_of(shared), "results": shared.get("results", {}),
                "rounds": shared.get("rounds", 0), "inputs": _input_names(shared), "emit": shared["runtime"]["emit"],
                "prior": shared.get("results", {}), "worker_inputs": shared.get("inputs", {})}

    async def exec_async(self, p):
        plan, results = p["plan"], p["results"]
        round_ = replanning(plan, results, p["options"], p["rounds"])
        if round_ is None:
            return None  # bounded: no more planning rounds
        ask = planner(p["llm"], spec=p["spec"], goal=p["goal"], options=round_.options, inputs=p["inputs"],
                      mode=round_.mode, base=plan, finished=round_.finished, known=round_.known, pending=round_.pending)
        try:
            if not overlap_applies(p["options"], p["llm"]):
                return dict(zip(("plan", "notes"), await ask()))
            merged, notes, ran = await plan_overlapped(  # new tasks start as the re-plan streams in
                ask=ask, work=_worker_item(p), spec=p["spec"], goal=plan.goal, options=round_.options, prior=results,
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
            pending = not_started(p["plan"], p["results"])
            if not pending:
                return "review"
            shared["queue"], shared["pass_kind"] = pending, "final"
            return "work"
        set_plan(shared, new_plan)
        shared["runtime"]["emit"](Event("plan", {"plan": shared["plan"], "round": shared["rounds"],
                                                 "source": "replan"}))
        queue = queue_for(new_plan, shared.get("results", {}), shared["options"]["strategy"])
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
        spec = shared["spec"]
        ordered, tools, drafts = drafts_to_check(plan_of(shared), shared.get("results", {}), spec.roles)
        return {"offline": llm.offline, "mode": spec.claims, "inputs": _input_names(shared), "results": ordered,
                "tools": tools, "drafts": drafts, "sent": dict(shared.get("claims_sent", {}))}

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
        records = verification_records(results)
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
        return {"llm": llm, "emit": emit, "spec": shared["spec"], "plan": plan_of(shared),
                "results": results, "round": len(reviews) + 1, "options": shared["options"],
                "digest": digest, "reuse": reusable(reviews, digest)}

    async def exec_async(self, p):
        if p["reuse"]:
            return {"reused": True}
        call = review_call(p["spec"], p["plan"], p["results"], p["round"], p["options"], p["llm"].offline)
        if call is None:
            return ReviewResult(score=None, summary="Nothing finished to review.", tasks=[])
        try:
            reply = await p["llm"].complete(call[0], **call[1])
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
            record = failed_review(p["round"], review["failed"])
            emit(Event("notice", {"level": "warn", "message": record["summary"]}))
            shared["unreviewed"] = record["summary"]
            shared.setdefault("reviews", []).append(record)
            emit(Event("review", record))
            return "approve"
        shared.pop("unreviewed", None)
        judged = verdict(review, p["plan"], p["results"], shared.get("reviews"), shared["options"], p["round"],
                         p["digest"])
        shared.setdefault("reviews", []).append(judged.record)
        shared["revisions_done"] = count_revisions(shared["reviews"])  # saved in run.json for older readers
        emit(Event("review", judged.record))
        if not judged.revise:
            return "approve"
        emit(Event("notice", {"level": "info", "message": judged.notice}))
        shared["feedback"], shared["queue"], shared["pass_kind"] = judged.feedback, judged.rerun, "revision"
        return "revise"


class AggregatorNode(AsyncNode):
    """Assembles the document in plan order and makes one cohesion pass (title, intro, transitions)."""

    async def prep_async(self, shared):
        llm = _phase(shared, "assembling")
        state = RunState.of({**shared, "plan": plan_of(shared)})
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
                messages, call = cohesion_call(spec, plan, sections, p["options"])
                reply = await p["llm"].complete(messages, **call)
                cohesion = Cohesion.model_validate(reply.data.model_dump())
            except OrchError as exc:  # the sections are worth more than the polish; said, not hidden
                notes.append(f"Cohesion pass skipped: {exc}")
                p["emit"](Event("notice", {"level": "warn", "message": f"cohesion pass skipped: {exc}"}))
        if p["stopped"]:
            notes.append(f"Run stopped before all tasks ran: {p['stopped']}. Resume with --resume.")
        doc = final_document(spec, plan, p["results"], sections, cohesion, offline=p["llm"].offline, notes=notes,
                             inputs=p["inputs"], web=p["web"])
        minimum = p["options"].get("min_score")
        status, reason = p["state"].status(spec.review.min_score if minimum is None else minimum)
        return {"document": doc, "title": cohesion.title if cohesion else plan.goal,
                "meta_description": cohesion.meta_description if cohesion else "",
                "status": status, "status_reason": reason}

    async def post_async(self, shared, p, out):
        shared.update(out)
        shared["runtime"]["emit"](Event("phase", {"name": "done"}))
        return None
