"""Getting structured data out of model replies, which rarely arrive as clean JSON.

Servers that honour `response_format` give bare JSON; many local models wrap it in a ```json fence,
add a sentence before or after, or answer in YAML. `extract_json` accepts all of these so that one
stylistic quirk does not cost a repair round-trip; `validate` turns pydantic's verbose errors into a
compact list the model can act on when we do ask it to repair.
"""
from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

MAX_PROBLEMS = 5
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON (or, as a last resort, YAML) value in a model reply.

    Tried in order: the whole text as JSON; fenced blocks (```json / ``` first, ```yaml later);
    the first balanced {...} or [...] block in prose; YAML (fenced or a bare mapping).
    Raises ValueError with a short reason when nothing structured is found.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected text, got {type(text).__name__}")
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        raise ValueError("the reply is empty")
    value = _try_json(stripped)
    if value is not _NOTHING:
        return value
    fences = [(lang.lower(), body.strip()) for lang, body in _FENCE.findall(stripped)]
    for lang, body in fences:
        if lang in ("", "json", "json5", "jsonc", "javascript", "js"):
            value = _try_json(body)
            if value is _NOTHING:
                value = _try_block(body)
            if value is not _NOTHING:
                return value
    value = _try_block(stripped)
    if value is not _NOTHING:
        return value
    for lang, body in fences:
        if lang in ("yaml", "yml", ""):
            value = _try_yaml(body, fenced=True)
            if value is not _NOTHING:
                return value
    value = _try_yaml(stripped, fenced=False)
    if value is not _NOTHING:
        return value
    return _fail(stripped)


def validate(data: Any, schema: type[M]) -> M:
    """`schema` instance from `data`; ValueError listing at most five problems as `path: message`."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_problems(exc)) from None


def format_problems(exc: ValidationError) -> str:
    """`tasks.0.id: Field required; goal: Input should be a valid string (+2 more)` style summary."""
    errors = exc.errors()
    parts = []
    for err in errors[:MAX_PROBLEMS]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = len(errors) - MAX_PROBLEMS
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def parse_as(text: str, schema: type[M]) -> M:
    """`extract_json` then `validate`: the one call the LLM client needs."""
    return validate(extract_json(text), schema)


def json_schema_for(schema: type[BaseModel]) -> dict[str, Any]:
    """OpenAI `response_format` asking for `schema`. Not strict: strict mode rejects the defaults and
    optional fields our models use, and we validate ourselves anyway."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64] or "Output"
    return {"type": "json_schema",
            "json_schema": {"name": name, "schema": schema.model_json_schema(), "strict": False}}


# -- helpers -----------------------------------------------------------------------------------------
class _Nothing:
    pass


_NOTHING: Any = _Nothing()


def _try_json(text: str) -> Any:
    if not text or text[0] not in "{[\"-0123456789tfn":
        return _NOTHING
    try:
        return json.loads(text)
    except ValueError:
        return _NOTHING


def _try_block(text: str) -> Any:
    """The first balanced {...} / [...] block that parses as JSON (string-aware brace scan)."""
    for start, ch in enumerate(text):
        if ch not in "{[":
            continue
        end = _balanced_end(text, start)
        if end is None:
            continue
        value = _try_json(text[start:end + 1])
        if value is not _NOTHING and isinstance(value, (dict, list)):
            if isinstance(value, list) and not value and ch == "[":
                continue  # "[ ]" in prose (a checkbox) is rarely the answer
            return value
    return _NOTHING


def _balanced_end(text: str, start: int) -> int | None:
    closing = {"{": "}", "[": "]"}
    stack = [closing[text[start]]]
    in_string = escaped = False
    for i in range(start + 1, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in closing:
            stack.append(closing[ch])
        elif ch in "}]":
            if ch != stack[-1]:
                return None
            stack.pop()
            if not stack:
                return i
    return None


def _try_yaml(text: str, *, fenced: bool) -> Any:
    """YAML only counts when it yields a mapping or a list: any sentence is valid YAML (a string).
    Unfenced, a one-key mapping with a scalar value is prose ("Note: ..."), not data."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency
        return _NOTHING
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return _NOTHING
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        if len(value) == 1 and next(iter(value.values())) is None:
            return _NOTHING  # "Here is the result:" parses as {"Here is the result": None}
        if not fenced and len(value) == 1 and not isinstance(next(iter(value.values())), (dict, list)):
            return _NOTHING
        return value
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        return value
    return _NOTHING


def _fail(text: str) -> Any:
    if "{" in text or "[" in text:
        raise ValueError("found a '{' or '[' but no complete, valid JSON value (truncated or malformed?)")
    raise ValueError("no JSON or YAML object found in the reply")
