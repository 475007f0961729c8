"""Prompt assembly and the context budget."""
from utils.run.context import SHORTENED, estimate_tokens, fit_outputs, shared_prefix_chars, worker_messages
from utils.run.plan import Plan, Task


def test_fit_outputs_keeps_small_ones_whole_and_shares_the_rest():
    outputs = {"small": "s" * 400, "big1": "b" * 40_000, "big2": "c" * 40_000}
    fitted, shortened = fit_outputs(outputs, 2_000)
    assert shortened and fitted["small"] == outputs["small"]
    assert fitted["big1"].endswith(SHORTENED) and fitted["big2"].endswith(SHORTENED)
    assert abs(len(fitted["big1"]) - len(fitted["big2"])) <= 4
    assert sum(estimate_tokens(v) for v in fitted.values()) <= 2_000 + 10


def test_fit_outputs_untouched_under_budget():
    outputs = {"a": "x" * 100}
    assert fit_outputs(outputs, 1_000) == (outputs, False)


def test_worker_messages_hold_goal_notes_outline_deps_and_feedback():
    plan = Plan(goal="GOAL", notes="NOTES", tasks=[Task(id="a", title="Alpha", role="w"),
                                                   Task(id="b", title="Beta", role="w", depends_on=["a"],
                                                        instructions="INSTR")])
    messages, shortened = worker_messages(system="SYS", plan=plan, task=plan.tasks[1],
                                          dep_outputs={"a": "A-OUT"}, budget_tokens=5_000,
                                          feedback="FIX IT", previous="OLD")
    assert messages[0] == {"role": "system", "content": "SYS"}
    user = messages[1]["content"]
    for part in ("GOAL", "NOTES", "[a] Alpha", "2. [b] Beta (w)  <- your task", "INSTR", "A-OUT", "FIX IT", "OLD"):
        assert part in user
    assert not shortened


def test_prompt_size_is_bounded_by_the_budget():
    plan = Plan(goal="g", tasks=[Task(id="a", title="A", role="w"), Task(id="b", title="B", role="w", depends_on=["a"])])
    messages, shortened = worker_messages(system="s", plan=plan, task=plan.tasks[1],
                                          dep_outputs={"a": "word " * 20_000}, budget_tokens=1_000)
    assert shortened and "shortened to fit the context budget" in messages[1]["content"]
    assert estimate_tokens(messages[1]["content"]) <= 1_100


def _prefix(a: str, b: str) -> str:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[:i]


def test_workers_share_a_prefix_through_the_outline_and_common_dependency():
    """Prompt caching: goal, notes, the unmarked outline and a common dependency's output come before
    anything task-specific, so two sibling tasks' prompts share all of it."""
    plan = Plan(goal="GOAL", notes="NOTES", tasks=[
        Task(id="base", title="Base", role="w"), Task(id="x", title="Ex", role="w", depends_on=["base"]),
        Task(id="y", title="Why", role="w", depends_on=["base"], instructions="Y-ONLY")])
    prompts = []
    for t in plan.tasks[1:]:
        messages, _ = worker_messages(system="SYS", plan=plan, task=t, dep_outputs={"base": "BASE-OUT"},
                                      budget_tokens=5_000)
        prompts.append("\n".join(m["content"] for m in messages))
    common = _prefix(*prompts)
    for part in ("SYS", "GOAL", "NOTES", "1. [base] Base (w)", "2. [x] Ex (w)", "3. [y] Why (w)", "BASE-OUT"):
        assert part in common
    assert "<- your task" not in common and "Y-ONLY" not in common
    assert "3. [y] Why (w)  <- your task" in prompts[1]


def test_dependency_outputs_are_listed_in_plan_order():
    plan = Plan(goal="g", tasks=[Task(id="a", title="A", role="w"), Task(id="b", title="B", role="w"),
                                 Task(id="c", title="C", role="w", depends_on=["b", "a"])])
    messages, _ = worker_messages(system="s", plan=plan, task=plan.tasks[2],
                                  dep_outputs={"b": "B-OUT", "a": "A-OUT"}, budget_tokens=5_000)
    user = messages[1]["content"]
    assert user.index("A-OUT") < user.index("B-OUT") < user.index("<- your task")


def test_shared_prefix_chars_counts_what_a_prefix_cache_reuses():
    assert shared_prefix_chars(["abcdef", "abcxyz", "abcdeQ", "zzz"]) == 0 + 3 + 5 + 0
