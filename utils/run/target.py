"""Which column an analysis predicts: `--target`, the model's choice among the CSV's columns, or a rule.

The model sees the goal and a profile of each eligible column and must answer with one of their names
(a `Literal` enum in the schema, so a schema-following server cannot name anything else) plus a
one-line reason that the user is shown. Offline, or when the model fails, the stated rule in
`dataset.TARGET_RULE` decides, and the reason says so. The choice travels to the tools through the
shared store (`shared["inputs"]["target"]`, saved in run.json, so `--resume` keeps it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, create_model

from utils.errors import LLMError, ToolError, UsageError
from utils.tools.dataset import TARGET_RULE, Dataset, check_target, default_target, open_dataset, target_candidates

MAX_CHOICES = 200     # columns offered to the model (the enum); a wider file offers the first 200 eligible


@dataclass
class TargetChoice:
    column: str | None
    reason: str           # one line, shown to the user
    how: str              # "flag", "model" or "rule"


def describe_columns(ds: Dataset, names: list[str]) -> str:
    """One line per eligible column: type, distinct values, missing share (what a person would look at)."""
    lines = []
    for n in names:
        c = ds.column(n)
        lines.append(f"- `{n}`: {c.kind}, {c.distinct:,} distinct values, {c.missing / ds.n_rows:.0%} missing")
    return "\n".join(lines)


def target_messages(goal: str, ds: Dataset, names: list[str]) -> list[dict]:
    return [{"role": "system", "content": "You choose the target column of a data analysis: the one column "
             "the user most wants explained or predicted from the others."},
            {"role": "user", "content": f"# Goal\n{goal}\n\n# Columns of {ds.name} ({ds.n_rows:,} rows)\n"
             f"{describe_columns(ds, names)}\n\nAnswer with JSON: {{column: one of the names above, "
             "reason: one short sentence}."}]


def choice_schema(names: list[str]) -> type[BaseModel]:
    """A model class whose `column` is an enum of exactly these names."""
    return create_model("TargetChoice", column=(Literal[tuple(names)], ...),
                        reason=(str, Field(max_length=300)))


def rule_choice(ds: Dataset, why: str = "") -> TargetChoice:
    name = default_target(ds)
    if name is None:
        return TargetChoice(None, f"no column of {ds.name} can be predicted, so the analysis describes it "
                            "without a model", "rule")
    return TargetChoice(name, f"{why}{TARGET_RULE}", "rule")


async def choose_target(llm, data_path: Path | str, goal: str, explicit: str | None = None) -> TargetChoice:
    """The run's target. `--target` must name a column a model can predict (UsageError otherwise)."""
    try:
        ds = open_dataset(data_path)
        if explicit:
            check_target(ds, explicit)
            return TargetChoice(explicit, "given with --target", "flag")
    except ToolError as exc:
        raise UsageError(str(exc)) from None
    names = [c.name for c in target_candidates(ds)][:MAX_CHOICES]
    if llm.offline or len(names) < 2:
        return rule_choice(ds, "offline rule: " if llm.offline else "")
    schema = choice_schema(names)
    try:
        reply = await llm.complete(target_messages(goal, ds, names), schema=schema, temperature=0.0,
                                   purpose="choosing the target column")
    except LLMError as exc:
        return rule_choice(ds, f"the model could not choose ({exc}); rule: ")
    reason = " ".join(reply.data.reason.split()) or "chosen by the model"
    return TargetChoice(reply.data.column, reason, "model")


def target_notice(choice: TargetChoice) -> str:
    """The line the user sees before the run starts."""
    if choice.column is None:
        return f"Target: none ({choice.reason})"
    hint = "" if choice.how == "flag" else "; use --target COLUMN to choose another"
    return f"Target: {choice.column} ({choice.reason}{hint})"


TARGET_TOOLS = frozenset({"regression", "charts", "correlations"})


def needs_target(spec) -> bool:
    """True when a workflow has a tool role that models or charts a target (the analysis workflow)."""
    return any(getattr(role, "tool", None) in TARGET_TOOLS for role in spec.roles.values())
