"""Where the time went: a run's worker timeline as a picture and as terminal lines.

Pure functions of what a run records anyway (the plan and each task result's `worker` slot,
`started`, `finished`, `state`), so the same view comes from a live run, a saved `run.json` or a
benchmark case. One lane per worker slot, one bar per task coloured by role; waits for a slot,
failures, retries and the critical path are marked, and the lower bound max(longest dependency
chain, total work / workers) is drawn as a line, so a reader sees whether more workers would help
(slot waits, bound set by work) or not (the chain sets the pace).

matplotlib (Agg) is imported only when a PNG is drawn: importing it costs most of a second, and
the engine and the terminal lines never need it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.dag import longest_chains
from utils.run.results import TaskState, state_of
from utils.palette import role_colours

EPS = 0.002  # seconds: a task that starts within this of an event was waiting for that event
FAILED_STATES = (TaskState.FAILED,)


@dataclass
class Bar:
    id: str
    role: str
    lane: int
    start: float          # seconds from the first task start
    end: float
    state: str
    ready: float          # when its last dependency ended (start > ready: it waited for a slot)
    retries: int = 0
    revision: int = 0
    critical: bool = False
    slot_wait: bool = False  # its late start was a wait for a free slot (all busy), not a delay

    @property
    def late(self) -> float:
        """Seconds between its inputs being ready and its start."""
        return self.start - self.ready


@dataclass
class Timeline:
    bars: list[Bar]
    lanes: list[int]
    workers: int
    bound: float          # lower bound of the worker phase, seconds
    span: float           # first start to last end, seconds
    chain: float          # longest dependency chain by measured durations
    work: float           # total task time
    slot_wait: float      # total time ready tasks waited for a slot (every slot busy)
    delay: float          # total time ready tasks started late with a slot free (engine, I/O, a busy loop)
    not_run: list[str] = field(default_factory=list)
    origin: float = 0.0   # epoch seconds of the first start
    reviews: list[tuple[float, float]] = field(default_factory=list)  # review gaps before revision passes

    @property
    def critical(self) -> list[Bar]:
        return [b for b in self.bars if b.critical]

    def verdict(self) -> str:
        if not self.bars:
            return "no task ran"
        if self.slot_wait > EPS and self.work / self.workers >= self.chain:
            return "tasks waited for a worker slot: more workers would help"
        if self.delay > 0.1 * self.span:
            return f"ready tasks started {self.delay:.2f} s late in all with a slot free (engine or I/O)"
        return "the longest dependency chain sets the pace: more workers would not help"


def dependencies(plan: dict | None) -> dict[str, list[str]]:
    return {t["id"]: list(t.get("depends_on") or []) for t in (plan or {}).get("tasks", [])}


def build(plan: dict | None, results: dict[str, dict], workers: int | None = None,
          earlier: list[dict] | None = None, arrived: dict[str, float] | None = None) -> Timeline:
    """Lay out the tasks that ran; compute the critical path, slot waits and the lower bound.

    `earlier`: the passes a review replaced (results keep only a task's last pass): drawn on their
    lanes and counted as work. A revision pass waited for the review, not for the engine, so its
    start is never "late"; the gaps before revision passes are returned as `reviews`.
    `arrived`: epoch seconds each task's object streamed in (a plan still being written): a task
    is not ready before it exists, so that wait is not counted as a late start."""
    deps = dependencies(plan)
    ran = {tid: r for tid, r in results.items() if _ran(r)}
    before = [r for r in earlier or [] if _ran(r)]
    not_run = [tid for tid in (deps or results) if tid not in ran]
    if not ran:
        return Timeline([], [], max(workers or 1, 1), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, not_run)
    origin = min(float(r["started"]) for r in [*ran.values(), *before])
    bars = {}
    for tid, r in ran.items():
        start, end = float(r["started"]) - origin, max(float(r["finished"]), float(r["started"])) - origin
        ready = max([float(ran[d]["finished"]) - origin for d in deps.get(tid, []) if d in ran]
                    + [float((arrived or {}).get(tid, origin)) - origin])
        revision = int(r.get("revision") or 0)
        bars[tid] = Bar(tid, str(r.get("role") or "?"), int(r["worker"]), start, end, state_of(r),
                        start if revision else min(ready, start), int(r.get("retries") or 0), revision)
    passes = [Bar(str(r.get("id")), str(r.get("role") or "?"), int(r["worker"]), float(r["started"]) - origin,
                  max(float(r["finished"]), float(r["started"])) - origin, state_of(r),
                  float(r["started"]) - origin, int(r.get("retries") or 0), int(r.get("revision") or 0))
              for r in before]
    every = [*bars.values(), *passes]
    lanes = sorted({b.lane for b in every})
    workers = max(min(workers or len(lanes), len(bars)), len(lanes), 1)
    chain = _longest_chain(bars, deps)
    work = sum(b.end - b.start for b in every)
    span = max(b.end for b in every)
    _mark_critical(bars, deps)
    _mark_slot_waits(bars, workers)
    reviews = []
    for n in sorted({b.revision for b in every if b.revision}):
        gap = (max((b.end for b in every if b.revision < n), default=0.0),
               min(b.start for b in every if b.revision == n))
        if gap[1] - gap[0] > EPS:
            reviews.append(gap)
    order = sorted(every, key=lambda b: (b.lane, b.start))
    return Timeline(order, lanes, workers, max(chain, work / workers), span, chain, work,
                    sum(b.late for b in bars.values() if b.slot_wait),
                    sum(b.late for b in bars.values() if not b.slot_wait and b.late > EPS), not_run, origin, reviews)


def _ran(r: object) -> bool:
    return isinstance(r, dict) and bool(r.get("started") and r.get("finished") and r.get("worker"))


def _mark_slot_waits(bars: dict[str, Bar], workers: int) -> None:
    """A late start is a slot wait when every slot was busy halfway through the wait; otherwise the
    task was held up by something else (the event loop busy saving or drawing, a slow client)."""
    spans = [(b.start, b.end) for b in bars.values()]
    for b in bars.values():
        if b.late > EPS:
            mid = (b.ready + b.start) / 2
            b.slot_wait = sum(1 for s, e in spans if s <= mid < e) >= workers


def _longest_chain(bars: dict[str, Bar], deps: dict[str, list[str]]) -> float:
    """The longest dependency chain by measured durations (tasks that ran only)."""
    chains = longest_chains({tid: deps.get(tid, []) for tid in bars}, lambda tid: bars[tid].end - bars[tid].start)
    return max(chains.values(), default=0.0)


def _mark_critical(bars: dict[str, Bar], deps: dict[str, list[str]]) -> None:
    """Walk back from the last task to end: to the dependency it waited for, or, when it waited for
    a slot, to the task that freed that slot. Those tasks are the ones that set the end time."""
    current: Bar | None = max(bars.values(), key=lambda b: b.end)
    seen: set[str] = set()
    while current is not None and current.id not in seen:
        current.critical = True
        seen.add(current.id)
        if current.start <= EPS:
            break
        blocker = max((bars[d] for d in deps.get(current.id, []) if d in bars), key=lambda b: b.end, default=None)
        if blocker is not None and blocker.end >= current.start - EPS:
            current = blocker
            continue
        freed = [b for b in bars.values() if b.lane == current.lane and b.id != current.id
                 and abs(b.end - current.start) <= max(EPS, 0.05 * (current.end - current.start))]
        current = max(freed, key=lambda b: b.end, default=blocker)


# -- terminal lines ---------------------------------------------------------------------------------
def _role_letters(roles: list[str]) -> dict[str, str]:
    letters: dict[str, str] = {}
    for role in roles:
        for ch in role.lower() + "abcdefghijklmnopqrstuvwxyz":
            if ch.isalpha() and ch not in letters.values():
                letters[role] = ch
                break
        else:
            letters[role] = "#"
    return letters


def timeline_lines(plan: dict | None, results: dict[str, dict], *, workers: int | None = None,
                   width: int = 60, max_lanes: int = 12) -> list[str]:
    """The timeline as a few lines of plain text (the shell decides where and whether to show them).

    Each lane is `width` characters; a task fills its span with its role's letter, in capitals
    when it is on the critical path; `.` is a ready task waiting for a slot, `-` one that started
    late with a slot free (both shown in the lane it then ran in), `!` a failed task.
    """
    tl = build(plan, results, workers)
    if not tl.bars:
        return []
    scale = (width - 1) / tl.span if tl.span > 0 else 0.0
    letters = _role_letters(sorted({b.role for b in tl.bars}))
    rows = {lane: [" "] * width for lane in tl.lanes}
    for b in tl.bars:
        row = rows[b.lane]
        lo, hi = int(b.start * scale), max(int(b.end * scale), int(b.start * scale))
        for i in range(int(b.ready * scale), lo):
            if row[i] == " ":
                row[i] = "." if b.slot_wait else "-"
        ch = "!" if b.state in FAILED_STATES else letters[b.role]
        for i in range(lo, hi + 1):
            row[i] = ch.upper() if b.critical else ch
    ratio = tl.span / tl.bound if tl.bound else 1.0
    lines = [f"timeline: {tl.span:.1f} s on {len(tl.lanes)} worker lane(s); lower bound {tl.bound:.1f} s "
             f"(x{ratio:.2f}); {tl.verdict()}"]
    label = max(len(f"w{lane}") for lane in tl.lanes)
    for lane in tl.lanes[:max_lanes]:
        lines.append(f"  {f'w{lane}'.rjust(label)} |{''.join(rows[lane])}|")
    if len(tl.lanes) > max_lanes:
        lines.append(f"  ({len(tl.lanes) - max_lanes} more lanes in timeline.png)")
    key = ", ".join(f"{ch} {role}" for role, ch in letters.items())
    lines.append(f"  {key}; CAPITALS critical path; . waiting for a slot; - started late, slot free; ! failed")
    return lines


# -- pictures ---------------------------------------------------------------------------------------
def agg_figure(width: float, height: float) -> tuple[Any, Any]:
    """A Figure on its own Agg canvas (the tools' `new_figure`) and its one Axes."""
    from utils.tools import new_figure

    fig = new_figure(width, height)
    return fig, fig.subplots()


def figure_png(fig) -> bytes:
    from utils.tools import png_bytes

    return png_bytes(fig, dpi=110, bbox_inches="tight")


def timeline_title(tl: Timeline, title: str, *, offline: bool = False) -> str:
    """The picture's title. Offline the times are the stand-ins', so no ratio or verdict is given."""
    head = f"{title} · " if title else ""
    if offline:
        return f"{head}offline run: no model was called, so the times say nothing about a model's pace"
    ratio = tl.span / tl.bound if tl.bound else 1.0
    return (f"{head}worker phase {tl.span:.2f} s, x{ratio:.2f} its lower bound; {tl.verdict()}"
            + (f"; not run: {len(tl.not_run)}" if tl.not_run else ""))


def timeline_png(plan: dict | None, results: dict[str, dict], *, workers: int | None = None,
                 title: str = "", phases: dict[str, float] | None = None, earlier: list[dict] | None = None,
                 offline: bool = False, arrived: dict[str, float] | None = None) -> bytes:
    """The timeline as a PNG. `phases` (epoch seconds: run_started, run_ended) adds the planning
    span before the first task and the review/assembly span after the last; with planning_started
    and planning_ended (a plan that streamed while tasks ran) the planning call is a bar of its own
    above the workers, so the overlap shows; `earlier` passes (a review sent the task back) are
    drawn too, and the review gaps before revisions are labelled."""
    tl = build(plan, results, workers, earlier, arrived)
    from matplotlib.patches import Patch

    n = max(len(tl.lanes), 1)
    fig, ax = agg_figure(11, min(2.2 + 0.38 * n, 22))
    pos = {lane: i for i, lane in enumerate(tl.lanes)}
    height = 0.62
    before = after = 0.0
    if phases and tl.bars:
        before = max(tl.origin - float(phases.get("run_started") or tl.origin), 0.0)
        after = max(float(phases.get("run_ended") or 0.0) - tl.origin - tl.span, 0.0)
        planned = phases.get("planning_started"), phases.get("planning_ended")
        if all(isinstance(x, (int, float)) for x in planned):
            a, b = planned[0] - tl.origin, planned[1] - tl.origin
            ax.barh(-0.85, max(b - a, 1e-3), left=a, height=0.3, color="#7F7F7F", zorder=3)
            ax.text(a, -0.85, " planning (streamed; tasks start as they arrive)", fontsize=7, va="center",
                    color="white" if b - a > tl.span * 0.4 else "#333333", zorder=4, clip_on=True)
            before = 0.0  # the bar says it; no grey span before the first task
        if before:
            ax.axvspan(-before, 0, color="#EEEEEE", zorder=0)
            ax.text(-before / 2, n - 0.2, "planning", ha="center", va="center", fontsize=8, color="#555555")
        if after:
            ax.axvspan(tl.span, tl.span + after, color="#EEEEEE", zorder=0)
            ax.text(tl.span + after / 2, n - 0.2, "review + assembly", ha="center", va="center", fontsize=8,
                    color="#555555")
    for a, b in tl.reviews:  # a revision waited for the review: named, not blamed on the engine
        ax.axvspan(a, b, color="#EEEEEE", zorder=0)
        ax.text((a + b) / 2, n - 0.2, "review", ha="center", va="center", fontsize=8, color="#555555")
    by_id = {b.id: b for b in tl.bars if not any(b is not x and x.id == b.id and x.revision > b.revision
                                                 for x in tl.bars)}
    deps = dependencies(plan)
    colors = role_colours([b.role for b in tl.bars])
    for b in tl.bars:
        y = pos[b.lane]
        failed = b.state in FAILED_STATES
        ax.barh(y, max(b.end - b.start, 1e-3), left=b.start, height=height, color=colors[b.role],
                edgecolor="#D62728" if b.critical else "white", linewidth=2.2 if b.critical else 0.6,
                hatch="xx" if failed else None, alpha=0.55 if failed else 0.95, zorder=3)
        if b.late > EPS:  # waited: a thin band under the bar, hatched for a slot, dotted for a delay
            ax.barh(y + height / 2 + 0.08, b.late, left=b.ready, height=0.12, color="none",
                    edgecolor="#888888" if b.slot_wait else "#E17C05", hatch="////" if b.slot_wait else "....",
                    linewidth=0.4, zorder=2)
        marks = ("!" if failed else "") + (f" ↻{b.retries}" if b.retries else "") + (f" r{b.revision}" if b.revision else "")
        label = b.id + marks
        if (b.end - b.start) >= tl.span * 0.04 * max(len(label), 3) / 6:
            ax.text((b.start + b.end) / 2, y, label, ha="center", va="center", fontsize=7, color="white",
                    zorder=4, clip_on=True)
        elif marks:
            ax.text(b.end, y - height / 2, marks.strip(), fontsize=7, color="#D62728", zorder=4)
    if len(tl.bars) <= 80:  # dependency hand-overs: grey, red on the critical path
        for b in tl.bars:
            for d in deps.get(b.id, []):
                if d in by_id:
                    a = by_id[d]
                    hot = a.critical and b.critical
                    ax.plot([a.end, b.start], [pos[a.lane], pos[b.lane]], color="#D62728" if hot else "#BBBBBB",
                            linewidth=1.2 if hot else 0.5, zorder=1 if not hot else 2)
    if tl.bars and not offline:
        ax.axvline(tl.bound, color="black", linestyle="--", linewidth=1, zorder=5)
        ax.text(tl.bound, -1.15, f" lower bound {tl.bound:.2f} s", fontsize=8, va="top")
    ax.set_yticks(range(n), [f"worker {lane}" for lane in tl.lanes] or ["-"])
    ax.set_ylim(n - 0.4 + 0.5, -1.4)
    ax.set_xlabel("seconds from the first task start")
    ax.set_title(timeline_title(tl, title, offline=offline), fontsize=9)
    roles = sorted({b.role for b in tl.bars})
    handles = [Patch(color=colors[r], label=r) for r in roles]
    handles += [Patch(facecolor="white", edgecolor="#D62728", linewidth=2, label="critical path"),
                Patch(facecolor="white", edgecolor="#888888", hatch="////", label="waiting for a slot"),
                Patch(facecolor="white", edgecolor="#E17C05", hatch="....", label="started late, slot free"),
                Patch(facecolor="#CCCCCC", hatch="xx", label="failed")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.18 if n < 6 else -0.08),
              ncol=min(len(handles), 6), fontsize=7, frameon=False)
    ax.grid(axis="x", color="#EEEEEE", zorder=0)
    return figure_png(fig)


# -- the runner's hook ------------------------------------------------------------------------------
def write_pictures(shared: dict, run_dir: Path, status: str) -> list[str]:
    """Write the run's pictures into its folder; returns the names written.

    A run with tasks that ran gets `timeline.png`; a `--plan-only` run gets `plan.png` and an
    `output.md` with the plan and its Mermaid graph. Drawing never fails a run: any error is
    recorded in `shared["meta"]["pictures_error"]` and the run goes on.
    """
    from utils.run.plan_view import plan_document, plan_png
    from utils.run.runstore import atomic_write
    from utils.text import for_markdown

    written: list[str] = []
    try:
        plan, results = shared.get("plan") or {}, shared.get("results") or {}
        meta = shared.get("meta") or {}
        if status == "planned" and plan.get("tasks"):
            atomic_write(run_dir / "plan.png", plan_png(plan))
            written.append("plan.png")
            if not shared.get("document"):
                atomic_write(run_dir / "output.md", for_markdown(plan_document(plan)))
                written.append("output.md")
        elif any(isinstance(r, dict) and r.get("started") for r in results.values()):
            started = meta.get("started")
            phases = {"run_started": started, "run_ended": started + meta["elapsed_s"]} \
                if started and meta.get("elapsed_s") is not None else None
            planning = shared.get("planning") or {}
            if phases and planning.get("started") and planning.get("ended"):
                phases.update(planning_started=planning["started"], planning_ended=planning["ended"])
            workers = (shared.get("options") or {}).get("max_workers")
            llm = (shared.get("runtime") or {}).get("llm")
            offline = bool(getattr(llm, "offline", False)) or meta.get("provider") == "offline"
            atomic_write(run_dir / "timeline.png",
                         timeline_png(plan, results, workers=workers, title=str(shared.get("workflow") or ""),
                                      phases=phases, earlier=earlier_passes(run_dir, results), offline=offline,
                                      arrived=planning.get("streamed")))
            written.append("timeline.png")
    except Exception as exc:  # noqa: BLE001 - a picture is never worth a failed run
        shared.setdefault("meta", {})["pictures_error"] = f"{type(exc).__name__}: {exc}"
    return written


def earlier_passes(run_dir: Path, results: dict[str, dict]) -> list[dict]:
    """The task passes the journal recorded that the final results replaced (a review sent them back)."""
    from utils.run.journal import read_journal
    from utils.run.runstore import JOURNAL

    out = []
    for record in read_journal(run_dir / JOURNAL):
        r = record.get("result") if record.get("k") == "task" else None
        final = results.get(r.get("id")) if isinstance(r, dict) else None
        if isinstance(final, dict) and _ran(r) and r.get("started") != final.get("started"):
            out.append(r)
    return out


def lines_for(saved: dict[str, Any], width: int = 60) -> list[str]:
    """`timeline_lines` for a shared store or a loaded run.json."""
    workers = (saved.get("options") or {}).get("max_workers")
    return timeline_lines(saved.get("plan"), saved.get("results") or {}, workers=workers, width=width)
