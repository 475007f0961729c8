"""A small core compatible with the public API of `kaygraph` 0.3.x, used when that package is absent.

Why it exists: the app is written against KayGraph's node/graph model (prep -> exec -> post, actions
routing to successors), but the package cannot always be installed. This module re-implements only
the *public behaviour* the app relies on (see /work/shared/kaygraph-api.md), written from that
description, so `utils/engine.py` can fall back to it and the same code runs on either engine.
Import these classes through `utils.engine`, never directly.

Shape of the model:
- A node runs `prep(shared)`, `exec(prep_res)` (pure, retried), `post(shared, prep_res, exec_res)`;
  `post` returns an *action* string that picks the next node.
- A graph walks nodes along actions. Each step runs a shallow copy of the node, so attributes a node
  assigns while running never leak back to the wired original (run state belongs in `shared`).
- Graphs are nodes, so they nest; batch and async variants follow the same rules.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

__all__ = [
    "Config", "BaseNode", "Node", "BatchNode", "ParallelBatchNode", "Graph", "BatchGraph",
    "AsyncNode", "AsyncBatchNode", "AsyncParallelBatchNode", "AsyncGraph", "AsyncBatchGraph",
    "AsyncParallelBatchGraph",
]

__version__ = "0.3-compat"


class Config:
    """A plain key/value bag shared down a graph; empty configs inherit the graph's (see Graph)."""

    def __init__(self, data: dict | None = None, **kwargs: Any) -> None:
        self._data: dict[str, Any] = {**(data or {}), **kwargs}

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value

    def update(self, other: dict | Config | None = None, **kwargs: Any) -> None:
        self._data.update(other.to_dict() if isinstance(other, Config) else (other or {}), **kwargs)

    def merge(self, other: dict | Config) -> Config:
        """A new Config with `other` layered over this one (neither is changed)."""
        merged = Config(self._data)
        merged.update(other)
        return merged

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


def _as_config(config: Config | dict | None) -> Config:
    return config if isinstance(config, Config) else Config(config)


class _Transition:
    """What `node - "action"` returns, so that `node - "action" >> other` reads as a labelled edge."""

    def __init__(self, source: BaseNode, action: str) -> None:
        self.source, self.action = source, action

    def __rshift__(self, target: BaseNode) -> BaseNode:
        return self.source.next(target, self.action)


class BaseNode:
    """Lifecycle, wiring and params; no retries. Subclasses override prep/exec/post."""

    def __init__(self, node_id: str | None = None, config: Config | dict | None = None) -> None:
        self.node_id = node_id or f"{type(self).__name__}_{id(self)}"
        self.params: dict[str, Any] = {}
        self.successors: dict[str, BaseNode] = {}
        self.config = _as_config(config)
        self.logger = logging.getLogger(f"{__name__}.{type(self).__name__}")

    # --- wiring -------------------------------------------------------------------------------
    def set_params(self, params: dict) -> None:
        """Copy, so a graph handing the same dict to many nodes can't see one node's edits."""
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict, got {type(params).__name__}")
        self.params = dict(params)

    def next(self, node: BaseNode, action: str = "default") -> BaseNode:
        """Wire `action` to `node`; returns `node` so chains read left to right."""
        if action in self.successors:
            warnings.warn(f"Overwriting successor for action '{action}' of {self.node_id}")
        self.successors[action] = node
        return node

    def __rshift__(self, other: BaseNode) -> BaseNode:
        return self.next(other)

    def __sub__(self, action: str) -> _Transition:
        if not isinstance(action, str):
            raise TypeError(f"action must be a str, got {type(action).__name__}")
        return _Transition(self, action)

    # --- lifecycle (override these) -----------------------------------------------------------
    def prep(self, shared: Any) -> Any:
        return None

    def exec(self, prep_res: Any) -> Any:
        return None

    def post(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return None

    def before_prep(self, shared: Any) -> None:
        """Hook before prep (sync path only)."""

    def after_exec(self, shared: Any, prep_res: Any, exec_res: Any) -> None:
        """Hook between exec and post (sync path only)."""

    def on_error(self, shared: Any, exc: Exception) -> bool:
        """Return True to swallow `exc`; the node then yields action None (sync path only)."""
        return False

    # --- running ------------------------------------------------------------------------------
    def _exec(self, prep_res: Any) -> Any:
        return self.exec(prep_res)

    def _run(self, shared: Any) -> Any:
        try:
            self.before_prep(shared)
            prep_res = self.prep(shared)
            exec_res = self._exec(prep_res)
            self.after_exec(shared, prep_res, exec_res)
            return self.post(shared, prep_res, exec_res)
        except Exception as exc:
            if self.on_error(shared, exc):
                return None
            raise

    def run(self, shared: Any) -> Any:
        """Run this node alone (successors are ignored: that is a Graph's job)."""
        if self.successors:
            warnings.warn(f"{self.node_id} won't run its successors; wrap it in a Graph.")
        return self._run(shared)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node_id}>"


