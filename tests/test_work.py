"""One task's work as pure steps (utils/run/work.py): the progress event, the worker call, the reply
kept, a tool's input and its artifacts named per task."""
from types import SimpleNamespace

from utils.run.plan import Plan, Task
from utils.run.spec import load_spec
from utils.run.work import reply_result, task_event, tool_input, tool_result, worker_call
from utils.tools import ToolResult

TASK = Task(id="t2", title="Two", role="writer", depends_on=["t1"])
PLAN = Plan(goal="g", tasks=[Task(id="t1", title="One", role="writer"), TASK])
RESULT = {"id": "t2", "title": "Two", "role": "writer", "worker": 1, "elapsed_s": 0.5, "error": None, "revision": 0,
          "prompt_tokens": 30, "completion_tokens": 12, "output": "text"}


def test_task_event_carries_the_result_only_in_a_saved_state():
    running = task_event(RESULT, "running")
    assert running["tokens"] == 42 and running["state"] == "running" and "result" not in running
    assert task_event(RESULT, "done")["result"] is RESULT and "output" not in task_event(RESULT, "done")


def test_worker_call_model_precedence_and_revision_context():
    spec = load_spec("blog")
    role = spec.roles["writer"]
    options = {"context_budget": 6000, "model": "run", "role_models": {"writer": "writer-model"}}
    messages, call, shortened = worker_call(task=TASK, role=role, roles=spec.roles, plan=PLAN, options=options,
                                            deps={"t1": {"output": "DEP OUTPUT"}}, feedback="", previous="OLD")
    text = "\n".join(m["content"] for m in messages)
    assert "DEP OUTPUT" in text and "OLD" not in text and not shortened         # no feedback: no previous
    assert call["model"] == (role.model or "writer-model") and call["purpose"] == "task t2 (writer)"
    messages, _, _ = worker_call(task=TASK, role=role, roles=spec.roles, plan=PLAN, options={**options, "role_models": {}},
                                 deps={}, feedback="FIX IT", previous="OLD")
    text = "\n".join(m["content"] for m in messages)
    assert "FIX IT" in text and "OLD" in text


def test_reply_result_text_or_structured():
    reply = SimpleNamespace(prompt_tokens=3, completion_tokens=4, model="m", text="plain",
                            data=SimpleNamespace(model_dump=lambda: {"k": 1}, markdown=lambda: "md"))
    assert reply_result(reply, False, True) == {"prompt_tokens": 3, "completion_tokens": 4, "model": "m",
                                                "context_shortened": True, "output": "plain"}
    assert reply_result(reply, True, False)["data"] == {"k": 1} and reply_result(reply, True, False)["output"] == "md"


def test_tool_input_and_artifacts_named_per_task():
    role = SimpleNamespace(params={"team": ["a"], "x": 1})
    given = tool_input(task=TASK, role=role, inputs={"data": "d.csv", "inputs": ["n.md"], "target": "y"},
                       options={"tool_params": {"team": ["b"]}}, goal="g", deps={"t1": {"data": {"n": 1}, "output": "o"}})
    assert given.params == {"team": ["b"], "x": 1} and given.deps == {"t1": {"data": {"n": 1}, "output": "o"}}
    assert str(given.data_path) == "d.csv" and [str(p) for p in given.input_paths] == ["n.md"] and given.target == "y"
    res = ToolResult(markdown="![c](chart.png) and [j](analysis.json)", data={"n": 2},
                     artifacts={"chart.png": b"png", "analysis.json": b"{}"})
    out = tool_result("t2", "load_data", res)
    assert out["output"] == "![c](t2-chart.png) and [j](analysis.json)"
    assert set(out["artifacts"]) == {"t2-chart.png", "analysis.json"} and out["model"] == "tool:load_data"
