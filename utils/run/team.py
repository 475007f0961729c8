"""The project plan's calendar and team: `--start-date`, `--team`, or a team the model proposes.

They reach the `schedule` tool as `options["tool_params"]` (saved in run.json, so `--resume` keeps
them), which the worker merges into the tool's params. Without `--team`, a model proposes head counts
for the topic from a fixed role list (an enum in the schema, so a made-up role is a validation error
the client repairs); offline, the tool applies its stated rule to the breakdown's roles instead.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, Field, create_model

from utils.errors import LLMError, UsageError

ROLES = ("pm", "designer", "backend", "frontend", "qa", "devops", "data", "security", "writer")
MAX_PEOPLE_PER_ROLE = 50


def parse_team(text: str) -> dict[str, int]:
    """`backend=2,frontend=1,qa=1` -> {backend: 2, frontend: 1, qa: 1}; one-line UsageError otherwise."""
    team: dict[str, int] = {}
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        m = re.fullmatch(r"([A-Za-z][\w-]{0,30})\s*[=:]\s*(\d{1,3})", part)
        if not m:
            raise UsageError(f"--team: expected ROLE=PEOPLE pairs like 'backend=2,qa=1', got {part!r}")
        role, count = m.group(1).lower(), int(m.group(2))
        if not 1 <= count <= MAX_PEOPLE_PER_ROLE:
            raise UsageError(f"--team: {role} must have 1 to {MAX_PEOPLE_PER_ROLE} people, got {count}")
        if role in team:
            raise UsageError(f"--team: role {role} is named twice")
        team[role] = count
    if not team:
        raise UsageError("--team is empty; expected ROLE=PEOPLE pairs like 'backend=2,qa=1'")
    return team


def parse_start_date(text: str) -> str:
    try:
        return dt.date.fromisoformat(str(text).strip()).isoformat()
    except ValueError:
        raise UsageError(f"--start-date must be a date YYYY-MM-DD, got {text!r}") from None


def parse_holidays(text: str) -> list[str]:
    """`2026-12-24,2026-12-31` -> ISO dates (days off besides weekends, Christmas and New Year)."""
    days = [d.strip() for d in str(text).split(",") if d.strip()]
    if not days:
        raise UsageError("--holidays is empty; expected dates like '2026-12-24,2026-12-31'")
    out = []
    for day in days:
        try:
            out.append(dt.date.fromisoformat(day).isoformat())
        except ValueError:
            raise UsageError(f"--holidays: expected dates YYYY-MM-DD separated by commas, got {day!r}") from None
    return sorted(set(out))


def project_options(team: str | None, start_date: str | None, options: dict, holidays: str | None = None) -> dict:
    """`options` with `--team` / `--start-date` / `--holidays` in its `tool_params` (a flag given now
    overrides a resumed run's saved value)."""
    params = dict(options.get("tool_params") or {})
    if holidays:
        params["holidays"] = parse_holidays(holidays)
    if team:
        params.update(team=parse_team(team), team_source="--team")
    if start_date:
        params["start"] = parse_start_date(start_date)
    return {**options, "tool_params": params} if params else dict(options)


def _proposal_model() -> type[BaseModel]:
    Role = Literal[ROLES]  # type: ignore[valid-type]
    Member = create_model("TeamMember", role=(Role, ...),
                          people=(int, Field(ge=1, le=MAX_PEOPLE_PER_ROLE)))
    return create_model("TeamProposal", members=(list[Member], Field(min_length=1)),
                        reason=(str, Field(default="", description="one sentence: why this team")))


TeamProposal = _proposal_model()


def team_messages(goal: str) -> list[dict]:
    return [{"role": "system", "content": "You staff software and business projects with the smallest team that "
                                          "can deliver them."},
            {"role": "user", "content": f"# Project\n{goal}\n\n# Roles\n{', '.join(ROLES)}\n\n"
                                        "Propose the team: only the roles this project needs, with a head count "
                                        "each. Answer with JSON {members: [{role, people}], reason: one sentence}."}]


def schedules_work(spec) -> bool:
    """True for a workflow with a `schedule` tool role that has no team of its own."""
    return any(r.kind == "tool" and r.tool == "schedule" and not r.params.get("team") for r in spec.roles.values())


async def propose_team(llm, spec, goal: str, options: dict) -> tuple[dict, str | None]:
    """(options, notice). With a model and no `--team`, the model's team goes into tool_params;
    offline, or when the model fails, the tool's rule applies and the notice says so."""
    params = options.get("tool_params") or {}
    if not schedules_work(spec) or params.get("team"):
        return options, None
    if llm.offline:
        return options, None
    try:
        reply = await llm.complete(team_messages(goal), schema=TeamProposal, temperature=0.0,
                                   purpose="proposing the team")
    except LLMError as exc:
        return options, f"Team: the model could not propose one ({exc}); the scheduler's rule applies"
    team: dict[str, int] = {}
    for m in reply.data.members:
        team[m.role] = team.get(m.role, 0) + m.people
    reason = " ".join(reply.data.reason.split())[:200] or "proposed for the topic"
    new = {**params, "team": team, "team_source": f"proposed by the model: {reason}"}
    shown = ", ".join(f"{r} {n}" for r, n in team.items())
    return {**options, "tool_params": new}, f"Team: {shown} (proposed by the model: {reason}; --team to set it)"
