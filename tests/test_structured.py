"""JSON/YAML extraction from model replies and compact validation errors."""
from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from utils.model.structured import extract_json, json_schema_for, parse_as, strict_schema, validate


class Item(BaseModel):
    id: str
    score: int = Field(ge=0, le=10)


class Bag(BaseModel):
    name: str
    items: list[Item]


def test_bare_json_object_and_list():
    assert extract_json('{"a": 1, "b": [1, 2]}') == {"a": 1, "b": [1, 2]}
    assert extract_json("  [1, 2, 3]\n") == [1, 2, 3]


def test_fenced_json_with_language_tag():
    text = 'Here you go:\n```json\n{"name": "x", "items": []}\n```\nAnything else?'
    assert extract_json(text) == {"name": "x", "items": []}


def test_plain_fence():
    assert extract_json('```\n{"k": "v"}\n```') == {"k": "v"}


def test_prose_around_object_is_string_aware():
    text = 'Sure! The plan is {"note": "use } and { freely", "n": 2} -- hope it helps {not json}'
    assert extract_json(text) == {"note": "use } and { freely", "n": 2}


def test_prose_around_list_skips_empty_checkbox():
    text = 'Steps [ ] done. Result: [{"id": "a", "score": 3}] end'
    assert extract_json(text) == [{"id": "a", "score": 3}]


def test_first_parseable_block_wins_over_broken_one():
    text = 'draft {"a": 1,, } final {"a": 2}'
    assert extract_json(text) == {"a": 2}


def test_yaml_fenced():
    text = "```yaml\nname: report\nitems:\n  - id: a\n    score: 4\n```"
    assert extract_json(text) == {"name": "report", "items": [{"id": "a", "score": 4}]}


def test_bare_yaml_mapping_as_last_resort():
    assert extract_json("name: report\nitems: []\n") == {"name": "report", "items": []}


@pytest.mark.parametrize("text", ["", "   ", "I cannot help with that.", "Note: nothing to report",
                                  "Here is the result:"])
def test_no_structure_raises_short_reason(text):
    with pytest.raises(ValueError) as err:
        extract_json(text)
    assert len(str(err.value)) < 120


def test_truncated_json_says_so():
    with pytest.raises(ValueError, match="no complete"):
        extract_json('{"name": "x", "items": [{"id": "a"')


def test_validate_returns_instance():
    bag = validate({"name": "b", "items": [{"id": "a", "score": 3}]}, Bag)
    assert isinstance(bag, Bag) and bag.items[0].score == 3


def test_validate_lists_paths_and_caps_problems():
    bad = {"items": [{"id": 1, "score": 99}] + [{"score": -1} for _ in range(6)]}
    with pytest.raises(ValueError) as err:
        validate(bad, Bag)
    msg = str(err.value)
    assert "name: Field required" in msg
    assert "items.0.score" in msg
    assert msg.count(";") == 4 and "more)" in msg
    assert "\n" not in msg


def test_parse_as_combines_extraction_and_validation():
    assert parse_as('```json\n{"id": "z", "score": 1}\n```', Item) == Item(id="z", score=1)


def test_json_schema_for_response_format():
    rf = json_schema_for(Bag)
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["name"] == "Bag"
    assert rf["json_schema"]["strict"] is True
    assert "items" in rf["json_schema"]["schema"]["properties"]


def _walk(node):
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


STRICT_KEYWORDS = {"type", "properties", "required", "additionalProperties", "items", "enum", "anyOf",
                   "description", "title", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
                   "exclusiveMaximum", "multipleOf", "minItems", "maxItems"}


def assert_openai_strict(schema):
    """OpenAI's strict rules: every object closed with every property required, no refs left to
    resolve, only the keywords strict mode supports."""
    for node in _walk(schema):
        if not isinstance(node, dict) or ("type" not in node and "anyOf" not in node and "enum" not in node):
            continue
        assert set(node) <= STRICT_KEYWORDS, set(node) - STRICT_KEYWORDS
        if node.get("type") == "object":
            assert node["additionalProperties"] is False
            assert sorted(node["required"]) == sorted(node["properties"])