class Node(BaseNode):
    """A node whose `exec` is retried; `cur_retry` tells exec which attempt (0-based) this is."""

    def __init__(self, max_retries: int = 1, wait: float = 0, node_id: str | None = None,
                 config: Config | dict | None = None) -> None:
        super().__init__(node_id=node_id, config=config)
        self.max_retries, self.wait, self.cur_retry = max_retries, wait, 0

    def exec_fallback(self, prep_res: Any, exc: Exception) -> Any:
        """Called after the last failed attempt; its return value stands in for exec's."""
        raise exc

    def _exec(self, prep_res: Any) -> Any:
        # The decision uses the local `attempt`, not `self.cur_retry`: parallel batch items share
        # this node, and one item's counter must not cut another item's retries short.
        attempts = max(1, self.max_retries)
        for attempt in range(attempts):
            self.cur_retry = attempt
            try:
                return self.exec(prep_res)
            except Exception as exc:
                if attempt == attempts - 1:
                    return self.exec_fallback(prep_res, exc)
                if self.wait > 0:
                    time.sleep(self.wait)
        return None  # unreachable; keeps type checkers quiet


class BatchNode(Node):
    """`prep` returns items; `exec(item)` runs per item (each retried); results keep item order."""

    def _exec(self, items: Iterable[Any] | None) -> list[Any]:
        return [Node._exec(self, item) for item in (items or [])]


class ParallelBatchNode(BatchNode):
    """BatchNode over a thread pool: for blocking I/O. Results in item order; first error raises."""

    def __init__(self, max_workers: int | None = None, max_retries: int = 1, wait: float = 0,
                 node_id: str | None = None, config: Config | dict | None = None) -> None:
        super().__init__(max_retries=max_retries, wait=wait, node_id=node_id, config=config)
        self.max_workers = max_workers

    def _exec(self, items: Iterable[Any] | None) -> list[Any]:
        items = list(items or [])
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(lambda item: Node._exec(self, item), items))


