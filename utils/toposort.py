"""The one topological order and cycle finder (plans, the scheduler and the project tool share it).

Built on the standard library's `graphlib`, so there is a single, well-tested implementation of
Kahn's algorithm in the app. It lives at the bottom layer because both `utils/run` (plans,
scheduling) and `utils/tools` (work breakdowns) need it, and tools may not import the run layer.
"""
from __future__ import annotations

import heapq
from graphlib import CycleError, TopologicalSorter
from typing import Any, Callable, Hashable, Iterable, Mapping


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
