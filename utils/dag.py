"""The one DAG module: topological order, cycle finder, longest chains and levels.

Plans, the scheduler, the timeline, the plan picture and the project tool's critical path all
share it (the longest path used to be computed four ways). Built on the standard library's
`graphlib`, so there is a single, well-tested implementation of Kahn's algorithm in the app. It
lives at the bottom layer because both `utils/run` (plans, scheduling) and `utils/tools` (work
breakdowns) need it, and tools may not import the run layer.

A graph is a mapping node -> the nodes it depends on; dependencies on nodes outside the mapping
are treated as already met (finished earlier, or outside this pass).
"""
from __future__ import annotations

import heapq
import itertools
from graphlib import CycleError, TopologicalSorter
from typing import Any, Callable, Container, Hashable, Iterable, Mapping


class DependencyCycle(ValueError):
    """The graph has a cycle; `cycle` is one closed path in 'depends on' direction (a, b, a)."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__("dependency cycle: " + " -> ".join(cycle))
        self.cycle = cycle


def _sorter(deps: Mapping[str, Iterable[str]]) -> TopologicalSorter:
    """Dependencies on unknown nodes are treated as already met (finished earlier, or outside)."""
    ts: TopologicalSorter = TopologicalSorter()
    for node, before in deps.items():
        ts.add(node, *(d for d in before if d in deps))
    return ts


def topo_order(deps: Mapping[str, Iterable[str]], key: Callable[[str], Any] | None = None) -> list[str]:
    """Every node after the nodes it depends on; among the nodes ready at once the smallest `key`
    goes first (default: the mapping's order). Raises `DependencyCycle` naming one cycle.

    A self-dependency is a cycle of one (a, a).
    """
    position = {node: i for i, node in enumerate(deps)}
    rank = key or position.__getitem__
    ts = _sorter(deps)
    try:
        ts.prepare()
    except CycleError as exc:
        # graphlib lists each node before the node that depends on it; report "depends on" arrows.
        raise DependencyCycle([str(n) for n in reversed(exc.args[1])]) from None
    heap = [(rank(n), position[n], n) for n in ts.get_ready()]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, _, node = heapq.heappop(heap)
        order.append(node)
        ts.done(node)
        for nxt in ts.get_ready():
            heapq.heappush(heap, (rank(nxt), position[nxt], nxt))
    return order


def find_cycle(deps: Mapping[str, Iterable[Hashable]]) -> list[str] | None:
    """One dependency cycle as a closed path (a, b, a) in 'depends on' direction, or None."""
    try:
        _sorter(deps).prepare()
    except CycleError as exc:
        return [str(n) for n in reversed(exc.args[1])]
    return None


def dependents(deps: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """The reversed graph: for each node, the nodes that depend on it (in the mapping's order)."""
    out: dict[str, list[str]] = {node: [] for node in deps}
    for node, before in deps.items():
        for d in dict.fromkeys(before):
            if d in out and d != node:
                out[d].append(node)
    return out


def longest_chains(deps: Mapping[str, Iterable[str]], cost: Callable[[str], float] = lambda node: 1.0,
                   *, downstream: bool = False) -> dict[str, float]:
    """For each node, the cost of the longest chain that ends with it (through what it depends on),
    or with `downstream`, that starts with it (through what depends on it); the node's own cost is
    included. Linear in nodes plus edges. Nodes a cycle holds up get their own cost only, so a
    damaged plan still gets an answer (the cycle itself is reported by `topo_order`/`find_cycle`).
    """
    up = {node: [d for d in dict.fromkeys(before) if d in deps and d != node] for node, before in deps.items()}
    down = dependents(deps)
    before, after = (down, up) if downstream else (up, down)
    left = {node: len(before[node]) for node in deps}
    ready = [node for node, n in left.items() if not n]
    best: dict[str, float] = {}
    while ready:
        node = ready.pop()
        best[node] = cost(node) + max((best[b] for b in before[node]), default=0.0)
        for nxt in after[node]:
            left[nxt] -= 1
            if not left[nxt]:
                ready.append(nxt)
    return {node: best[node] if node in best else cost(node) for node in deps}


def levels(deps: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Each node's level: 0 without dependencies, else one more than its deepest dependency (the
    columns of a DAG picture). Nodes a cycle holds up are level 0."""
    return {node: int(n) - 1 for node, n in longest_chains(deps).items()}


def free_id(base: str, taken: Container[str], *, sep: str = "_", keep: int | None = None) -> str:
    """`base` with the first free suffix `<sep>2`, `<sep>3`, ... (after cutting `base` to `keep`
    characters, so a long id stays under an id length limit): how a duplicate or an added node is
    named, for plans and work breakdowns alike."""
    stem = base if keep is None else base[:keep]
    return next(f"{stem}{sep}{n}" for n in itertools.count(2) if f"{stem}{sep}{n}" not in taken)
