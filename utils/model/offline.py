"""The offline provider: what a run produces when no model is configured.

It exists so the whole pipeline (planning, scheduling, tools, review, assembly, run folders) can be
tried and tested without a key or a server. Its text is deterministic and labelled on its first line,
and it only restates what was asked, so an offline document can never be mistaken for model prose.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from utils.errors import LLMError
from utils.events import Emit, Event, null_emit
from utils.model.calllog import call_event
from utils.model.settings import Completion, LLMSettings, Totals
from utils.model.tokens import estimate_tokens, message_text, messages_tokens  # noqa: F401 - re-exported

StandIns = Callable[[str, Any], Any]
"""`standins(purpose, schema) -> value | None`: what the offline model answers for a structured call
(a schema instance, a dict or JSON text). Built by the app layer from the workflow spec and the run,
so this layer never needs to know about plans or reviews."""

LABEL = "> **Offline provider — no model was called.**"
_MAX_FIELD = 220


def offline_text(messages: list[dict[str, Any]], purpose: str = "") -> str:
    """A labelled placeholder summarising the request (task title, instructions, goal)."""
    last_user = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    sections = _sections(last_user)
    what = f" for {purpose}" if purpose else ""
    lines = [f"{LABEL} This is a placeholder{what}; configure a model (OPENAI_API_KEY or "
             "OPENAI_BASE_URL) to get real text.", ""]
    task = next((k for k in sections if k.lower().startswith("your task")), None)
    if task:
        title = task.split(":", 1)[1].strip() if ":" in task else task
        lines.append(f"- **Asked for:** {_short(title)}")
        body = sections[task]
        if body and body.strip() != title.strip():
            lines.append(f"- **Instructions:** {_short(body)}")
    elif last_user.strip():
        lines.append(f"- **Asked for:** {_short(_first_paragraph(last_user))}")
    else:
        lines.append("- **Asked for:** (no user message)")
    goal = sections.get("Goal")
    if goal:
        lines.append(f"- **Goal:** {_short(goal)}")
    if any(k.lower().startswith("reviewer feedback") for k in sections):
        lines.append("- **Revision:** reviewer feedback was included in the request")
    return "\n".join(lines)


def _sections(text: str) -> dict[str, str]:
    """Markdown `# Heading` -> body, for the prompts built in utils/run/context.py."""
    out: dict[str, str] = {}
    parts = re.split(r"^#[ \t]+(.+)$", text, flags=re.MULTILINE)
    for i in range(1, len(parts) - 1, 2):
        out.setdefault(parts[i].strip(), parts[i + 1].strip())
    return out


def _first_paragraph(text: str) -> str:
    return next((p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()), text)


def _short(text: str, limit: int = _MAX_FIELD) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def offline_answer(messages: list[dict[str, Any]], purpose: str, schema: Any, value: Any) -> tuple[str, Any]:
    """(text, data) for an offline call: the caller's stand-in `value` (validated against `schema`
    when there is one) or, for a text call without a stand-in, the labelled placeholder.
    Raises ValueError when a structured call has no usable stand-in."""
    from pydantic import BaseModel

    from utils.model.structured import extract_json, validate

    if schema is not None:
        if value is None:
            raise ValueError("the offline provider has no stand-in for this structured request")
        if not isinstance(value, schema):
            raw = value.model_dump() if isinstance(value, BaseModel) else value
            try:
                value = validate(extract_json(raw) if isinstance(raw, str) else raw, schema)
            except ValueError as exc:
                raise ValueError(f"offline stand-in did not match the schema: {exc}") from None
        return value.model_dump_json(indent=2), value
    if value is None:
        return offline_text(messages, purpose), None
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2), None
    return (value if isinstance(value, str) else json.dumps(value, indent=2, default=str)), None


class OfflineModel:
    """The offline provider as a model with the real client's `complete()`: chosen once, when the
    run's model is made (`utils.model.client.make_model`), so callers never branch on it.

    Structured calls are answered by the injected `standins`; text calls get the labelled
    placeholder. No network, no cache, no budget; usage is estimated so totals stay meaningful.
    """

    offline = True
    base_url = None

    def __init__(self, settings: LLMSettings, *, emit: Emit = null_emit, standins: StandIns | None = None,
                 home: Path | None = None) -> None:
        self.settings = settings
        self.emit = emit
        self.standins = standins
        self.totals = Totals()

    def totals_dict(self) -> dict[str, Any]:
        return self.totals.as_dict()

    async def aclose(self) -> None:
        """Nothing to close; here so a run can treat every model alike."""

    async def complete(self, messages: list[dict], *, model: str | None = None, temperature: float = 0.3,
                       max_tokens: int | None = None, schema: Any = None, purpose: str = "",
                       on_text: Any = None) -> Completion:
        """A deterministic, labelled stand-in for what a model would answer (`on_text`: nothing streams)."""
        model = model or self.settings.model
        value = self.standins(purpose, schema) if self.standins is not None and schema is not None else None
        try:
            text, data = offline_answer(messages, purpose, schema, value)
        except ValueError as exc:
            error = f"{purpose}: {exc}" if purpose else str(exc)
            self.emit(call_event(purpose=purpose, model=model, messages=messages, reply=None, key=None,
                                 error=error, offline=True))
            raise LLMError(error) from None
        p_tok, c_tok = messages_tokens(messages), estimate_tokens(text)
        t = self.totals
        t.calls, t.prompt_tokens, t.completion_tokens = t.calls + 1, t.prompt_tokens + p_tok, t.completion_tokens + c_tok
        self.emit(call_event(purpose=purpose, model=model, messages=messages, reply=text, key=None,
                             prompt_tokens=p_tok, completion_tokens=c_tok, offline=True))
        self.emit(Event("llm", t.as_dict()))
        return Completion(text=text, data=data, prompt_tokens=p_tok, completion_tokens=c_tok, model=model,
                          latency_s=0.0, offline=True)
