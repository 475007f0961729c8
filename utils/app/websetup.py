"""Web research on or off for one run: the shell's half of the web tools (issue 12).

Resolves the settings (`--no-web` > environment > config file; none by default) into the run's
inputs, which are saved, so no API key goes in. `--input` files and web research combine. With web research off, the workflow's web roles are
taken out of the spec, so the planner never plans a search that cannot run.
"""
from __future__ import annotations

from typing import Any


def with_web(spec: Any, inputs: dict, settings: Any) -> tuple[Any, dict, str | None]:
    """(spec, inputs with "web", a notice) for a workflow with web roles; unchanged otherwise."""
    from utils.tools.web import WEB_TOOLS
    from utils.tools.web.settings import resolve_web

    web_roles = [name for name, role in spec.roles.items() if role.kind == "tool" and role.tool in WEB_TOOLS]
    if not web_roles:
        return spec, inputs, None
    web = resolve_web(no_web=bool(settings.flag("no_web")), no_cache=settings.no_cache,
                      config=settings.config.model_dump())
    inputs = {**inputs, "web": web}
    if web["enabled"]:
        if settings.topic and not settings.inputs:
            # A topic of the user's own, researched on the web: the shipped sample files are about
            # something else, so they are not mixed in. `--input` files are.
            inputs["inputs"] = []
        return spec, inputs, f"Web research: {web['provider']} at {web['url']}"
    return without_roles(spec, web_roles), inputs, f"No web research: {web['why']}"


def without_roles(spec: Any, names: list[str]) -> Any:
    """The spec minus `names`: gone from the roles and from the example plan (tasks and their deps),
    so neither the planner nor the offline stand-in plans a task that cannot run."""
    roles = {name: role for name, role in spec.roles.items() if name not in names}
    tasks = spec.offline_plan.get("tasks", [])
    dropped = {t.get("id") for t in tasks if t.get("role") in names}
    kept = [{**t, "depends_on": [d for d in t.get("depends_on", []) if d not in dropped]}
            for t in tasks if t.get("id") not in dropped]
    offline = {**spec.offline_plan, "tasks": kept} if tasks else spec.offline_plan
    return spec.model_copy(update={"roles": roles, "offline_plan": offline})
