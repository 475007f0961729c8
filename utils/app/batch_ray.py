"""`--batch FILE --executor ray`: each goal a Ray task, the model-call limit and budget in a Ray actor.

Why Ray: past one process (CPU-heavy analyses, thousands of goals, several machines) a batch needs
an existing distributed engine, not a home-made one. A goal's task runs the very same `run_goal`
as a thread of the local executor; what changes is where the shared objects live: ONE actor holds
the adaptive call limit (utils.model.limits.AdaptiveLimit, with its 429 back-off) and the token
budget (TokenBudget) for the whole cluster, and each task's model client reaches them through the
small proxies below (the `CallPool` protocol). A task lost with its node is retried by Ray
(`max_retries`) and resumes its run folder (the actor remembers it), so no finished task is paid
twice. Run folders go to the output directory, which on a cluster must be shared storage.

Ray is optional (requirements-ray.txt); without it `--executor ray` is a one-line error.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from utils.errors import BudgetExceeded, UsageError

RAY_MISSING = "--executor ray needs Ray: pip install -r requirements-ray.txt (or: pip install ray)"
TASK_RETRIES = 3
POLL_S = 0.3
ROOT = Path(__file__).resolve().parents[2]
# what a goal's task needs from the driver's environment: settings, never a secret. Task arguments
# are kept by Ray (object store, task specs, lineage for retries, logs on errors), so the API keys
# are read from the worker's own environment: a local Ray's workers inherit the driver's; on a
# cluster they must be set where `ray start` runs (README).
ENV_KEYS = ("ORCH_HOME", "ORCH_ENGINE", "OPENAI_BASE_URL", "ORCH_MODEL", "ORCH_PROVIDER")
KEY_MISSING = ("OPENAI_API_KEY is not set on this Ray worker ({node}): keys are never sent as task arguments; "
               "set it in the environment of `ray start` on every node")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


def init_kwargs(address: str | None = None, num_cpus: int | None = None) -> dict:
    """`ray.init` arguments: workers import this app from its folder; a local Ray for the batch
    unless `address` names a cluster (`auto`: the one `ray start --head` started here)."""
    kw: dict[str, Any] = {"runtime_env": {"env_vars": {"PYTHONPATH": str(ROOT)}}, "include_dashboard": False,
                          "log_to_driver": False, "configure_logging": False}
    if address:
        kw["address"] = address
    elif num_cpus:
        kw["num_cpus"] = num_cpus
    return kw


class PoolActor:
    """The cluster's one call limit and token budget, plus each goal's progress and run folder."""

    def __init__(self, ceiling: int, total: int | None, used: int) -> None:
        from utils.model.limits import AdaptiveLimit, TokenBudget
        self.limit = AdaptiveLimit(ceiling)
        self.budget = TokenBudget(total, used) if total else None
        self.progress: dict[str, dict] = {}
        self.folders: dict[str, str] = {}

    async def acquire(self) -> int:
        return await self.limit.acquire()

    async def release(self) -> None:
        self.limit.release()

    async def succeeded(self) -> None:
        self.limit.succeeded()

    async def overloaded(self, epoch: int) -> None:
        self.limit.overloaded(epoch)

    async def reserve(self, prompt: int, reply: int, least: int) -> int | str:
        try:
            return self.budget.reserve(prompt, reply, least)
        except BudgetExceeded as exc:  # said, not raised: Ray would wrap the exception
            return str(exc)

    async def release_tokens(self, held: int) -> None:
        self.budget.release(held)

    async def spend(self, tokens: int) -> None:
        self.budget.spend(tokens)

    async def report(self, key: str, snap: dict) -> None:
        self.progress.setdefault(key, {}).update(snap)

    async def started(self, key: str, folder: str) -> None:
        self.folders[key] = folder

    async def folder_of(self, key: str) -> str | None:
        return self.folders.get(key)

    async def snapshot(self) -> tuple[dict, dict, int]:
        return dict(self.progress), dict(self.folders), self.limit.peak


class RemoteLimit:
    """`AdaptiveLimit`'s methods, served by the actor (fire-and-forget but for `acquire`)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def acquire(self) -> int:
        return await self.actor.acquire.remote()

    def release(self) -> None:
        self.actor.release.remote()

    def succeeded(self) -> None:
        self.actor.succeeded.remote()

    def overloaded(self, epoch: int) -> None:
        self.actor.overloaded.remote(epoch)


