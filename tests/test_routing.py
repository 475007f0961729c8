"""Choosing a workflow for a free-text topic: by the model when there is one, by whole-word keywords
otherwise; no match and ties are said as such."""
import asyncio

import pytest

from fakes.fake_llm import Reply
from tests.scripted import Script, request_kind
from utils.app.routing import choice_model, choose_workflow
from utils.model.client import LLMClient, LLMSettings, make_model
from utils.run.keywords import keyword_pattern, keyword_route, topic_phrase
from utils.run.spec import load_spec
from utils.app.routing import keyword_choice
from utils.run.standins import offline_plan


def client(server=None):
    if server is None:
        return make_model(LLMSettings(provider="offline", cache=False))
    return LLMClient(LLMSettings(provider="openai", base_url=server.base_url, api_key="sk-test", cache=False,
                                 max_retries=0, backoff_base_s=0.001))


def test_keywords_pick_offline():
    assert keyword_choice("Analyse this CSV dataset for trends").name == "analysis"
    assert keyword_choice("Plan the project timeline and milestones").name == "project"
    assert keyword_choice("Something with no keyword at all").name == "blog"
    assert asyncio.run(choose_workflow(client(), "Write a research report from these sources"))[0] == "report"


@pytest.mark.parametrize("topic, workflow", [
    ("Research airplane safety", "report"),          # "plan" is not a word in "airplane"
    ("Write a report on heat pumps", "report"),      # the workflow's own name outweighs "write"
    ("Planning the migration of our CI pipelines", "project"),  # inflections: planning, migration
    ("Explain photosynthesis to children", "blog"),
])
def test_whole_word_matching(topic: str, workflow: str):
    assert keyword_choice(topic).name == workflow


def test_keyword_pattern_is_whole_word():
    assert keyword_pattern("plan").search("we planned it") and not keyword_pattern("plan").search("airplane")
    assert keyword_pattern("how to").search("How  to bake") and not keyword_pattern("how to").search("showto")


def test_no_match_and_ties_are_said_as_such():
    none = asyncio.run(choose_workflow(client(), "Tell me about cats"))
    assert none == ("blog", "no keyword matched; blog is the default")
    tie = keyword_route("apples and pears", {"a": ["apples"], "b": ["pears"]}, default="z")
    assert tie.name == "a" and tie.reason.startswith("keyword tie between a, b")
    hit = asyncio.run(choose_workflow(client(), "Plan the launch"))
    assert hit == ("project", "keyword match: plan, launch")


def test_model_choice_wins_and_its_reason_is_shown(fake_llm):
    fake_llm.responder = Script(route="project")
    name, why = asyncio.run(choose_workflow(client(fake_llm), "Write a blog post"))
    assert (name, why) == ("project", "chosen by the model: scripted")
    assert [request_kind(r) for r in fake_llm.requests] == ["route"]


def test_schema_enum_of_workflow_names():
    schema = choice_model(["blog", "report"]).model_json_schema()
    assert schema["properties"]["workflow"]["enum"] == ["blog", "report"]
    assert choice_model(["blog", "report"])(workflow=" `Report` ").workflow == "report"


def test_unknown_name_is_repaired_then_falls_back_to_keywords(fake_llm):
    fake_llm.responder = lambda req: Reply(text='{"workflow": "poetry"}')
    name, why = asyncio.run(choose_workflow(client(fake_llm), "Analyse the csv data"))
    assert name == "analysis" and why.startswith("keyword match: ") and "could not choose" in why
    assert len(fake_llm.requests) == 2  # the first answer plus one repair round-trip
    assert "Input should be 'analysis'" in fake_llm.requests[1].messages[-1]["content"]  # the enum, told


@pytest.mark.parametrize("workflow", ["blog", "project", "report"])
def test_offline_plans_are_about_the_topic(workflow: str):
    plan = offline_plan(load_spec(workflow), "Tell me about cats", [], 12)
    text = " ".join([plan.notes] + [t.title + " " + t.instructions for t in plan.tasks]).lower()
    assert "cats" in text
    for foreign in ("decorator", "python", "coffee", "feedback portal", "developers"):
        assert foreign not in text, foreign


def test_topic_phrase():
    assert topic_phrase("Tell me about cats") == "cats"
    assert topic_phrase("Write a short blog post about sourdough baking.") == "sourdough baking"
    assert topic_phrase("Plan the migration of our CI to GitHub Actions").startswith("migration of our CI")
