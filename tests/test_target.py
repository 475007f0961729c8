"""The analysis target: `--target`, the model's choice (an enum of the CSV's columns, with a reason shown
to the user), or the stated offline rule; carried to the tools through the shared store."""
from __future__ import annotations

import asyncio
import csv
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from fakes.fake_llm import FakeLLMServer
from tests.scripted import Script, request_kind
from tests.test_workflows import check_run, result_of, run_main, yaml_plan
from utils.errors import LLMError, UsageError
from utils.model.structured import json_schema_for
from utils.run.target import choice_schema, choose_target, needs_target
from utils.run.spec import load_spec
from utils.tools.dataset import TARGET_RULE


def write(path: Path, header: list[str], rows: list[list], delimiter: str = ",", encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def shop_csv(tmp_path: Path) -> Path:
    """price drives units; the last column is an order ID, so the rule must skip it."""
    rng = random.Random(8)
    rows = []
    for i in range(120):
        price = rng.uniform(5, 50)
        segment = rng.choice(["retail", "trade", "online"])
        rows.append([f"2024-03-{1 + i % 28:02d}", segment, round(price, 2), round(200 - 3 * price + rng.gauss(0, 4), 1),
                     "yes" if price < 20 else "no", 5000 + i])
    return write(tmp_path / "shop.csv", ["day", "segment", "price", "units", "cheap", "order_id"], rows)


class StubLLM:
    """Just enough of the client: records the call and answers with `answer` (or raises it)."""

    def __init__(self, answer, offline: bool = False) -> None:
        self.answer, self.offline, self.calls = answer, offline, []

    async def complete(self, messages, *, schema=None, **kw):
        self.calls.append((messages, schema, kw))
        if isinstance(self.answer, Exception):
            raise self.answer
        return SimpleNamespace(data=schema(**self.answer))


def choose(llm, path, explicit=None):
    return asyncio.run(choose_target(llm, path, "What drives sales?", explicit))


def test_offline_rule_skips_ids_and_dates(tmp_path: Path):
    choice = choose(StubLLM(None, offline=True), shop_csv(tmp_path))
    assert (choice.column, choice.how) == ("units", "rule") and TARGET_RULE in choice.reason


def test_rule_falls_back_to_a_category_when_nothing_is_numeric(tmp_path: Path):
    p = write(tmp_path / "cats.csv", ["city", "plan"], [[f"c{i % 9}", "a" if i % 3 else "b"] for i in range(40)])
    assert choose(StubLLM(None, offline=True), p).column == "plan"


def test_model_chooses_from_an_enum_of_eligible_columns(tmp_path: Path):
    llm = StubLLM({"column": "cheap", "reason": "the user asks what makes an order cheap"})
    choice = choose(llm, shop_csv(tmp_path))
    assert (choice.column, choice.how, choice.reason) == ("cheap", "model", "the user asks what makes an order cheap")
    messages, schema, kw = llm.calls[0]
    enum = json_schema_for(schema)
    assert json.dumps(enum).count('"order_id"') == 0 and '"units"' in json.dumps(enum)
    assert schema.model_fields["column"].annotation.__args__ == ("segment", "price", "units", "cheap")
    with pytest.raises(ValidationError):
        schema(column="order_id", reason="x")
    assert "price" in messages[1]["content"] and kw["purpose"] == "choosing the target column"


def test_model_failure_falls_back_to_the_rule(tmp_path: Path):
    choice = choose(StubLLM(LLMError("server down")), shop_csv(tmp_path))
    assert choice.column == "units" and "could not choose" in choice.reason


def test_explicit_target_is_checked(tmp_path: Path):
    p = shop_csv(tmp_path)
    assert choose(StubLLM(None), p, "segment").how == "flag"
    with pytest.raises(UsageError, match="not in shop.csv"):
        choose(StubLLM(None), p, "revenue")
    with pytest.raises(UsageError, match="cannot be a target.*ID-like"):
        choose(StubLLM(None), p, "order_id")


def test_schema_enum_is_exactly_the_names():
    schema = choice_schema(["a b", "c"])
    assert schema(column="a b", reason="r").column == "a b"
    with pytest.raises(ValidationError):
        schema(column="d", reason="r")


def test_only_the_analysis_workflow_needs_a_target():
    assert needs_target(load_spec("analysis")) and not needs_target(load_spec("blog"))


# ---- through the command line ---------------------------------------------------------------

def test_cli_target_flag_gives_a_classification(tmp_path: Path):
    run = run_main(["--example", "analysis", "--data", str(shop_csv(tmp_path)), "--target", "segment"], tmp_path)
    _, state, doc = check_run(run, "analysis", provider="offline")
    assert state["inputs"]["target"] == "segment"
    model = result_of(state, "modeller")["data"]
    assert model["method"] in ("logit", "mnlogit") and "order_id" not in model["features"]
    assert "Target: segment (given with --target)" in run.stdout + run.stderr


def test_cli_bad_target_is_one_line_exit_2(tmp_path: Path):
    run = run_main(["--example", "analysis", "--data", str(shop_csv(tmp_path)), "--target", "nope"], tmp_path)
    lines = [x for x in run.stderr.splitlines() if x.strip()]
    assert run.code == 2 and len(lines) == 1 and "column 'nope' not in shop.csv" in lines[0], run.explain()
    assert run.run_dirs() == []


def test_cli_target_with_a_workflow_without_data_is_an_error(tmp_path: Path):
    run = run_main(["--example", "blog", "--target", "price"], tmp_path)
    assert run.code == 2 and "--target applies to" in run.stderr and run.run_dirs() == [], run.explain()


def test_cli_offline_states_the_rule(tmp_path: Path):
    run = run_main(["--example", "analysis", "--data", str(shop_csv(tmp_path))], tmp_path)
    _, state, _ = check_run(run, "analysis", provider="offline")
    assert state["inputs"]["target"] == "units" and "Target: units (offline rule:" in run.stdout + run.stderr
    assert result_of(state, "modeller")["data"]["target"] == "units"


def test_cli_model_choice_is_shown_and_carried_to_the_tools(tmp_path: Path, fake_llm: FakeLLMServer):
    fake_llm.responder = Script(plans=[yaml_plan("analysis")], target="price")
    run = run_main(["--example", "analysis", "--data", str(shop_csv(tmp_path))], tmp_path, server=fake_llm)
    _, state, _ = check_run(run, "analysis", provider="openai")
    asked = [r for r in fake_llm.requests if request_kind(r) == "target"]
    assert len(asked) == 1
    enum = json.dumps(asked[0].response_format)
    assert '"order_id"' not in enum and '"price"' in enum
    assert state["inputs"]["target"] == "price" and "Target: price (scripted" in run.stdout + run.stderr
    assert result_of(state, "modeller")["data"]["target"] == "price"
    assert result_of(state, "charter")["data"]["target"] == "price"


def test_cli_one_numeric_column_explains_what_it_cannot_do(tmp_path: Path):
    p = write(tmp_path / "lone.csv", ["ticket", "minutes"], [[f"T{i:03d}", (i * 37) % 50 + 1] for i in range(40)])
    run = run_main(["--example", "analysis", "--data", str(p)], tmp_path)
    _, state, doc = check_run(run, "analysis", provider="offline")
    assert "Correlations need at least two numeric columns" in doc
    assert "no other column can serve as a feature" in doc


def test_cli_semicolon_latin1_file_and_no_warnings_on_huge_values(tmp_path: Path):
    rng = random.Random(1)
    rows = [[f"Zürich {i % 3}", f"{rng.uniform(1, 9e307):.6e}".replace(".", ","), f"{rng.gauss(5, 1):.3f}".replace(".", ",")]
            for i in range(50)]
    p = write(tmp_path / "gross.csv", ["ort", "riesig", "wert"], rows, delimiter=";", encoding="latin-1")
    run = run_main(["--example", "analysis", "--data", str(p)], tmp_path)
    _, state, _ = check_run(run, "analysis", provider="offline")
    assert "Warning" not in run.stderr and "warn(" not in run.stderr, run.stderr
    loaded = result_of(state, "loader")["data"]
    assert loaded["format"]["encoding"] == "latin-1" and loaded["types"]["riesig"] == "numeric"
    assert "histograms.png" in result_of(state, "charter")["data"]["charts"]


def test_routing_set_up_and_run_share_one_event_loop(tmp_path: Path, fake_llm: FakeLLMServer, monkeypatch):
    """Issue 13: one event loop per process. A free-text topic costs a routing call, the analysis a
    target call, then the run: all on the same loop, none built and torn down in between."""
    import asyncio

    from utils.app import loop

    monkeypatch.delattr(loop._loops, "runner", raising=False)  # this thread's loop starts afresh
    made = []
    real = asyncio.events.new_event_loop
    monkeypatch.setattr(asyncio.events, "new_event_loop", lambda: made.append(1) or real())
    fake_llm.responder = Script(plans=[yaml_plan("analysis")], target="price", route="analysis")
    run = run_main(["--data", str(shop_csv(tmp_path)), "What drives the price?"], tmp_path, server=fake_llm)
    kinds = [request_kind(r) for r in fake_llm.requests]
    assert run.code == 0, run.explain()
    assert kinds[:2] == ["route", "target"] and "worker" in kinds
    assert len(made) == 1
