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

from utils.files import safe_yaml
from utils.text import bracket_depth

M = TypeVar("M", bound=BaseModel)

MAX_PROBLEMS = 5
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON (or, as a last resort, YAML) value in a model reply.

    Tried in order: the whole text as JSON (then relaxed: trailing commas, comments, single quotes);
    fenced blocks (```json / ``` first, ```yaml later); the first balanced {...} or [...] block in
    prose; YAML (fenced or a bare mapping). A block is always taken whole: when the outermost object
    cannot be read, its inner objects are never offered instead (a review's `tasks` list is not the
    review). Raises ValueError with a short reason when nothing structured is found, including for
    a reply nested too deeply to parse (it is a bad reply, never a crash).
    """
    if not isinstance(text, str):
        raise ValueError(f"expected text, got {type(text).__name__}")
    if bracket_depth(text) > MAX_DEPTH:  # refused before a parser recurses that deep
        raise ValueError(f"the reply nests deeper than {MAX_DEPTH} levels")
    try:
        value = _extract(text)
    except RecursionError:
        raise ValueError("the reply is nested too deeply to parse") from None
    if _too_deep(value):
        raise ValueError(f"the reply nests deeper than {MAX_DEPTH} levels")
    return value


MAX_DEPTH = 64


def _too_deep(value: Any) -> bool:
    """Iterative depth check: a parsed value deeper than any schema we ask for is a bad reply (and
    would make pydantic or json.dumps recurse later)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _extract(text: str) -> Any:
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        raise ValueError("the reply is empty")
    value = _try_whole(stripped)
    if value is not _NOTHING:
        return value
    fences = [(lang.lower(), body.strip()) for lang, body in _FENCE.findall(stripped)]
    for lang, body in fences:
        if lang in ("", "json", "json5", "jsonc", "javascript", "js"):
            value = _try_whole(body)
            if value is _NOTHING:
                value = _try_block(body)
            if value is not _NOTHING:
                return value
    if stripped[0] not in "{[":  # a reply that *is* an object is read whole or not at all
        value = _try_block(stripped)
        if value is not _NOTHING:
            return value
    for lang, body in fences:
        if lang in ("yaml", "yml", ""):
            value = _try_yaml(body, fenced=True)
            if value is not _NOTHING:
                return value
    if stripped[0] not in "{[":
        value = _try_yaml(stripped, fenced=False)
        if value is not _NOTHING:
            return value
    return _fail(stripped)


def _try_whole(text: str) -> Any:
    """The text as one JSON value, strictly or, failing that, relaxed."""
    value = _try_json(text)
    if value is _NOTHING and text[:1] in "{[":
        value = _try_json(_relax(text))
    return value


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


def salvaged(text: str, schema: type[M]) -> tuple[M, list[str]] | None:
    """The reply repaired by the schema's own `salvage(data) -> (data, changes)`, for what a JSON
    Schema cannot express (references between items); None when the schema has none or the repaired
    data is still invalid. The changes are kept on the instance (`_repairs`) so its text can say them."""
    fix = getattr(schema, "salvage", None)
    if fix is None:
        return None
    try:
        data, changes = fix(extract_json(text))
        value = validate(data, schema)
    except ValueError:
        return None
    if not changes:
        return None
    if hasattr(value, "_repairs"):
        value._repairs = list(changes)
    return value, changes


def parse_as(text: str, schema: type[M]) -> M:
    """`extract_json` then `validate`: the one call the LLM client needs."""
    return validate(extract_json(text), schema)


def json_schema_for(schema: type[BaseModel]) -> dict[str, Any]:
    """OpenAI `response_format` asking for `schema`, strict: a schema-following server (OpenAI strict
    mode, vLLM, Ollama, llama.cpp) then can only answer what the validators accept."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64] or "Output"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": strict_schema(schema), "strict": True}}


# Keywords OpenAI's strict mode accepts (its "supported schemas" list); anything else is dropped, and
# the few that carry a rule (string lengths) move into the description so the model is still told.
_KEEP = {"type", "properties", "required", "additionalProperties", "items", "enum", "anyOf", "description",
         "title", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
         "multipleOf", "minItems", "maxItems"}


def strict_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """`schema` as a JSON Schema within OpenAI's strict subset: refs inlined, every property required
    (a field with a default is required too: a strict server always sends it, and validation still
    fills it in for a server that left it out), `additionalProperties: false` on every object.

    Raises ValueError for a shape strict mode cannot express (a free-form mapping), so a model class
    that would silently lose its contract fails in the tests, not at a user's server."""
    raw = schema.model_json_schema(mode="validation")
    return _strict_node(raw, raw.get("$defs", {}), depth=0)


def _strict_node(node: Any, defs: dict[str, Any], depth: int) -> Any:
    if depth > 20:
        raise ValueError("schema nests too deeply (recursive model?)")
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    node = dict(node)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    notes = []
    if "minLength" in node:
        notes.append(f"at least {node['minLength']} characters")
    if "maxLength" in node:
        notes.append(f"at most {node['maxLength']} characters")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            out[key] = {name: _strict_node(sub, defs, depth + 1) for name, sub in value.items()}
        elif key == "items":
            out[key] = _strict_node(value, defs, depth + 1)
        elif key == "anyOf":
            out[key] = [_strict_node(sub, defs, depth + 1) for sub in value]
        elif key == "additionalProperties":
            if value not in (False, None) and "properties" not in node:
                raise ValueError("strict mode cannot express a free-form mapping; use a list of objects")
        else:
            out[key] = value
    if notes:
        out["description"] = (out.get("description", "") + f" ({', '.join(notes)})").strip()
    if out.get("type") == "object" or "properties" in out:
        out.setdefault("properties", {})
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
        out["type"] = "object"
    return out


# -- helpers -----------------------------------------------------------------------------------------
class _Nothing:
    pass


_NOTHING: Any = _Nothing()


def _try_json(text: str) -> Any:
    if not text or text[0] not in "{[\"-0123456789tfn":
        return _NOTHING
    try:
        return json.loads(text)  # extract_json's scan keeps it from recursing deeply
    except ValueError:
        return _NOTHING


def _try_block(text: str) -> Any:
    """The first balanced {...} / [...] block that parses as JSON (string-aware brace scan).

    A block that does not parse (even relaxed) is skipped whole, never searched for an inner block;
    an unbalanced one (a truncated reply) ends the search."""
    start = 0
    while True:
        start = _next_open(text, start)
        if start is None:
            return _NOTHING
        end = _balanced_end(text, start)
        if end is None:
            return _NOTHING
        value = _try_whole(text[start:end + 1])
        if value is not _NOTHING and isinstance(value, (dict, list)):
            if not (isinstance(value, list) and not value):  # "[ ]" in prose (a checkbox) is rarely the answer
                return value
        start = end + 1


def _next_open(text: str, start: int) -> int | None:
    positions = [p for p in (text.find("{", start), text.find("[", start)) if p >= 0]
    return min(positions) if positions else None


def _relax(text: str) -> str:
    """JSON as models loosely write it, made strict: `//` and `/* */` comments dropped, 'single-quoted'
    strings double-quoted, trailing commas before `}` / `]` removed. String-aware, one linear pass."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            j, buf = i + 1, []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    nxt = text[j + 1]
                    buf.append("'" if nxt == "'" else "\\" + nxt)
                    j += 2
                    continue
                buf.append('\\"' if text[j] == '"' else text[j])
                j += 1
            out.append('"' + "".join(buf) + '"')
            i = j + 1
        elif (after := _comment_end(text, i)) is not None:
            i = after
        elif ch == ",":
            j = _skip_blank(text, i + 1)
            if j < n and text[j] in "}]":
                i = j
            else:
                out.append(ch)
                i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _skip_blank(text: str, j: int) -> int:
    """Index of the next character that is not whitespace or inside a comment."""
    n = len(text)
    while j < n:
        if text[j] in " \t\r\n":
            j += 1
        elif (after := _comment_end(text, j)) is not None:
            j = after
        else:
            break
    return j


def _comment_end(text: str, i: int) -> int | None:
    """Where a `//` or `/* */` comment starting at `i` ends (the end of the text when unclosed);
    None when no comment starts there."""
    if text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        return len(text) if end < 0 else end + 2
    return None


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
        value = safe_yaml(text)
    except (yaml.YAMLError, RecursionError, ValueError):
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
