"""Choosing a workflow for a free-text topic: by the model when there is one, by keywords otherwise."""
import asyncio

from tests.fake_llm import Reply
from tests.scripted import Script, request_kind
from utils.model.client import LLMClient, LLMSettings, make_model
from utils.app.routing import choose_workflow
from utils.run.spec import pick_workflow


def client(server=None):
    if server is None:
        return make_model(LLMSettings(provider="offline", cache=False))
    return LLMClient(LLMSettings(provider="openai", base_url=server.base_url, api_key="sk-test", cache=False,
                                 max_retries=0, backoff_base_s=0.001))


def test_keywords_pick_offline():
    assert pick_workflow("Analyse this CSV dataset for trends") == "analysis"
    assert pick_workflow("Plan the project timeline and milestones") == "project"
    assert pick_workflow("Something with no keyword at all") == "blog"
    assert asyncio.run(choose_workflow(client(), "Write a research report from these sources"))[0] == "report"


def test_model_choice_wins_over_keywords(fake_llm):
    fake_llm.responder = Script(route="project")
    name, why = asyncio.run(choose_workflow(client(fake_llm), "Write a blog post"))
    assert (name, why) == ("project", "scripted")
    assert [request_kind(r) for r in fake_llm.requests] == ["route"]


def test_unknown_name_is_repaired_then_falls_back_to_keywords(fake_llm):
    fake_llm.responder = lambda req: Reply(text='{"workflow": "poetry"}')
    name, why = asyncio.run(choose_workflow(client(fake_llm), "Analyse the csv data"))
    assert name == "analysis" and why.startswith("keyword match")
    assert len(fake_llm.requests) == 2  # the first answer plus one repair round-trip
    assert "Input should be 'analysis'" in fake_llm.requests[1].messages[-1]["content"]  # the enum, told
