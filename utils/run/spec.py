"""Workflow specs: `examples/<name>.yaml` files describing roles, prompts, review and assembly.

Specs are data so that a user adds a fifth workflow by writing one file. Loading validates the
file with a model class, so a typo in a spec is a one-line error, not a KeyError mid-run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from utils.errors import UsageError
from utils.files import parse_user_yaml
from utils.text import valid_data

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
    needs: list[str] = Field(default_factory=list)  # roles whose output this role's tasks must depend on

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
    min_score: float = Field(default=5.0, ge=0, le=10, description="a final review scoring below this "
                             "ends the run needs-work (exit 1); --min-score overrides it")


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
    sample_inputs: list[str] = Field(default_factory=list)   # relative to the spec's folder
    sample_data: str | None = None                           # relative to the spec's folder
    # How model sections' numbers are held to evidence (utils/run/claims.py): `sources` (cited file lines
    # and web passages; an uncited number is flagged), `figures` (the tools' results), `none`.
    claims: Literal["sources", "figures", "none"] = "none"
    path: str = ""

    @property
    def folder(self) -> Path:
        return Path(self.path).parent if self.path else EXAMPLES_DIR

    def example_path(self, rel: str) -> Path:
        return self.folder / rel


def spec_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.yaml"))


MAX_SPEC_BYTES = 1_000_000
MAX_SPEC_NODES = 50_000   # values after alias expansion: a YAML bomb stops here, not in memory
MAX_SPEC_DEPTH = 40


def load_spec(name_or_path: str) -> WorkflowSpec:
    """Load a built-in workflow by name, or any spec file by path.

    Whatever the file holds (binary, a list, deep nesting, a recursive alias, a YAML bomb, a role
    naming an unknown tool), the answer is a spec or a one-line UsageError: never a traceback."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = EXAMPLES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(spec_names())
        raise UsageError(f"unknown workflow '{name_or_path}' (known: {known})")
    raw = read_yaml(path)
    try:
        spec = WorkflowSpec.model_validate({**raw, "path": str(path)})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"workflow file {path}: {where}: {first['msg']}") from None
    _check_roles(spec, path)
    _check_samples(spec, path)
    return spec


def _check_samples(spec: WorkflowSpec, path: Path) -> None:
    """Sample files stay inside the spec's folder: a shared workflow file must not be able to point
    the run (and so the model) at `../../../elsewhere/secret.csv`."""
    folder = spec.folder.resolve()
    for name in [*spec.sample_inputs, *([spec.sample_data] if spec.sample_data else [])]:
        target = spec.example_path(name).resolve()
        if Path(name).is_absolute() or not target.is_relative_to(folder):
            raise UsageError(f"workflow file {path}: sample file {name!r} is outside the workflow's folder")


def read_yaml(path: Path, what: str = "workflow file") -> dict:
    """A YAML mapping from a file a user wrote (a spec, an edited plan.yaml): size, encoding, depth,
    aliases and shape checked, so whatever it holds is a mapping or a one-line UsageError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise UsageError(f"{what} {path} is larger than {MAX_SPEC_BYTES // 1000} kB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text (a binary file?)") from None
    if "\x00" in text:
        raise UsageError(f"{what} {path} is not text (it contains NUL bytes)")
    raw = parse_user_yaml(text, f"{what} {path}", max_depth=MAX_SPEC_DEPTH)
    if not isinstance(raw, dict):
        raise UsageError(f"{what} {path} must be a mapping of keys, "
                         f"not {type(raw).__name__}")
    problem = _shape_problem(raw)
    if problem:
        raise UsageError(f"{what} {path}: {problem}")
    return valid_data(raw)  # after the shape check: no cycle or bomb reaches the walk


def _shape_problem(value: object) -> str | None:
    """Why a loaded YAML value is unsafe to validate (a cycle from a recursive alias, nesting past
    MAX_SPEC_DEPTH, more than MAX_SPEC_NODES values once aliases are expanded), or None. Iterative,
    and it stops at the first limit, so a bomb costs at most MAX_SPEC_NODES steps."""
    stack: list[tuple[object, int, tuple[int, ...]]] = [(value, 0, ())]
    seen = 0
    while stack:
        item, depth, path = stack.pop()
        seen += 1
        if seen > MAX_SPEC_NODES:
            return f"more than {MAX_SPEC_NODES} values once aliases are expanded (a YAML bomb?)"
        if depth > MAX_SPEC_DEPTH:
            return f"nested deeper than {MAX_SPEC_DEPTH} levels"
        if isinstance(item, (dict, list)):
            if id(item) in path:
                return "a recursive alias (a value that contains itself)"
            children = item.values() if isinstance(item, dict) else item
            if isinstance(item, dict) and not all(isinstance(k, (str, int, float, bool)) or k is None for k in item):
                return "mapping keys must be plain values"
            stack.extend((child, depth + 1, path + (id(item),)) for child in children)
    return None


def _check_roles(spec: WorkflowSpec, path: Path) -> None:
    """Tool names and `needs` are checked at load, so a typo fails before any model call (exit 2)."""
    for name, role in spec.roles.items():
        unknown = [r for r in role.needs if r not in spec.roles]
        if unknown:
            raise UsageError(f"workflow file {path}: roles.{name}.needs: unknown role(s) {', '.join(unknown)}")
    tools = {name: role.tool for name, role in spec.roles.items() if role.kind == "tool"}
    if tools:
        from utils.tools import tool_names  # only specs with tool roles pay for importing the tools

        known = tool_names()
        for name, tool in tools.items():
            if tool not in known:
                raise UsageError(f"workflow file {path}: roles.{name}.tool: unknown tool {tool!r} "
                                 f"(known: {', '.join(known)})")
