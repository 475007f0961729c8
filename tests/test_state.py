"""The typed run state (utils/run/state.py): the done/pending rule, the status and the counters, each
written once; and no product module re-declares the task-state strings of `TaskState`."""
import ast
from pathlib import Path

from utils.run.results import TaskState
from utils.run.plan import Plan
from utils.run.state import RunState, count_revisions, ids_with, keeps, plan_of, record_result, set_plan

ROOT = Path(__file__).resolve().parents[1]
PLAN = {"goal": "g", "tasks": [{"id": "a", "title": "A", "role": "writer"},
                               {"id": "b", "title": "B", "role": "writer", "depends_on": ["a"]}]}


def run(states: dict, **kw) -> RunState:
    return RunState.of({"plan": PLAN, "results": {k: {"id": k, "state": v} for k, v in states.items()}, **kw})


def test_pending_never_overwrites_done_in_dicts_and_in_the_model():
    results = {"a": {"id": "a", "state": "done", "output": "kept"}}
    assert not record_result(results, {"id": "a", "state": "pending"}) and results["a"]["output"] == "kept"
    assert record_result(results, {"id": "a", "state": "failed"}) and results["a"]["state"] == "failed"
    assert record_result(results, {"id": "b", "state": "pending"}) and "b" in results
    state = run({"a": "done"})
    assert not state.record({"id": "a", "state": "pending"}) and state.results["a"].state == TaskState.DONE
    assert state.record({"id": "a", "state": "done", "output": "new"}) and state.results["a"].output == "new"
    assert keeps({"state": "done"}, {"state": "pending"}) and not keeps(None, {"state": "pending"})


def test_status_is_decided_in_one_place():
    assert run({"a": "done", "b": "done"}).status() == ("ok", None)
    assert run({"a": "done", "b": "failed"}).status()[0] == "partial"
    assert run({"a": "failed", "b": "skipped"}).status()[0] == "failed"
    assert run({"a": "done"}).status()[0] == "stopped"
    assert run({"a": "done", "b": "done"}, stopped="token budget").status() == ("stopped", "token budget")
    assert run({"a": "done", "b": "done"}, status_reason="re-plan failed").status() == ("partial", "re-plan failed")
    assert run({"a": "done", "b": "done"}, unreviewed="review failed").status() == ("unreviewed", "review failed")
    low = [{"score": 3, "summary": "thin", "revise": [{"id": "a", "feedback": "more"}]}]
    status, reason = run({"a": "done", "b": "done"}, reviews=low).status(min_score=5)
    assert status == "needs-work" and "3/10" in reason and "a: more" in reason
    assert run({"a": "done", "b": "done"}, reviews=low).status(min_score=2)[0] == "ok"


def test_derived_counters_and_completeness():
    reviews = [{"rerun": ["a"]}, {"rerun": []}, {"rerun": ["a", "b"]}]
    assert count_revisions(reviews) == 2 and run({}, reviews=reviews).revisions_done == 2
    state = run({"a": "done", "b": "failed"})
    assert state.ids_in(TaskState.DONE) == ["a"] and state.left() == ["b"] and state.ended() == {"a", "b"}
    assert run({"a": "done", "b": "done"}, status="ok").is_complete("doc")
    assert not run({"a": "done", "b": "done"}, status="ok").is_complete("")
    assert not run({"a": "done"}, status="ok").is_complete("doc")


def test_ids_with_reads_dicts_and_typed_results_alike():
    results = {"a": {"state": "done"}, "b": {"id": "b"}, "c": {"state": "failed"}}
    assert ids_with(results, TaskState.DONE) == ["a"] and ids_with(results, TaskState.PENDING) == ["b"]
    assert ids_with(results, TaskState.FAILED, TaskState.DONE) == ["a", "c"]
    assert ids_with(run({"a": "done", "b": "skipped"}).results, TaskState.SKIPPED) == ["b"]


