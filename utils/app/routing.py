"""The orchestrator's first decision for a free-text topic: which workflow fits it best.

With a model, the model chooses from the specs' names and descriptions (validated: an unknown
name is a validation error, so the client's repair round-trip handles it). Offline, or when the
model fails, the keyword score in `spec.pick_workflow` decides, and the notice says which was used.
"""
from __future__ import annotations

from pydantic import BaseModel

from utils.errors import LLMError
from utils.run.outputs import choice_model
from utils.run.spec import load_spec, pick_workflow, spec_names


def route_messages(topic: str, names: list[str]) -> list[dict]:
    catalogue = "\n".join(f"- `{n}`: {load_spec(n).description}" for n in names)
    return [{"role": "system", "content": "You route a user's request to the workflow that fits it best."},
            {"role": "user", "content": f"# Request\n{topic}\n\n# Workflows\n{catalogue}\n\n"
                                        "Answer with JSON: {workflow: one of the names above, reason: one sentence}."}]


def _choice_model(names: list[str]) -> type[BaseModel]:
    return choice_model(names)  # an enum of the names: in the schema sent and in the validation


async def choose_workflow(llm, topic: str) -> tuple[str, str]:
    """(workflow name, how it was chosen) for a free-text topic."""
    names = spec_names()
    fallback = pick_workflow(topic, names)
    if llm.offline:
        return fallback, "keyword match"
    schema = _choice_model(names)
    try:
        reply = await llm.complete(route_messages(topic, names), schema=schema, temperature=0.0,
                                   purpose="choosing a workflow")
    except LLMError as exc:
        return fallback, f"keyword match; the model could not choose: {exc}"
    return reply.data.workflow, reply.data.reason or "chosen by the model"
