"""The process's one event loop: every async piece of the shell (routing, a run's set-up calls, the
run itself, the interactive planner) runs through `run_closing` here.

Why one loop: a process never tears an event loop down and builds another between the routing call,
the set-up calls and the run (issue 13), and a model client is always closed in the loop it used.
"""
from __future__ import annotations

import asyncio
import atexit
import threading
from typing import Any, Awaitable, Callable

_loops = threading.local()


def run_in_loop(coro: Awaitable[Any]) -> Any:
    """Run `coro` on the process's one event loop (one per thread), created on first use.

    `asyncio.Runner` handles Ctrl-C as `asyncio.run` does. Python 3.10 has no Runner: a loop a call.
    """
    if not hasattr(asyncio, "Runner"):
        return asyncio.run(coro)
    runner = getattr(_loops, "runner", None)
    if runner is None:
        runner = _loops.runner = asyncio.Runner()
        atexit.register(runner.close)
    return runner.run(coro)


def run_closing(llm, work: Callable[[], Awaitable[Any]]) -> Any:
    """`work()` on the process's event loop, then close the model client's connections in it.

    Real servers keep connections alive; a client left open outlives its work and fails noisily
    when it is garbage-collected.
    """
    async def go() -> Any:
        try:
            return await work()
        except BaseException:  # a failed run stops at once: no sibling task goes on paying for calls
            await _cancel_others()
            raise
        finally:
            await llm.aclose()

    return run_in_loop(go())


async def _cancel_others(wait_s: float = 5.0) -> None:
    """Cancel every other task on this loop (tasks a failed gather left running) and wait for them."""
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=wait_s)