def test_strict_schema_closes_objects_and_drops_unsupported_keywords():
    class Inner(BaseModel):
        name: str = Field(default="x", min_length=2, max_length=9)

    class Outer(BaseModel):
        inner: Inner
        maybe: int | None = None
        many: list[Inner] = Field(default_factory=list, min_length=1, max_length=4)

    schema = json_schema_for(Outer)["json_schema"]["schema"]
    assert_openai_strict(schema)
    assert "$defs" not in schema and "$ref" not in str(schema)
    name = schema["properties"]["inner"]["properties"]["name"]
    assert "default" not in name and "minLength" not in name
    assert "at most 9 characters" in name["description"]   # the rule is still told, in words
    assert schema["properties"]["many"]["minItems"] == 1 and schema["properties"]["many"]["maxItems"] == 4
    assert {"type": "null"} in schema["properties"]["maybe"]["anyOf"]


def test_strict_schema_refuses_free_form_mappings():
    class Loose(BaseModel):
        m: dict[str, str]

    with pytest.raises(ValueError, match="free-form"):
        strict_schema(Loose)


@pytest.mark.parametrize("text, expected", [
    ('{"title": "T", "tasks": [{"id": "t1"}],}', {"title": "T", "tasks": [{"id": "t1"}]}),
    ('{"title": "T", // the title\n "transitions": {"t1": "So."}}', {"title": "T", "transitions": {"t1": "So."}}),
    ("{'title': 'It\\'s', 'tasks': [{'id': 't1'},]}", {"title": "It's", "tasks": [{"id": "t1"}]}),
    ('```json\n{"title": "T", /* c */ "tasks": [],}\n```', {"title": "T", "tasks": []}),
])
def test_loose_whole_object_is_repaired_as_a_whole(text, expected):
    assert extract_json(text) == expected


@pytest.mark.parametrize("text", [
    '{"title": "T", "tasks": [{"id": "t1", "verdict": "revise"}], oops}',
    '{"title": "T", "transitions": {"t1": "a"}',          # truncated: the inner map is not the answer
])
def test_inner_block_is_never_taken_for_a_broken_whole(text):
    with pytest.raises(ValueError):
        extract_json(text)


@pytest.mark.parametrize("text", ["[" * 100_000, "[" * 5000 + "]" * 5000,
                                  '{"a": ' * 200 + "1" + "}" * 200, "```json\n" + "[" * 3000 + "]" * 3000 + "\n```"])
def test_deeply_nested_reply_is_a_bad_reply_not_a_crash(text):
    # refused by the scan, before a parser recurses (a collection at that depth cannot report errors)
    with pytest.raises(ValueError, match="nests deeper than 64 levels"):
        parse_as(text, Bag)


def test_breakdown_salvage_fixes_only_what_a_schema_cannot_say():
    from utils.run.outputs import WorkBreakdown

    raw = {"summary": "s", "work_items": [
        {"id": "a", "name": "Alpha", "estimate_days": 1, "role": "qa", "depends_on": ["a", "ALPHA "]},
        {"id": "a", "name": "Beta", "estimate_days": 1, "role": "qa", "depends_on": ["alpha", "a", "zeta"]},
        {"id": "c", "name": "Gamma", "estimate_days": 1, "role": "qa", "depends_on": ["Beta"]}]}
    with pytest.raises(ValueError):
        validate(raw, WorkBreakdown)
    data, changes = WorkBreakdown.salvage(raw)
    fixed = validate(data, WorkBreakdown)
    assert [(w.id, w.depends_on) for w in fixed.work_items] == [("a", []), ("a-2", ["a"]), ("c", ["a-2"])]
    assert changes == ["repeated id 'a' renamed 'a-2'",
                       "dropped the dependency of 'a' on 'a' (it names no other work item)",
                       "dropped the dependency of 'a' on 'ALPHA ' (it names no other work item)",
                       "dropped the dependency of 'a-2' on 'zeta' (it names no other work item)"]
    assert raw["work_items"][1]["id"] == "a"  # the reply itself is not changed
    assert WorkBreakdown.salvage({"work_items": "x"}) == ({"work_items": "x"}, [])
    no_id = {"work_items": [{"name": "A", "estimate_days": 1, "role": "qa", "depends_on": ["B"]}]}
    data, changes = WorkBreakdown.salvage(no_id)  # shapes salvage cannot mend are left to validation
    assert changes == ["dropped the dependency of 'None' on 'B' (it names no other work item)"]
    with pytest.raises(ValueError, match="id"):
        validate(data, WorkBreakdown)
