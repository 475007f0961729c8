"""Workflow specs: `examples/<name>.yaml` files describing roles, prompts, review and assembly.

Specs are data so that a user adds a fifth workflow by writing one file. Loading validates the
file with a model class, so a typo in a spec is a one-line error, not a KeyError mid-run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from utils.errors import UsageError

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


class Role(BaseModel):
    description: str = ""
    kind: Literal["llm", "tool"] = "llm"
    system: str = ""
    tool: str | None = None            # tool name for kind: tool
    params: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None          # name of a structured-output schema (utils/run/outputs.py)
    offline_data: dict[str, Any] | None = None  # stand-in structured output for the offline provider
    model: str | None = None           # per-role model override

    @model_validator(mode="after")
    def _tool_named(self) -> "Role":
        if self.kind == "tool" and not self.tool:
            raise ValueError("a role of kind 'tool' needs a 'tool' name")
        return self


class Planner(BaseModel):
    system: str
    guidance: str = ""


class Review(BaseModel):
    system: str
    criteria: list[str] = Field(default_factory=list)


class Assembly(BaseModel):
    system: str = ""
    title: bool = True
    meta_description: bool = False
    include_roles: list[str] | None = None  # None: every role's output goes into the document
    summary_role: str | None = None         # its output is placed first (e.g. executive summary)
    cite_inputs: bool = False               # end with a "Sources" list of the input files


class WorkflowSpec(BaseModel):
    name: str
    title: str = ""
    description: str
    default_topic: str
    keywords: list[str] = Field(default_factory=list)
    planner: Planner
    roles: dict[str, Role]
    review: Review
    assembly: Assembly = Field(default_factory=Assembly)
    offline_plan: dict[str, Any] = Field(default_factory=dict)
    sample_inputs: list[str] = Field(default_factory=list)   # relative to examples/
    sample_data: str | None = None                           # relative to examples/
    path: str = ""

    def example_path(self, rel: str) -> Path:
        return EXAMPLES_DIR / rel


def spec_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.yaml"))


def load_spec(name_or_path: str) -> WorkflowSpec:
    """Load a built-in workflow by name, or any spec file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = EXAMPLES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(spec_names())
        raise UsageError(f"unknown workflow '{name_or_path}' (known: {known})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = WorkflowSpec.model_validate({**(raw or {}), "path": str(path)})
    except yaml.YAMLError as exc:
        raise UsageError(f"workflow file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"workflow file {path}: {where}: {first['msg']}") from exc
    return spec


def pick_workflow(topic: str, names: list[str] | None = None) -> str:
    """Best-fitting workflow for a free-text topic by whole-word keyword score; 'blog' when nothing matches.

    Used offline and as the prior that the model-based choice falls back to.
    """
    from utils.run.keywords import keyword_route  # issue 11: whole words; ties and no match said as such

    return keyword_route(topic, {n: load_spec(n).keywords for n in names or spec_names()}).name