def test_the_typed_plan_is_validated_once_per_plan():
    shared = {"plan": PLAN, "runtime": {}}
    first = plan_of(shared)
    assert first.ids() == ["a", "b"] and plan_of(shared) is first          # the same plan: not validated again
    set_plan(shared, Plan(goal="g", tasks=[]))
    assert shared["plan"] == {"goal": "g", "notes": "", "tasks": [], "done": False} and plan_of(shared).tasks == []
    shared["plan"] = dict(PLAN)                                             # a new object: validated anew
    assert plan_of(shared) is not first and plan_of(shared).ids() == ["a", "b"]


STATE_WORDS = {s.value for s in TaskState}


def _stateish(node: ast.AST) -> bool:
    """An expression that names a task state: `state`, `x.state`, `r["state"]`, `r.get("state")`, STATES..."""
    text = ast.unparse(node).lower()
    return "state" in text or "ended" in text


def state_literals(source: str) -> list[tuple[int, int, str]]:
    """Task-state strings used as states: compared with a state, a state's default, a state given to a
    result or a notifier, or a module constant/collection of states."""
    hits = []
    tree = ast.parse(source)

    def lits(node):
        if isinstance(node, ast.Constant) and node.value in STATE_WORDS:
            return [node]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [e for e in node.elts if isinstance(e, ast.Constant) and e.value in STATE_WORDS]
        return []

    for node in ast.walk(tree):
        found = []
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_stateish(s) for s in sides):
                found = [c for s in sides for c in lits(s)]
        elif isinstance(node, ast.Call):
            fn = ast.unparse(node.func)
            if fn.endswith(".get") and node.args and isinstance(node.args[0], ast.Constant) \
                    and node.args[0].value == "state" and len(node.args) > 1:
                found = lits(node.args[1])
            elif "notify" in fn or "report" in fn:
                found = [c for a in node.args for c in lits(a)]
            found += [c for k in node.keywords if k.arg == "state" for c in lits(k.value)]
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "state":
                    found += lits(v)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = " ".join(ast.unparse(t) for t in targets)
            if node.value is not None and (names.isupper() or "state" in names.lower()):
                found = lits(node.value)
                if isinstance(node.value, ast.Dict):  # a table keyed by states (styles, icons)
                    found = [k for k in node.value.keys if k is not None and lits(k)]
        hits += [(c.lineno, c.col_offset, c.value) for c in found]
    return sorted(set(hits))


# Not task states: a batch job's own status (utils/app/batch.py); the web citer sits in utils/tools,
# below utils/run where the enum lives (imports point down only), and reads a result's "done".
ALLOWED = {("utils/app/batch.py", "running"), ("utils/tools/web/cite.py", "done")}


def product_files() -> list[Path]:
    files = [ROOT / "nodes.py", ROOT / "flows.py", ROOT / "main.py", *sorted((ROOT / "utils").rglob("*.py"))]
    return [f for f in files if f.name != "results.py" or f.parent.name != "run"]  # the enum's own module


def test_the_state_finder_finds_re_declarations():
    sample = ('DONE, FAILED = "done", "failed"\nENDED = ("done", "skipped")\nif r.get("state") == "pending": pass\n'
              'x = r.get("state", "pending")\nnotify("waiting", None)\nR(state="running")\n'
              'STYLES = {"done": 1, "failed": 2, "running": 3}\nok = {"failed": str(e)}\nphase = "done"\n')
    assert [line for line, _, _ in state_literals(sample)] == [1, 1, 2, 2, 3, 4, 5, 6, 7, 7, 7]


def test_no_product_module_re_declares_task_states():
    found = [f"{f.relative_to(ROOT)}:{line}: {value!r}" for f in product_files()
             for line, _, value in state_literals(f.read_text(encoding="utf-8"))
             if (f.relative_to(ROOT).as_posix(), value) not in ALLOWED]
    assert not found, "use utils.run.results.TaskState instead of:\n" + "\n".join(found)
