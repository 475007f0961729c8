"""Project scheduling: critical path (CPM) and resource-levelled allocation of a work breakdown.

A model can estimate tasks; it cannot be trusted to add up a dependency graph. The planner's work
breakdown (a dependency result with `work_items`, or the role's `params.work_items`) comes here, and the
schedule's dates, slack and critical path in the final plan are computed, not written.
"""
from __future__ import annotations

import datetime as dt
import re

from utils.errors import ToolError
from utils.toposort import DependencyCycle, topo_order as order_nodes
from utils.tools import ToolInput, ToolResult, new_figure, png_bytes

EPS = 1e-9


def _num(x: float) -> float:
    """Round away float noise (0.1 + 0.2) so data and tables show clean day counts."""
    return round(float(x), 6)


def validate_items(raw: object) -> list[dict]:
    """Normalise work items and reject anything CPM cannot use, naming the offending item."""
    if not isinstance(raw, list) or not raw:
        raise ToolError("the work breakdown has no work items")
    items: list[dict] = []
    seen: set[str] = set()
    for i, it in enumerate(raw, 1):
        if hasattr(it, "model_dump"):
            it = it.model_dump()
        if not isinstance(it, dict):
            raise ToolError(f"work item {i} is not a mapping")
        iid = str(it.get("id") or "").strip()
        if not iid:
            raise ToolError(f"work item {i} has no id")
        if iid in seen:
            raise ToolError(f"duplicate work item id {iid!r}")
        seen.add(iid)
        try:
            est = float(it.get("estimate_days"))
        except (TypeError, ValueError):
            raise ToolError(f"work item {iid!r}: estimate_days must be a number > 0") from None
        if not est > 0 or est != est or est == float("inf"):
            raise ToolError(f"work item {iid!r}: estimate_days must be a number > 0, got {it.get('estimate_days')!r}")
        deps = it.get("depends_on") or []
        if isinstance(deps, str):
            deps = [deps]
        role = str(it.get("role") or "").strip()
        if not role:
            raise ToolError(f"work item {iid!r} has no role")
        items.append({"id": iid, "name": str(it.get("name") or iid), "estimate_days": est,
                      "depends_on": [str(d) for d in deps], "role": role})
    for it in items:
        for d in it["depends_on"]:
            if d not in seen:
                raise ToolError(f"work item {it['id']!r} depends on unknown item {d!r}")
            if d == it["id"]:
                raise ToolError(f"work item {d!r} depends on itself")
    return items


def topo_order(items: list[dict]) -> list[str]:
    """Dependency order, ties kept in input order; a cycle is a ToolError that names it."""
    try:
        return order_nodes({it["id"]: it["depends_on"] for it in items})
    except DependencyCycle as exc:
        # dependencies point backwards in time: show the cycle as "runs before" arrows
        raise ToolError("dependency cycle in the work breakdown: " + " -> ".join(reversed(exc.cycle))) from None


def critical_path(items: list[dict]) -> dict:
    """Critical path method: earliest/latest start and finish, slack, duration, one critical chain.

    Slack is how long an item may slip without delaying the project; items with zero slack are
    critical. `critical_path` follows one zero-slack chain from the start to the end (ties: input order).
    """
    items = validate_items(items)
    by_id = {it["id"]: it for it in items}
    order = topo_order(items)
    es: dict[str, float] = {}
    ef: dict[str, float] = {}
    for iid in order:
        es[iid] = max((ef[d] for d in by_id[iid]["depends_on"]), default=0.0)
        ef[iid] = es[iid] + by_id[iid]["estimate_days"]
    duration = max(ef.values())
    succ: dict[str, list[str]] = {it["id"]: [] for it in items}
    for it in items:
        for d in it["depends_on"]:
            succ[d].append(it["id"])
    ls: dict[str, float] = {}
    lf: dict[str, float] = {}
    for iid in reversed(order):
        lf[iid] = min((ls[s] for s in succ[iid]), default=duration)
        ls[iid] = lf[iid] - by_id[iid]["estimate_days"]
    slack = {iid: ls[iid] - es[iid] for iid in order}
    critical = [it["id"] for it in items if abs(slack[it["id"]]) < EPS]
    chain: list[str] = []
    current = next((i for i in critical if es[i] < EPS), None)
    while current is not None:
        chain.append(current)
        current = next((s for s in succ[current]
                        if s in critical and abs(es[s] - ef[current]) < EPS), None)
    rows = {iid: {"es": _num(es[iid]), "ef": _num(ef[iid]), "ls": _num(ls[iid]), "lf": _num(lf[iid]),
                  "slack": _num(slack[iid]), "critical": iid in critical} for iid in order}
    return {"duration_days": _num(duration), "critical_path": chain, "critical": critical, "order": order,
            "items": rows}


