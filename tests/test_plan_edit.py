"""Plan edits from the interactive prompt: new plans every time, clear errors, tidy dependencies."""
from __future__ import annotations

import pytest

from utils.run import plan_edit
from utils.run.plan import Plan, Task, plan_problems

ROLES = ["analyst", "writer"]


def make() -> Plan:
    return Plan(goal="g", notes="n", tasks=[
        Task(id="t1", title="Outline", role="analyst", priority=1),
        Task(id="t2", title="Intro", role="writer", depends_on=["t1"], priority=2),
        Task(id="t3", title="Body", role="writer", depends_on=["t1", "t2"]),
        Task(id="t4", title="End", role="writer", depends_on=["t2", "t3"]),
    ])


def test_drop_removes_task_and_references():
    plan = make()
    new = plan_edit.drop(plan, "t2")
    assert new.ids() == ["t1", "t3", "t4"]
    assert new.task("t3").depends_on == ["t1"]
    assert new.task("t4").depends_on == ["t3"]
    assert plan_problems(new, ROLES, 10) == []


def test_add_goes_after_its_last_dependency_or_at_the_end():
    plan = make()
    new = plan_edit.add(plan, "t5", "writer", "  FAQ  ", depends_on=["t1", "t2"], priority=4, instructions="Q&A")
    assert new.ids() == ["t1", "t2", "t5", "t3", "t4"]
    t5 = new.task("t5")
    assert (t5.title, t5.role, t5.depends_on, t5.priority, t5.instructions) == ("FAQ", "writer", ["t1", "t2"], 4, "Q&A")
    assert plan_edit.add(plan, "t9", "writer", "Appendix").ids()[-1] == "t9"


def test_add_leaves_role_and_dependency_checks_to_plan_problems():
    new = plan_edit.add(make(), "t5", "poet", "Verse", depends_on=["zz"])
    text = "\n".join(plan_problems(new, ROLES, 10))
    assert "unknown role 'poet'" in text and "unknown task 'zz'" in text


def test_add_refuses_a_taken_id_an_empty_title_and_a_bad_priority():
    with pytest.raises(ValueError, match="'t2' is already used"):
        plan_edit.add(make(), "t2", "writer", "Again")
    with pytest.raises(ValueError, match="title"):
        plan_edit.add(make(), "t5", "writer", "   ")
    with pytest.raises(ValueError, match="priority"):
        plan_edit.add(make(), "t5", "writer", "X", priority=9)


def test_rename_instructions_deps_priority():
    plan = make()
    assert plan_edit.rename(plan, "t2", " A better intro ").task("t2").title == "A better intro"
    assert plan_edit.set_instructions(plan, "t3", "Use examples").task("t3").instructions == "Use examples"
    assert plan_edit.set_deps(plan, "t4", ["t1", "t1", "t3"]).task("t4").depends_on == ["t1", "t3"]
    assert plan_edit.set_deps(plan, "t4", []).task("t4").depends_on == []
    assert plan_edit.set_priority(plan, "t4", 1).task("t4").priority == 1


@pytest.mark.parametrize("p", [0, 6, -1, "2", 2.5, True])
def test_priority_out_of_range_is_refused_not_clamped(p):
    with pytest.raises(ValueError, match="priority must be"):
        plan_edit.set_priority(make(), "t1", p)


def test_set_deps_can_create_problems_that_plan_problems_names():
    cyc = plan_edit.set_deps(make(), "t1", ["t4"])
    assert any(p.startswith("dependency cycle") for p in plan_problems(cyc, ROLES, 10))
    unknown = plan_edit.set_deps(make(), "t2", ["t9"])
    assert "task 't2' depends on unknown task 't9'" in plan_problems(unknown, ROLES, 10)


@pytest.mark.parametrize("edit", [
    lambda p: plan_edit.drop(p, "t9"),
    lambda p: plan_edit.rename(p, "t9", "x"),
    lambda p: plan_edit.set_instructions(p, "t9", "x"),
    lambda p: plan_edit.set_deps(p, "t9", ["t1"]),
    lambda p: plan_edit.set_priority(p, "t9", 2),
])
def test_unknown_id_is_a_clear_value_error(edit):
    with pytest.raises(ValueError) as info:
        edit(make())
    msg = str(info.value)
    assert "no task 't9'" in msg and "t1, t2, t3, t4" in msg and "\n" not in msg


def test_edits_never_mutate_their_input():
    plan = make()
    before = plan.model_dump()
    results = [
        plan_edit.drop(plan, "t2"),
        plan_edit.add(plan, "t5", "writer", "FAQ", depends_on=["t3"]),
        plan_edit.rename(plan, "t1", "New"),
        plan_edit.set_instructions(plan, "t1", "x"),
        plan_edit.set_deps(plan, "t3", []),
        plan_edit.set_priority(plan, "t3", 5),
    ]
    assert plan.model_dump() == before
    for new in results:
        assert new is not plan
        assert all(a is not b for a in new.tasks for b in plan.tasks)
        assert new.goal == "g" and new.notes == "n"


def test_empty_title_on_rename_is_refused():
    with pytest.raises(ValueError, match="non-empty title"):
        plan_edit.rename(make(), "t1", "   ")


def test_parse_ids():
    assert plan_edit.parse_ids("t3, t5") == ["t3", "t5"]
    assert plan_edit.parse_ids("t3,t5,t3") == ["t3", "t5"]
    assert plan_edit.parse_ids("  ") == []


def test_from_command_maps_prompt_words_to_edits():
    plan = make()
    assert plan_edit.from_command(plan, "drop", "t4").ids() == ["t1", "t2", "t3"]
    added = plan_edit.from_command(plan, "add", "t5 writer Frequently asked questions --after t1, t2")
    assert added.task("t5").title == "Frequently asked questions" and added.task("t5").depends_on == ["t1", "t2"]
    assert plan_edit.from_command(plan, "add", "t5 writer FAQ --after=t3").task("t5").depends_on == ["t3"]
    assert plan_edit.from_command(plan, "rename", "t2 A better intro").task("t2").title == "A better intro"
    assert plan_edit.from_command(plan, "instr", "t2 Keep it short.").task("t2").instructions == "Keep it short."
    assert plan_edit.from_command(plan, "deps", "t4 t1,t3").task("t4").depends_on == ["t1", "t3"]
    assert plan_edit.from_command(plan, "deps", "t4").task("t4").depends_on == []
    assert plan_edit.from_command(plan, "priority", "t4 2").task("t4").priority == 2


@pytest.mark.parametrize("name, rest", [("drop", ""), ("drop", "t1 t2"), ("add", "t5 writer"),
                                        ("rename", "t2"), ("instr", ""), ("deps", ""), ("priority", "t2 high")])
def test_from_command_bad_arguments_give_the_usage(name, rest):
    with pytest.raises(ValueError, match=r"^usage: /" + name):
        plan_edit.from_command(make(), name, rest)