class RemoteBudget:
    """`TokenBudget`'s methods, served by the actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def reserve(self, prompt: int, reply: int, least: int) -> int:
        import ray
        got = ray.get(self.actor.reserve.remote(prompt, reply, least))
        if isinstance(got, str):
            raise BudgetExceeded(got)
        return got

    def release(self, held: int) -> None:
        self.actor.release_tokens.remote(held)

    def spend(self, tokens: int) -> None:
        self.actor.spend.remote(tokens)


def goal_task(job: Any, actor: Any, env: dict, budget: bool, needs_key: bool) -> dict:
    """One goal in a Ray worker: the same `run_goal` as a local thread, the pool in the actor. A
    retry after a lost node finds the run folder the first attempt started and resumes it. The
    driver says only whether it has a model key (`needs_key`); the key is this worker's own."""
    import ray

    from utils.app.batch import run_goal
    from utils.model.limits import CallPool

    os.environ.update(env)
    if needs_key and not os.environ.get("OPENAI_API_KEY"):
        return {"goal": job.goal, "id": job.id, "line": job.line, "key": job.key, "status": "failed",
                "workflow": None, "calls": 0, "tokens": 0, "cost": None, "seconds": None, "folder": job.folder,
                "error": KEY_MISSING.format(node=ray.get_runtime_context().get_node_id()[:12])}
    known = ray.get(actor.folder_of.remote(job.key))
    if known and (Path(known) / "run.json").is_file():
        job.folder = known
    pool = CallPool(RemoteLimit(actor), RemoteBudget(actor) if budget else None)
    return run_goal(job, pool, lambda snap: actor.report.remote(job.key, snap),
                    lambda folder, workflow: ray.get(actor.started.remote(job.key, folder)))


def run_on_ray(jobs: list, settings: Any, log: Any, progress: dict, view: Any, *, budget_total: int | None,
               spent: int, limit: int) -> tuple[dict[str, dict], int]:
    """Submit every goal as a Ray task; follow them until all ended. Returns (rows, peak calls)."""
    ray = import_ray()
    cpus = settings.flag("ray_cpus") or 1.0
    if cpus <= 0:
        raise UsageError(f"--ray-cpus must be more than 0, got {cpus}")
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(**init_kwargs(settings.flag("ray_address")))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot start or join Ray ({settings.flag('ray_address') or 'local'}): "
                             f"{str(exc).splitlines()[0][:200]}") from None
    ended: dict[str, dict] = {}
    try:
        actor = ray.remote(PoolActor).options(max_concurrency=10_000).remote(limit, budget_total, spent)
        task = ray.remote(goal_task).options(max_retries=TASK_RETRIES, num_cpus=cpus)
        env = {k: os.environ[k] for k in ENV_KEYS if os.environ.get(k)}
        needs_key = bool(os.environ.get("OPENAI_API_KEY"))
        refs = {task.remote(job, actor, env, bool(budget_total), needs_key): job for job in jobs}
        pending, logged, peak = list(refs), set(), 0
        view.start(progress)
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
            snaps, folders, peak = ray.get(actor.snapshot.remote())
            for key, snap in snaps.items():
                if key in progress:
                    for k in ("state", "workflow", "done", "tasks", "tokens"):
                        if k in snap:
                            setattr(progress[key], k, snap[k])
            for key, folder in folders.items():
                if key not in logged and key in progress:
                    logged.add(key)
                    job = progress[key].job
                    progress[key].extra["folder"] = folder
                    log.append({"key": key, "line": job.line, "goal": job.goal, "id": job.id, "status": "running",
                                "folder": folder})
            for ref in ready:
                job = refs[ref]
                try:
                    row = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the task failed past its retries: that goal only
                    row = {"goal": job.goal, "id": job.id, "line": job.line, "key": job.key, "status": "crashed",
                           "workflow": None, "calls": 0, "tokens": 0, "cost": None, "seconds": None,
                           "folder": folders.get(job.key), "error": f"Ray: {str(exc).splitlines()[0][:300]}"}
                log.append(row)
                progress[job.key].row = ended[job.key] = row
                progress[job.key].state = row["status"]
            view.refresh(progress)
        return ended, peak
    finally:
        if started_here:
            ray.shutdown()