def allocate_resources(items: list[dict], team: dict[str, int]) -> dict:
    """List scheduling in time order: whenever a person of a role is free, they start the most urgent
    ready item of that role.

    Urgency is the CPM latest start (least slack first), then earliest start, then input order. Nobody
    idles while an item of their role is ready (a "non-delay" schedule), and at most `team[role]` items of
    a role run at once, so the levelled duration is never shorter than the CPM duration and grows when a
    role is the bottleneck. Heuristic, not optimal: good and explainable is what a plan needs.
    """
    items = validate_items(items)
    team = _validate_team(team)
    unknown = sorted({it["role"] for it in items} - set(team))
    if unknown:
        raise ToolError(f"no team members for role(s) {', '.join(unknown)}; "
                        f"team roles: {', '.join(sorted(team)) or 'none'}")
    cpm = critical_path(items)
    index = {it["id"]: n for n, it in enumerate(items)}
    free_at = {role: [0.0] * count for role, count in team.items()}
    placed: dict[str, dict] = {}
    end_at: dict[str, float] = {}
    t = 0.0
    while len(placed) < len(items):
        ready = [it for it in items if it["id"] not in placed
                 and all(d in end_at and end_at[d] <= t + EPS for d in it["depends_on"])]
        ready.sort(key=lambda it: (cpm["items"][it["id"]]["ls"], cpm["items"][it["id"]]["es"], index[it["id"]]))
        for it in ready:
            people = free_at[it["role"]]
            k = next((p for p in range(len(people)) if people[p] <= t + EPS), None)  # lowest-numbered free
            if k is None:
                continue
            end = t + it["estimate_days"]
            people[k] = end_at[it["id"]] = end
            placed[it["id"]] = {"person": f"{it['role']}-{k + 1}", "start": _num(t), "end": _num(end),
                                "wait_days": _num(t - cpm["items"][it["id"]]["es"])}
        later = [e for e in end_at.values() if e > t + EPS]
        if not later and len(placed) < len(items):  # cannot happen after validation; never loop forever
            raise ToolError("could not schedule the work items (unreachable dependencies)")
        t = min(later, default=t)
    duration = max(p["end"] for p in placed.values())
    busy: dict[str, float] = {role: 0.0 for role in team}
    for it in items:
        busy[it["role"]] += it["estimate_days"]
    utilisation = {role: _num(busy[role] / (team[role] * duration)) if duration else 0.0 for role in team}
    return {"levelled_duration_days": _num(duration), "items": {i: placed[i] for i in cpm["order"]},
            "utilisation": utilisation, "team": team}


def _validate_team(team: object) -> dict[str, int]:
    if not isinstance(team, dict) or not team:
        raise ToolError("team must map role -> number of people, e.g. {backend: 2, frontend: 1}")
    out: dict[str, int] = {}
    for role, count in team.items():
        if isinstance(count, bool) or not isinstance(count, (int, float)) or count < 1 or count != int(count):
            raise ToolError(f"team role {role!r}: the number of people must be a whole number >= 1, got {count!r}")
        out[str(role)] = int(count)
    return out


def _work_items(inp: ToolInput) -> list:
    for res in inp.deps.values():
        data = (res or {}).get("data")
        if isinstance(data, dict) and "work_items" in data:
            return data["work_items"]
    if "work_items" in inp.params:
        return inp.params["work_items"]
    raise ToolError("no work breakdown: a dependency task must produce work_items "
                    "(or set params.work_items in the role spec)")


def _workday(start: dt.date, offset: float) -> dt.date:
    """The date `offset` working days after `start` (Mon-Fri; fractions round down to the day)."""
    day, left = start, int(offset + EPS)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    while left > 0:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


def _mermaid_text(s: str) -> str:
    """Mermaid gantt task names end at ':' and comments start at '%%'/'#': keep names plain."""
    return re.sub(r"\s+", " ", re.sub(r"[:#;%]", " ", s)).strip() or "item"


def mermaid_gantt(title: str, rows: list[dict], start: dt.date) -> str:
    """A Mermaid gantt of the levelled schedule: one section per role, `crit` on critical items."""
    lines = ["```mermaid", "gantt", f"    title {_mermaid_text(title)}", "    dateFormat YYYY-MM-DD",
             "    excludes weekends"]
    for role in dict.fromkeys(r["role"] for r in rows):
        lines.append(f"    section {_mermaid_text(role)}")
        for r in (r for r in rows if r["role"] == role):
            end = r["end"] if r["end"] == int(r["end"]) else int(r["end"]) + 1  # bars end on a day boundary
            tags = ["crit"] if r["critical"] else []
            tid = re.sub(r"\W", "_", r["id"])
            lines.append(f"    {_mermaid_text(r['name'])} ({_mermaid_text(r['person'])}) :"
                         f"{', '.join(tags + [tid, r['start_date'], _workday(start, end).isoformat()])}")
    lines.append("```")
    return "\n".join(lines)


