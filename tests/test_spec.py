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
