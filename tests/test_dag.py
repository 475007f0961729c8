"""The one DAG module: longest chains and levels against a brute-force walk of every path."""
from __future__ import annotations

from utils.dag import levels, longest_chains


def test_dag_longest_chains_and_levels_match_a_brute_force_walk():
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["outside"], "f": ["d", "e"]}
    cost = {"a": 2.0, "b": 5.0, "c": 1.0, "d": 3.0, "e": 4.0, "f": 1.0}

    def paths_to(n):  # every chain ending at n, enumerated
        inner = [d for d in deps[n] if d in deps]
        return [[n]] if not inner else [p + [n] for d in inner for p in paths_to(d)]

    def paths_from(n):
        after = [m for m in deps if n in deps[m]]
        return [[n]] if not after else [[n] + p for m in after for p in paths_from(m)]

    up, down = longest_chains(deps, cost.__getitem__), longest_chains(deps, cost.__getitem__, downstream=True)
    for n in deps:
        assert up[n] == max(sum(cost[x] for x in p) for p in paths_to(n))
        assert down[n] == max(sum(cost[x] for x in p) for p in paths_from(n))
        assert levels(deps)[n] == max(len(p) for p in paths_to(n)) - 1
    cyclic = longest_chains({"x": ["y"], "y": ["x"], "z": []})
    assert cyclic == {"x": 1.0, "y": 1.0, "z": 1.0}


def test_free_id_takes_the_first_free_suffix_after_cutting_the_stem():
    from utils.dag import free_id

    assert free_id("a", {"a", "a_2"}) == "a_3"
    assert free_id("a", {"a"}, sep="-") == "a-2"
    assert free_id("x" * 40, {"x" * 40}, keep=34) == "x" * 34 + "_2"
