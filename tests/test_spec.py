"""Workflow specs: the four built-ins load, offline plans are valid, bad specs are one-line errors."""
import pytest

from utils.errors import UsageError
from utils.run.plan import plan_problems
from utils.run.spec import load_spec, spec_names
from utils.run.standins import offline_plan
from utils.tools import tool_names


def test_builtin_specs_load_and_their_offline_plans_are_valid():
    assert spec_names() == ["analysis", "blog", "project", "report"]
    for name in spec_names():
        spec = load_spec(name)
        inputs = [str(spec.example_path(p)) for p in spec.sample_inputs]
        plan = offline_plan(spec, spec.default_topic, inputs, 50)
        assert plan_problems(plan, spec.roles, 50) == [], name
        for role in spec.roles.values():
            assert role.kind == "llm" or role.tool in tool_names()
        for path in spec.sample_inputs + ([spec.sample_data] if spec.sample_data else []):
            assert spec.example_path(path).is_file()


def test_report_offline_plan_has_one_gatherer_per_source():
    spec = load_spec("report")
    plan = offline_plan(spec, "g", ["x/a.md", "y/b.csv"], 50)
    gatherers = [t for t in plan.tasks if t.role == "gatherer"]
    assert [t.inputs for t in gatherers] == [["x/a.md"], ["y/b.csv"]]
    assert set(plan.task("chart").depends_on) == {t.id for t in gatherers}


def test_unknown_and_broken_specs(tmp_path):
    with pytest.raises(UsageError, match="unknown workflow 'nope'"):
        load_spec("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndescription: d\ndefault_topic: t\nplanner: {system: s}\nreview: {system: r}\n"
                   "roles: {w: {kind: tool}}\n")
    with pytest.raises(UsageError, match="roles.w"):
        load_spec(str(bad))
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_spec(str(bad))


GOOD = ("name: x\ndescription: d\ndefault_topic: t\nplanner: {system: s}\nreview: {system: r}\n")


@pytest.mark.parametrize("content, reason", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8|not text"),
    ("- just\n- a list\n".encode(), "must be a mapping"),
    (("name: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested deeper than 40 levels"),
    (("a: " + "{b: " * 60 + "1" + "}" * 60 + "\n" + GOOD).encode(), "nested deeper"),
    (b"a: &a [*a]\n" + GOOD.encode(), "recursive alias"),
    ((GOOD + "roles: {w: {system: s}}\noffline_plan:\n  l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
      + "".join(f"  l{i}: &l{i} [*l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}, *l{i-1}]\n"
                for i in range(1, 9))).encode(), "YAML bomb"),
])
def test_hostile_spec_files_are_one_line_usage_errors(tmp_path, content, reason):
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=reason) as err:
        load_spec(str(path))
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_unknown_tool_and_unknown_needs_fail_at_load(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(GOOD + "roles: {c: {kind: tool, tool: chart_factz}}\n")
    with pytest.raises(UsageError, match="unknown tool 'chart_factz'.*chart_facts"):
        load_spec(str(path))
    path.write_text(GOOD + "roles: {c: {kind: tool, tool: chart_facts, needs: [gatherer]}}\n")
    with pytest.raises(UsageError, match="needs: unknown role"):
        load_spec(str(path))


def test_unknown_tool_spec_exits_2_before_any_model_call(tmp_path, fake_llm):
    import os
    import subprocess
    import sys

    path = tmp_path / "w.yaml"
    path.write_text(GOOD + "roles: {c: {kind: tool, tool: nope}}\n")
    env = {**os.environ, "ORCH_HOME": str(tmp_path / "home"), "OPENAI_BASE_URL": fake_llm.base_url,
           "OPENAI_API_KEY": "sk-test"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "main.py"), "--workflow-file", str(path), "topic"],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "unknown tool 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    assert fake_llm.requests == []