def gantt_png(rows: list[dict], duration: float) -> bytes:
    """A bar per item on a day axis, coloured by role, critical items outlined in red."""
    fig = new_figure(10, 1.0 + 0.45 * len(rows))
    ax = fig.add_subplot(1, 1, 1)
    palette = ["#4C72B0", "#55A868", "#8172B2", "#CCB974", "#64B5CD", "#DD8452", "#937860", "#DA8BC3"]
    roles = list(dict.fromkeys(r["role"] for r in rows))
    for y, r in enumerate(rows):
        ax.barh(y, r["end"] - r["start"], left=r["start"], color=palette[roles.index(r["role"]) % len(palette)],
                edgecolor="#C44E52" if r["critical"] else "white", linewidth=2 if r["critical"] else 0.5)
        ax.text(r["start"] + 0.1, y, r["person"], va="center", fontsize=8, color="white")
    ax.set_yticks(range(len(rows)), [f"{r['id']} {r['name'][:30]}" for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, max(duration, 1.0) * 1.02)
    ax.set_xlabel("working days")
    ax.set_title("Resource-levelled schedule (critical items outlined in red)")
    for role in roles:
        ax.barh(0, 0, color=palette[roles.index(role) % len(palette)], label=role)
    ax.legend(loc="upper right", fontsize=8)  # rows run by start date: top right is empty
    fig.tight_layout()
    return png_bytes(fig)


def schedule(inp: ToolInput) -> ToolResult:
    """CPM plus allocation for the work breakdown; params: team, start (YYYY-MM-DD)."""
    items = validate_items(_work_items(inp))
    raw_team = inp.params.get("team")
    note = ""
    if raw_team is None:
        raw_team = {r: 1 for r in dict.fromkeys(it["role"] for it in items)}
        note = " No team was given (params.team), so each role has one person."
    try:
        start = dt.date.fromisoformat(str(inp.params.get("start", "2026-01-05")))
    except ValueError:
        raise ToolError(f"params.start must be a date YYYY-MM-DD, got {inp.params.get('start')!r}") from None
    cpm = critical_path(items)
    alloc = allocate_resources(items, raw_team)
    by_id = {it["id"]: it for it in items}
    rows = []
    for iid in cpm["order"]:
        rows.append({**by_id[iid], **cpm["items"][iid], **alloc["items"][iid],
                     "start_date": _workday(start, alloc["items"][iid]["start"]).isoformat()})
    rows.sort(key=lambda r: (r["start"], r["es"], cpm["order"].index(r["id"])))
    end_date = _workday(start, alloc["levelled_duration_days"])
    table = ["| id | name | role | person | start | end | ES | EF | LS | LF | slack | critical |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in rows:
        table.append(f"| {r['id']} | {r['name']} | {r['role']} | {r['person']} | {r['start']:g} | {r['end']:g} | "
                     f"{r['es']:g} | {r['ef']:g} | {r['ls']:g} | {r['lf']:g} | {r['slack']:g} | "
                     f"{'✓' if r['critical'] else ''} |")
    util = ", ".join(f"{role} {u:.0%}" for role, u in alloc["utilisation"].items())
    md = [f"Critical path: **{' → '.join(cpm['critical_path'])}**, {cpm['duration_days']:g} working days "
          f"with unlimited people; {alloc['levelled_duration_days']:g} working days with the team "
          f"({', '.join(f'{k}: {v}' for k, v in alloc['team'].items())}), from {start.isoformat()} to about "
          f"{end_date.isoformat()}.{note}", "",
          "\n".join(table), "",
          "ES/EF/LS/LF are earliest/latest start and finish in working days from day 0 (dependencies only); "
          f"start/end are the levelled schedule. Utilisation: {util}.", "",
          mermaid_gantt(str(inp.task.get("title") or "Schedule"), rows, start), "",
          "![Gantt chart of the levelled schedule](gantt.png)"]
    data = {"duration_days": cpm["duration_days"], "levelled_duration_days": alloc["levelled_duration_days"],
            "critical_path": cpm["critical_path"], "critical": cpm["critical"], "team": alloc["team"],
            "utilisation": alloc["utilisation"], "start_date": start.isoformat(), "end_date": end_date.isoformat(),
            "items": rows}
    return ToolResult(markdown="\n".join(md), data=data,
                      artifacts={"gantt.png": gantt_png(rows, alloc["levelled_duration_days"])})


TOOLS_HERE = {"schedule": schedule}
