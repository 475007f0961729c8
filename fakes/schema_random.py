"""Random values that satisfy a JSON Schema exactly: what a constrained-decoding server would send.

Used by the fake server's "literal" mode. It covers the subset of JSON Schema the app's strict
schemas use and raises on anything else, so a new keyword cannot be silently ignored by the tests.
"""
from __future__ import annotations

import random
import re
from typing import Any

_WORDS = ("alpha beta gamma delta data model plan review market coffee team risk launch chart growth "
          "section intro budget survey metric cost price user portal design test deploy").split()


def random_instance(schema: dict[str, Any], rng: random.Random, depth: int = 0) -> Any:
    """A random value valid against `schema` and nothing more: random words for free strings, any
    member of an enum, arrays of random length within their bounds, numbers within range, strings
    matching a `pattern`. Covers the subset of JSON Schema the app's strict schemas use, and fails
    loudly on anything else so a new keyword cannot be silently ignored by the tests."""
    if depth > 30:
        raise ValueError("schema nests too deeply")
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "anyOf" in schema:
        return random_instance(rng.choice(schema["anyOf"]), rng, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = rng.choice(kind)
    if kind == "object":
        assert schema.get("additionalProperties") is False, "strict schemas close every object"
        return {name: random_instance(sub, rng, depth + 1) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        lo = int(schema.get("minItems", 0))
        hi = int(schema.get("maxItems", lo + 4))
        return [random_instance(schema.get("items", {}), rng, depth + 1) for _ in range(rng.randint(lo, min(hi, lo + 6)))]
    if kind == "string":
        if "pattern" in schema:
            return random_match(schema["pattern"], rng)
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 8)))
    if kind in ("number", "integer"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum", -1000))
        hi = schema.get("maximum", schema.get("exclusiveMaximum", 1000))
        while True:
            value = rng.randint(int(lo), int(hi)) if kind == "integer" else round(rng.uniform(lo, hi), 2)
            if ("exclusiveMinimum" not in schema or value > schema["exclusiveMinimum"]) and \
                    ("exclusiveMaximum" not in schema or value < schema["exclusiveMaximum"]):
                return value
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    raise ValueError(f"random_instance does not know {schema!r}")


_ATOM = re.compile(r"\[((?:\\.|[^\]])+)\]|\\(.)|([^\\\[\](){}*+?^$|])")
_QUANT = re.compile(r"\{(\d+)(?:,(\d*))?\}|([*+?])")


def random_match(pattern: str, rng: random.Random) -> str:
    """A random string matching a simple regex: anchors, literal characters, `[...]` classes with
    ranges, and the quantifiers `{m}`, `{m,n}`, `*`, `+`, `?` (no groups or alternation)."""
    body = pattern.removeprefix("^").removesuffix("$")
    out, i = [], 0
    while i < len(body):
        m = _ATOM.match(body, i)
        if not m:
            raise ValueError(f"random_match does not know {pattern!r}")
        chars = (_class_chars(m.group(1)) if m.group(1) else _ESCAPES.get(m.group(2), [m.group(2)]) if m.group(2)
                 else [m.group(3)])
        i = m.end()
        lo = hi = 1
        q = _QUANT.match(body, i)
        if q:
            i = q.end()
            if q.group(3):
                lo, hi = {"*": (0, 6), "+": (1, 6), "?": (0, 1)}[q.group(3)]
            else:
                lo = int(q.group(1))
                hi = lo if q.group(2) is None else (int(q.group(2)) if q.group(2) else lo + 6)
        out.extend(rng.choice(chars) for _ in range(rng.randint(lo, min(hi, lo + 11))))
    text = "".join(out)
    assert re.fullmatch(pattern.removeprefix("^").removesuffix("$"), text), (pattern, text)
    return text


_ESCAPES = {"d": [str(d) for d in range(10)], "w": list("abcXYZ019_"), "s": [" "]}


def _class_chars(spec: str) -> list[str]:
    chars, i = [], 0
    while i < len(spec):
        c = spec[i]
        if c == "\\" and i + 1 < len(spec):
            chars.append(spec[i + 1])
            i += 2
        elif i + 2 < len(spec) and spec[i + 1] == "-":
            chars.extend(chr(x) for x in range(ord(c), ord(spec[i + 2]) + 1))
            i += 3
        else:
            chars.append(c)
            i += 1
    return chars
