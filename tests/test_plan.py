"""Plan validation, cycles, revision closure and outline: the pure parts of planning."""
from utils.run.plan import Plan, Task, dependents_closure, find_cycle, outline, plan_problems

ROLES = ["writer", "analyst"]


def make(*specs) -> Plan:
    return Plan(goal="g", tasks=[Task(id=i, title=f"T {i}", role=r, depends_on=d) for i, r, d in specs])


def test_valid_plan_has_no_problems():
    plan = make(("a", "analyst", []), ("b", "writer", ["a"]), ("c", "writer", ["a", "b"]))
    assert plan_problems(plan, ROLES, 10) == []


def test_every_problem_is_reported_at_once():
    plan = make(("a", "analyst", ["zz"]), ("a", "poet", []), ("b", "writer", ["b"]))
    problems = plan_problems(plan, ROLES, 2)
    text = "\n".join(problems)
    assert "3 tasks; at most 2" in text
    assert "'a' is used more than once" in text
    assert "unknown role 'poet'" in text
    assert "depends on unknown task 'zz'" in text
    assert "'b' depends on itself" in text


def test_cycle_is_named():
    plan = make(("a", "writer", ["c"]), ("b", "writer", ["a"]), ("c", "writer", ["b"]))
    problems = plan_problems(plan, ROLES)
    cycle = [p for p in problems if p.startswith("dependency cycle")]
    assert len(cycle) == 1
    path = cycle[0].split(": ")[1].split(" -> ")
    assert path[0] == path[-1] and set(path) == {"a", "b", "c"}


def test_find_cycle_on_long_chain_does_not_recurse():
    edges = {f"t{i}": [f"t{i-1}"] if i else [] for i in range(5000)}
    assert find_cycle(edges) is None
    edges["t0"] = ["t4999"]
    assert find_cycle(edges) is not None


def test_empty_plan_and_known_ids():
    assert plan_problems(Plan(goal="g", tasks=[]), ROLES) == ["the plan has no tasks"]
    assert plan_problems(Plan(goal="g", tasks=[]), ROLES, allow_empty=True) == []
    later = make(("n1", "writer", ["old"]))
    assert plan_problems(later, ROLES, known_ids=["old"]) == []
    assert plan_problems(later, ROLES) != []


def test_priority_is_clamped():
    assert Task(id="a", title="x", role="writer", priority=0).priority == 1
    assert Task(id="a", title="x", role="writer", priority=9).priority == 5


def test_dependents_closure_in_plan_order():
    plan = make(("a", "analyst", []), ("b", "writer", ["a"]), ("c", "writer", []), ("d", "writer", ["b"]))
    assert dependents_closure(plan, ["b"]) == ["b", "d"]
    assert dependents_closure(plan, ["a"]) == ["a", "b", "d"]
    assert dependents_closure(plan, ["c"]) == ["c"]


def test_outline_marks_current_task():
    plan = make(("a", "analyst", []), ("b", "writer", ["a"]))
    text = outline(plan, "b")
    assert "[a] T a (analyst)" in text
    assert text.splitlines()[1].endswith("<- your task")
    assert "<- your task" not in text.splitlines()[0]


def test_outline_of_a_large_plan_is_a_bounded_window_around_the_task():
    plan = Plan(goal="g", tasks=[Task(id=f"t{i}", title=f"T{i}", role="writer") for i in range(500)])
    text = outline(plan, "t250", limit=40)
    lines = text.splitlines()
    assert len(lines) == 42 and lines[0] == "(... 230 earlier tasks not listed)"
    assert lines[-1] == "(... 230 later tasks not listed)" and "[t250] T250 (writer)  <- your task" in text
    assert outline(plan, "t0", limit=40).splitlines()[0].startswith("1. [t0]")
    assert outline(plan, "t499", limit=40).splitlines()[-1].endswith("<- your task")


def test_numeric_ids_from_a_model_are_accepted_as_strings():
    task = Task.model_validate({"id": 2, "title": "x", "role": "writer", "depends_on": [1]})
    assert task.id == "2" and task.depends_on == ["1"]


def test_salvage_drops_bad_references_renames_clashes_and_breaks_cycles():
    from utils.run.plan import Plan, Task, find_cycle, plan_problems, salvage_plan

    plan = Plan(goal="g", tasks=[Task(id="a", title="A", role="w", depends_on=["c", "ghost"]),
                                 Task(id="b", title="B", role="w", depends_on=["a", "b"]),
                                 Task(id="c", title="C", role="w", depends_on=["b"]),
                                 Task(id="a", title="A2", role="w"),
                                 Task(id="done1", title="D", role="w", depends_on=["old"])])
    fixed, fixes = salvage_plan(plan, known_ids=["old", "done1"])
    assert plan_problems(fixed, ["w"], known_ids=["old", "done1"]) == []
    assert [t.id for t in fixed.tasks] == ["a", "b", "c", "a_2", "done1_2"]
    assert find_cycle({t.id: t.depends_on for t in fixed.tasks}) is None
    assert fixed.task("done1_2").depends_on == ["old"]   # a finished task is a valid dependency
    assert len(fixes) >= 4 and any("ghost" in f for f in fixes)
    assert plan.task("b").depends_on == ["a", "b"]        # the input plan is left as it was


def test_wire_needs_adds_missing_edges_and_reports_what_cannot_be_met():
    from utils.run.plan import Plan, Task, wire_needs

    plan = Plan(goal="g", tasks=[Task(id="s", title="S", role="scheduler"), Task(id="b1", title="B", role="breakdown"),
                                 Task(id="b2", title="B", role="breakdown", depends_on=["s"]),
                                 Task(id="c", title="C", role="charter")])
    missing = wire_needs(plan, {"scheduler": ["breakdown"], "charter": ["gatherer"]})
    assert plan.task("s").depends_on == ["b1"]           # b2 -> s would make a cycle: not wired
    assert missing == ["task 'c' (charter) needs a 'gatherer' task and the plan has none"]
    frozen = Plan(goal="g", tasks=[Task(id="s", title="S", role="scheduler"), Task(id="b", title="B", role="breakdown")])
    wire_needs(frozen, {"scheduler": ["breakdown"]}, frozen=["s"])
    assert frozen.task("s").depends_on == []


def test_bounded_rerun_keeps_flagged_tasks_and_caps_dependents():
    from utils.run.plan import Plan, Task, bounded_rerun

    plan = Plan(goal="g", tasks=[Task(id="r", title="R", role="w")]
                + [Task(id=f"s{i}", title="S", role="w", depends_on=["r"]) for i in range(30)])
    done = {t.id: {"state": "done"} for t in plan.tasks}
    rerun, held = bounded_rerun(plan, ["r", "s29"], done, cap=4)
    assert rerun == ["r", "s0", "s1", "s29"] and len(held) == 27
    rerun, held = bounded_rerun(plan, ["s3"], done)
    assert rerun == ["s3"] and held == []
