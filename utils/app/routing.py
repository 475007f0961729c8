"""The orchestrator's first decision for a free-text topic: which workflow fits it best.

With a model, the model chooses from the specs' names and descriptions; the schema's `workflow` is
an enum of those names, so an unknown name is a validation error the client's repair round-trip
handles, and its one-sentence reason is shown. Offline, or when the model fails, whole-word keywords
decide (`utils/run/keywords.py`), and the notice says what matched, that it was a tie, or that
nothing matched.
"""
from __future__ import annotations

from utils.errors import LLMError
from utils.run.keywords import KeywordRoute, keyword_route
from utils.run.outputs import choice_model
from utils.run.spec import load_spec, spec_names


def route_messages(topic: str, names: list[str]) -> list[dict]:
    catalogue = "\n".join(f"- `{n}`: {load_spec(n).description}" for n in names)
    return [{"role": "system", "content": "You route a user's request to the workflow that fits it best."},
            {"role": "user", "content": f"# Request\n{topic}\n\n# Workflows\n{catalogue}\n\n"
                                        "Answer with JSON: {workflow: one of the names above, reason: one sentence}."}]


def keyword_choice(topic: str, names: list[str] | None = None) -> KeywordRoute:
    names = names or spec_names()
    return keyword_route(topic, {n: load_spec(n).keywords for n in names})


async def choose_workflow(llm, topic: str) -> tuple[str, str]:
    """(workflow name, how it was chosen) for a free-text topic."""
    names = spec_names()
    fallback = keyword_choice(topic, names)
    if llm.offline:
        return fallback.name, fallback.reason
    schema = choice_model(names)
    try:
        reply = await llm.complete(route_messages(topic, names), schema=schema, temperature=0.0,
                                   purpose="choosing a workflow")
    except LLMError as exc:
        return fallback.name, f"{fallback.reason}; the model could not choose: {exc}"
    reason = " ".join(reply.data.reason.split())[:200]
    return reply.data.workflow, f"chosen by the model: {reason}" if reason else "chosen by the model (no reason given)"

