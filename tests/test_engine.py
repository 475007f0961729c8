"""Pins the node-library behaviour the app relies on.

Only `utils.engine` is imported and only public behaviour is checked, so these tests pass unchanged on
the real `kaygraph` 0.3.x and on the builtin core (`ORCH_ENGINE=builtin` forces the latter).
Concurrency is proven with events/barriers and timeouts, never with sleeps.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from utils.engine import (
    ENGINE, ENGINE_NAME, ENGINE_VERSION, AsyncBatchNode, AsyncGraph, AsyncNode,
    AsyncParallelBatchNode, BatchGraph, BatchNode, Graph, Node, ParallelBatchNode,
)

TIMEOUT = 5.0  # generous upper bound so a broken overlap fails instead of hanging


class Step(Node):
    """Appends its name to shared["trail"] and returns a fixed action."""

    def __init__(self, name: str, action: str | None = None, **kw):
        super().__init__(**kw)
        self.name, self.action = name, action

    def post(self, shared, prep_res, exec_res):
        shared.setdefault("trail", []).append(self.name)
        return self.action


# --- engine selection ----------------------------------------------------------------------------
def test_engine_constants():
    assert ENGINE_NAME in ("kaygraph", "builtin")
    assert ENGINE.startswith(ENGINE_NAME)
    assert isinstance(ENGINE_VERSION, str) and ENGINE_VERSION


def test_orch_engine_env_forces_builtin():
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "ORCH_ENGINE": "builtin"}
    out = subprocess.run([sys.executable, "-c", "import utils.engine as e; print(e.ENGINE_NAME, e.ENGINE)"],
                         cwd=root, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["builtin", "builtin"]


# --- lifecycle -----------------------------------------------------------------------------------
def test_lifecycle_order_and_values():
    calls = []

    class Rec(Node):
        def prep(self, shared):
            calls.append(("prep", shared["x"]))
            return shared["x"] + 1

        def exec(self, prep_res):
            calls.append(("exec", prep_res))
            return prep_res * 10

        def post(self, shared, prep_res, exec_res):
            calls.append(("post", prep_res, exec_res))
            shared["out"] = exec_res
            return "done"

    shared = {"x": 1}
    assert Rec().run(shared) == "done"
    assert calls == [("prep", 1), ("exec", 2), ("post", 2, 20)]
    assert shared["out"] == 20


def test_defaults_return_none_and_node_id():
    node = Node()
    assert node.run({}) is None
    assert node.node_id.startswith("Node_")
    assert Node(node_id="custom").node_id == "custom"
    assert node.params == {} and node.successors == {}


def test_sync_hooks_and_on_error_suppression():
    calls = []

    class Hooked(Node):
        def before_prep(self, shared):
            calls.append("before_prep")

        def prep(self, shared):
            calls.append("prep")

        def exec(self, prep_res):
            calls.append("exec")
            return "r"

        def after_exec(self, shared, prep_res, exec_res):
            calls.append(("after_exec", exec_res))

        def post(self, shared, prep_res, exec_res):
            calls.append("post")
            return "ok"

    assert Hooked().run({}) == "ok"
    assert calls == ["before_prep", "prep", "exec", ("after_exec", "r"), "post"]

    class Failing(Node):
        def __init__(self, suppress):
            super().__init__()
            self.suppress = suppress

        def exec(self, prep_res):
            raise ValueError("boom")

        def on_error(self, shared, exc):
            shared["seen"] = str(exc)
            return self.suppress

    shared: dict = {}
    assert Failing(True).run(shared) is None
    assert shared["seen"] == "boom"
    with pytest.raises(ValueError, match="boom"):
        Failing(False).run({})


def test_set_params_copies_and_rejects_non_dict():
    node = Node()
    params = {"a": 1}
    node.set_params(params)
    params["a"] = 2
    assert node.params == {"a": 1}
    with pytest.raises(TypeError):
        node.set_params([("a", 1)])  # type: ignore[arg-type]


def test_run_single_node_warns_when_it_has_successors():
    a, b = Step("a"), Step("b")
    a >> b
    shared: dict = {}
    with pytest.warns(UserWarning):
        a.run(shared)
    assert shared["trail"] == ["a"]  # successors are not run


# --- wiring and routing --------------------------------------------------------------------------
def test_rshift_chain_returns_right_node_and_runs_in_order():
    a, b, c = Step("a"), Step("b"), Step("c")
    assert (a >> b) is b
    b >> c
    graph = Graph()
    assert graph.start(a) is a
    shared: dict = {}
    graph.run(shared)
    assert shared["trail"] == ["a", "b", "c"]


def test_graph_start_constructor_and_returns_last_action():
    a, b = Step("a"), Step("b", action="finished")
    a >> b
    shared: dict = {}
    assert Graph(start=a).run(shared) == "finished"
    assert shared["trail"] == ["a", "b"]


def test_named_action_branching():
    decide = Step("decide", action="right")
    left, right = Step("left"), Step("right")
    assert (decide - "left" >> left) is left
    decide - "right" >> right
    shared: dict = {}
    Graph(start=decide).run(shared)
    assert shared["trail"] == ["decide", "right"]


def test_action_must_be_str():
    with pytest.raises(TypeError):
        Node() - 3  # type: ignore[operator]


def test_rewiring_an_action_warns():
    a = Node()
    a >> Node()
    with pytest.warns(UserWarning):
        a >> Node()


def test_post_action_routes_and_none_means_default():
    class Router(Node):
        def post(self, shared, prep_res, exec_res):
            shared.setdefault("trail", []).append("router")
            return shared["route"]

    for route, expected in [(None, "default"), ("alt", "alt")]:
        router = Router()
        router >> Step("default")
        router - "alt" >> Step("alt")
        shared = {"route": route}
        Graph(start=router).run(shared)
        assert shared["trail"] == ["router", expected]


def test_loop_until_counter_stops_it():
    class Work(Node):
        def post(self, shared, prep_res, exec_res):
            shared["count"] = shared.get("count", 0) + 1

    class Check(Node):
        def post(self, shared, prep_res, exec_res):
            return "again" if shared["count"] < 3 else "stop"

    work, check, end = Work(), Check(), Step("end")
    work >> check
    check - "again" >> work
    check - "stop" >> end
    shared: dict = {}
    Graph(start=work).run(shared)
    assert shared["count"] == 3
    assert shared["trail"] == ["end"]


def test_missing_action_ends_graph_with_warning():
    a = Step("a", action="nowhere")
    a - "somewhere" >> Step("b")
    shared: dict = {}
    with pytest.warns(UserWarning, match="Graph ends"):
        Graph(start=a).run(shared)
    assert shared["trail"] == ["a"]


def test_end_without_successors_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Graph(start=Step("only", action="anything")).run({}) == "anything"


def test_nested_graph_is_a_node_and_routes_on_last_action():
    i1, i2 = Step("inner1"), Step("inner2", action="inner_done")
    i1 >> i2
    inner = Graph(start=i1)
    before, after, other = Step("before"), Step("after"), Step("other")
    before >> inner
    inner - "inner_done" >> after
    inner >> other
    shared: dict = {}
    Graph(start=before).run(shared)
    assert shared["trail"] == ["before", "inner1", "inner2", "after"]


def test_graph_params_reach_every_node_including_nested():
    class P(Node):
        def post(self, shared, prep_res, exec_res):
            shared.setdefault("seen", []).append(dict(self.params))

    inner = Graph(start=P())
    first = P()
    first >> inner
    graph = Graph(start=first)
    graph.set_params({"run": 7})
    shared: dict = {}
    graph.run(shared)
    assert shared["seen"] == [{"run": 7}, {"run": 7}]


def test_shallow_copy_per_step_keeps_run_attributes_off_original():
    class Stateful(Node):
        def prep(self, shared):
            self.scratch = shared["value"]

        def post(self, shared, prep_res, exec_res):
            shared["scratch"] = self.scratch

    node = Stateful()
    shared = {"value": 42}
    Graph(start=node).run(shared)
    assert shared["scratch"] == 42
    assert not hasattr(node, "scratch")


# --- retries -------------------------------------------------------------------------------------
def test_retries_expose_cur_retry_then_succeed():
    class Flaky(Node):
        def exec(self, prep_res):
            prep_res.append(self.cur_retry)
            if self.cur_retry < 2:
                raise RuntimeError("transient")
            return "ok"

        def prep(self, shared):
            return shared["attempts"]

        def post(self, shared, prep_res, exec_res):
            shared["result"] = exec_res

    shared: dict = {"attempts": []}
    Flaky(max_retries=3).run(shared)
    assert shared["attempts"] == [0, 1, 2]
    assert shared["result"] == "ok"


def test_exec_fallback_gets_last_exception_after_all_tries():
    class Doomed(Node):
        def prep(self, shared):
            return shared

        def exec(self, shared):
            shared["tries"] = shared.get("tries", 0) + 1
            raise ValueError(f"fail {self.cur_retry}")

        def exec_fallback(self, shared, exc):
            return f"fallback after {exc}"

        def post(self, shared, prep_res, exec_res):
            shared["result"] = exec_res

    shared: dict = {}
    Doomed(max_retries=2, wait=0).run(shared)
    assert shared["tries"] == 2
    assert shared["result"] == "fallback after fail 1"


def test_default_fallback_reraises():
    class Broken(Node):
        def exec(self, prep_res):
            raise KeyError("nope")

    with pytest.raises(KeyError):
        Broken(max_retries=2).run({})


# --- batches -------------------------------------------------------------------------------------
class Squares(BatchNode):
    def prep(self, shared):
        return shared["items"]

    def exec(self, item):
        return item * item

    def post(self, shared, prep_res, exec_res):
        shared["out"] = exec_res


def test_batch_node_results_in_order_and_none_is_empty():
    shared = {"items": [3, 1, 2]}
    Squares().run(shared)
    assert shared["out"] == [9, 1, 4]
    for empty in (None, []):
        shared = {"items": empty}
        Squares().run(shared)
        assert shared["out"] == []


def test_batch_node_retries_and_falls_back_per_item():
    class PerItem(BatchNode):
        def prep(self, shared):
            self.tries = shared["tries"]
            return ["good", "flaky", "bad"]

        def exec(self, item):
            self.tries[item] = self.tries.get(item, 0) + 1
            if item == "bad" or (item == "flaky" and self.tries[item] == 1):
                raise RuntimeError(item)
            return item.upper()

        def exec_fallback(self, item, exc):
            return f"fallback:{exc}"

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared: dict = {"tries": {}}
    PerItem(max_retries=2).run(shared)
    assert shared["out"] == ["GOOD", "FLAKY", "fallback:bad"]
    assert shared["tries"] == {"good": 1, "flaky": 2, "bad": 2}


def test_parallel_batch_node_overlaps_and_keeps_order():
    n = 4
    barrier = threading.Barrier(n, timeout=TIMEOUT)
    finished = [threading.Event() for _ in range(n)]

    class Par(ParallelBatchNode):
        def prep(self, shared):
            return list(range(n))

        def exec(self, i):
            barrier.wait()  # every item is running at once, or this times out
            if i + 1 < n:  # finish in reverse order so ordering must be restored
                assert finished[i + 1].wait(TIMEOUT)
            finished[i].set()
            return f"r{i}"

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared: dict = {}
    Par(n).run(shared)  # max_workers is the first positional argument
    assert shared["out"] == ["r0", "r1", "r2", "r3"]


def test_parallel_batch_node_error_propagates():
    class Bad(ParallelBatchNode):
        def prep(self, shared):
            return [1, 2, 3]

        def exec(self, item):
            if item == 2:
                raise ValueError("item 2")
            return item

    with pytest.raises(ValueError, match="item 2"):
        Bad(max_workers=2).run({})


def test_batch_graph_runs_subgraph_per_param_dict():
    class Rec(Node):
        def post(self, shared, prep_res, exec_res):
            shared.setdefault("seen", []).append(dict(self.params))

    class PerFile(BatchGraph):
        def prep(self, shared):
            return [{"file": "a.txt"}, {"file": "b.txt"}]

    graph = PerFile(start=Rec())
    graph.set_params({"run": 1})
    shared: dict = {}
    graph.run(shared)
    assert shared["seen"] == [{"run": 1, "file": "a.txt"}, {"run": 1, "file": "b.txt"}]


# --- async ---------------------------------------------------------------------------------------
def test_async_node_lifecycle_and_retries():
    class AFlaky(AsyncNode):
        async def prep_async(self, shared):
            return shared["attempts"]

        async def exec_async(self, attempts):
            attempts.append(self.cur_retry)
            if self.cur_retry == 0:
                raise RuntimeError("first try fails")
            return "ok"

        async def post_async(self, shared, prep_res, exec_res):
            shared["result"] = exec_res
            return "next"

    shared: dict = {"attempts": []}
    assert asyncio.run(AFlaky(max_retries=2).run_async(shared)) == "next"
    assert shared == {"attempts": [0, 1], "result": "ok"}


def test_async_fallback_and_default_reraise():
    class ADoomed(AsyncNode):
        async def exec_async(self, prep_res):
            raise ValueError("always")

    class ASaved(ADoomed):
        async def exec_fallback_async(self, prep_res, exc):
            return f"saved:{exc}"

        async def post_async(self, shared, prep_res, exec_res):
            shared["result"] = exec_res

    with pytest.raises(ValueError, match="always"):
        asyncio.run(ADoomed(max_retries=2).run_async({}))
    shared: dict = {}
    asyncio.run(ASaved(max_retries=2).run_async(shared))
    assert shared["result"] == "saved:always"


def test_async_node_refuses_sync_run():
    with pytest.raises(RuntimeError):
        AsyncNode().run({})
    with pytest.raises(RuntimeError):
        Graph(start=AsyncNode()).run({})


class AStep(AsyncNode):
    def __init__(self, name: str, action: str | None = None):
        super().__init__()
        self.name, self.action = name, action

    async def post_async(self, shared, prep_res, exec_res):
        shared.setdefault("trail", []).append(self.name)
        return self.action


def test_async_graph_mixes_sync_and_async_nodes_routes_and_nests():
    class ACounter(AsyncNode):
        async def post_async(self, shared, prep_res, exec_res):
            shared["n"] = shared.get("n", 0) + 1
            shared.setdefault("trail", []).append(f"count{shared['n']}")
            return "again" if shared["n"] < 2 else "done"

    counter, sync_step, end = ACounter(), Step("sync"), AStep("end")
    counter - "again" >> sync_step
    sync_step >> counter
    counter - "done" >> end
    inner = AsyncGraph(start=counter)

    class P(AsyncNode):
        async def post_async(self, shared, prep_res, exec_res):
            shared["params"] = dict(self.params)

    start = AStep("start")
    start >> inner >> P()
    outer = AsyncGraph(start=start)
    outer.set_params({"k": "v"})
    shared: dict = {}
    asyncio.run(outer.run_async(shared))
    assert shared["trail"] == ["start", "count1", "sync", "count2", "end"]
    assert shared["params"] == {"k": "v"}


def test_async_batch_node_runs_items_one_after_another():
    class Seq(AsyncBatchNode):
        async def prep_async(self, shared):
            self.state = shared
            return [0, 1, 2]

        async def exec_async(self, item):
            s = self.state
            s["in_flight"] += 1
            s["max_in_flight"] = max(s["max_in_flight"], s["in_flight"])
            await asyncio.sleep(0)  # a yield point, so a concurrent engine would interleave here
            s["in_flight"] -= 1
            s["order"].append(item)
            return item * 2

        async def post_async(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared = {"in_flight": 0, "max_in_flight": 0, "order": []}
    asyncio.run(Seq().run_async(shared))
    assert shared["max_in_flight"] == 1
    assert shared["order"] == [0, 1, 2]
    assert shared["out"] == [0, 2, 4]


def test_async_parallel_batch_node_overlaps_orders_and_falls_back_per_item():
    n = 4

    class Par(AsyncParallelBatchNode):
        async def prep_async(self, shared):
            self.started = [asyncio.Event() for _ in range(n)]
            self.tries = shared["tries"]
            return list(range(n))

        async def exec_async(self, i):
            self.tries[i] = self.tries.get(i, 0) + 1
            self.started[i].set()
            # Only possible if every item is in flight at the same time; else the timeout fails it.
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self.started)), TIMEOUT)
            if i == 3:
                raise ValueError("permanent")  # every try fails: fallback for this item only
            return f"r{i}"

        async def exec_fallback_async(self, i, exc):
            return f"fallback{i}:{exc}"

        async def post_async(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared: dict = {"tries": {}}
    asyncio.run(Par(max_retries=2).run_async(shared))
    assert shared["out"] == ["r0", "r1", "r2", "fallback3:permanent"]
    assert shared["tries"] == {0: 1, 1: 1, 2: 1, 3: 2}


def test_async_parallel_batch_node_retries_per_item():
    # One failing item only: with several items retrying at once, an engine that keeps the retry
    # counter on the shared node (cur_retry) may cut retries short, so the app must not rely on that.
    class Par(AsyncParallelBatchNode):
        async def prep_async(self, shared):
            self.tries = shared["tries"]
            return ["a", "b", "c"]

        async def exec_async(self, item):
            self.tries[item] = self.tries.get(item, 0) + 1
            if item == "b" and self.tries[item] < 3:
                raise RuntimeError("transient")
            return item.upper()

        async def post_async(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared: dict = {"tries": {}}
    asyncio.run(Par(max_retries=3).run_async(shared))
    assert shared["out"] == ["A", "B", "C"]
    assert shared["tries"] == {"a": 1, "b": 3, "c": 1}