class Graph(BaseNode):
    """Walks nodes along actions. A graph is itself a node, so graphs nest inside graphs."""

    def __init__(self, start: BaseNode | None = None, config: Config | dict | None = None,
                 node_id: str | None = None) -> None:
        super().__init__(node_id=node_id, config=config)
        self.start_node = start

    def start(self, node: BaseNode) -> BaseNode:
        self.start_node = node
        return node

    def get_next_node(self, current: BaseNode, action: Any) -> BaseNode | None:
        """Follow `action` (None means "default"); warn when a wired node has no such edge."""
        key = action or "default"
        nxt = current.successors.get(key)
        if nxt is None and current.successors:
            warnings.warn(f"Graph ends: '{key}' not found in {list(current.successors)}", UserWarning)
        return nxt

    def _prepare_step(self, node: BaseNode, params: dict) -> BaseNode:
        """Copy per step so run-time attributes stay off the wired original; pass params/config."""
        step = copy.copy(node)
        step.set_params(params)
        if not len(step.config) and len(self.config):
            step.config = self.config
        return step

    def _begin(self, params: dict | None) -> tuple[dict, BaseNode]:
        """The params every step gets and the first node; shared by the sync and async loops."""
        if self.start_node is None:
            raise ValueError(f"{self.node_id} has no start node")
        return {**self.params, **(params or {})}, self.start_node

    def _orch(self, shared: Any, params: dict | None = None) -> Any:
        params, node = self._begin(params)
        action = None
        while node is not None:
            step = self._prepare_step(node, params)
            self.logger.debug("running %s", step.node_id)
            action = step._run(shared)
            node = self.get_next_node(step, action)
        return action

    def _run(self, shared: Any) -> Any:
        prep_res = self.prep(shared)
        action = self._orch(shared)
        return self.post(shared, prep_res, action)

    def post(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        """By default a graph's action is its last node's, so a nested graph can route onwards."""
        return exec_res

    def exec(self, prep_res: Any) -> Any:
        raise RuntimeError("A Graph is run, not exec'd")


class BatchGraph(Graph):
    """`prep` returns a list of param dicts; the whole sub-graph runs once per dict."""

    def _run(self, shared: Any) -> Any:
        batches = self.prep(shared) or []
        for batch_params in batches:
            self._orch(shared, {**self.params, **batch_params})
        return self.post(shared, batches, None)


# --- async -------------------------------------------------------------------------------------
class AsyncNode(Node):
    """Node with coroutine hooks. The sync before/after/on_error hooks are *not* called here."""

    async def prep_async(self, shared: Any) -> Any:
        return None

    async def exec_async(self, prep_res: Any) -> Any:
        return None

    async def exec_fallback_async(self, prep_res: Any, exc: Exception) -> Any:
        raise exc

    async def post_async(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return None

    async def _exec(self, prep_res: Any) -> Any:  # type: ignore[override]
        attempts = max(1, self.max_retries)  # local counter: see Node._exec
        for attempt in range(attempts):
            self.cur_retry = attempt
            try:
                return await self.exec_async(prep_res)
            except Exception as exc:
                if attempt == attempts - 1:
                    return await self.exec_fallback_async(prep_res, exc)
                if self.wait > 0:
                    await asyncio.sleep(self.wait)
        return None

    async def _run_async(self, shared: Any) -> Any:
        prep_res = await self.prep_async(shared)
        exec_res = await self._exec(prep_res)
        return await self.post_async(shared, prep_res, exec_res)

    async def run_async(self, shared: Any) -> Any:
        if self.successors:
            warnings.warn(f"{self.node_id} won't run its successors; wrap it in an AsyncGraph.")
        return await self._run_async(shared)

    def _run(self, shared: Any) -> Any:
        raise RuntimeError(f"{self.node_id} is async: use `await node.run_async(shared)`")


class AsyncBatchNode(AsyncNode, BatchNode):
    """Items awaited one after another (order of side effects is the item order)."""

    async def _exec(self, items: Iterable[Any] | None) -> list[Any]:  # type: ignore[override]
        return [await AsyncNode._exec(self, item) for item in (items or [])]


class AsyncParallelBatchNode(AsyncNode, BatchNode):
    """All items started at once with gather (no limit: bound it yourself); results in item order."""

    async def _exec(self, items: Iterable[Any] | None) -> list[Any]:  # type: ignore[override]
        return list(await asyncio.gather(*(AsyncNode._exec(self, item) for item in (items or []))))


class AsyncGraph(Graph, AsyncNode):
    """Graph that awaits async nodes and calls sync ones directly; an AsyncNode, so it nests."""

    async def _orch_async(self, shared: Any, params: dict | None = None) -> Any:
        params, node = self._begin(params)
        action = None
        while node is not None:
            step = self._prepare_step(node, params)
            self.logger.debug("running %s", step.node_id)
            if isinstance(step, AsyncNode):
                action = await step._run_async(shared)
            else:
                action = step._run(shared)
            node = self.get_next_node(step, action)
        return action

    async def _run_async(self, shared: Any) -> Any:
        prep_res = await self.prep_async(shared)
        action = await self._orch_async(shared)
        return await self.post_async(shared, prep_res, action)

    async def post_async(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return exec_res

    def _run(self, shared: Any) -> Any:
        raise RuntimeError(f"{self.node_id} is async: use `await graph.run_async(shared)`")


class AsyncBatchGraph(AsyncGraph):
    """`prep_async` returns param dicts; the sub-graph runs once per dict, one after another."""

    async def _run_async(self, shared: Any) -> Any:
        batches = await self.prep_async(shared) or []
        for batch_params in batches:
            await self._orch_async(shared, {**self.params, **batch_params})
        return await self.post_async(shared, batches, None)


class AsyncParallelBatchGraph(AsyncGraph):
    """Like AsyncBatchGraph, but all param dicts run together (gather; shared must tolerate it)."""

    async def _run_async(self, shared: Any) -> Any:
        batches = await self.prep_async(shared) or []
        await asyncio.gather(*(self._orch_async(shared, {**self.params, **bp}) for bp in batches))
        return await self.post_async(shared, batches, None)
