"""`python main.py --interactive`: plan, edit, run and save at a prompt.

Why a prompt: a plan is cheap and a run is not, so the user gets to look at the orchestrator's plan,
fix it (drop, add, rename, rewire tasks) or ask for another one with feedback, and only then pay for
the workers. `/run` is the one-shot path itself (`utils.app.run.run_workflow`), and a typed topic
is routed the same way as on the command line (`utils.app.request.route_topic`), so an interactive run saves,
reports and resumes exactly like `python main.py --example blog`. An edited plan is validated by `plan_problems`, the
same check a model's plan must pass, and preset in the shared store, where the orchestrator node
takes it without a model call.

Plain `input()` (with `readline` for arrow keys and history when stdin is a terminal) and `print`:
no full-screen UI, so it also works piped (`printf '/example blog\\n/run\\n' | main.py --interactive`),
which is how the tests drive it. No command ever ends the session with a traceback.
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from utils.options import STRATEGIES, home
from utils.app.render import plan_lines
from utils.app.render_plain import notice_line, retry_line, write_line
from utils.app.loop import run_closing
from utils.app.request import RunRequest, make_llm, prepare_new_run, route_topic, with_model, workflow_inputs
from utils.app.run import OFFLINE_NOTE, make_display, new_shared, run_workflow
from utils.app.settings import Settings, check_topic, check_workers
from utils.errors import OrchError, UsageError
from utils.events import Event
from utils.run import plan_edit
from utils.app.websetup import with_web
from utils.run.plan import Plan, outline, plan_problems
from utils.text import for_markdown

HISTORY_MAX = 1000

# name -> (arguments, one-line description); /help prints them in this order.
COMMANDS: dict[str, tuple[str, str]] = {
    "example": ("NAME", "choose the workflow: blog, report, analysis, project"),
    "strategy": ("NAME", "scheduling: " + ", ".join(STRATEGIES)),
    "workers": ("N", "how many workers run at once"),
    "model": ("NAME", "model for planning, workers and review"),
    "plan": ("[TOPIC]", "plan the topic (or the current one) with the orchestrator"),
    "show": ("[plan|doc]", "show the current plan, or the last result document"),
    "drop": ("ID", "remove a task (and it from other tasks' dependencies)"),
    "add": ("ID ROLE TITLE... [--after ID,ID]", "add a task, after and depending on the given tasks"),
    "rename": ("ID TITLE...", "give a task a new title"),
    "instr": ("ID TEXT...", "replace a task's instructions"),
    "deps": ("ID [ID,ID]", "set a task's dependencies (none given: clear them)"),
    "priority": ("ID N", "set a task's priority, 1 (highest) .. 5"),
    "replan": ("FEEDBACK...", "ask the orchestrator for a new plan, taking your feedback into account"),
    "run": ("", "run the current plan (Ctrl-C stops it; the run stays resumable)"),
    "save": ("[PATH]", "write the last document to PATH (it is already in its run folder)"),
    "history": ("", "list this session's runs"),
    "help": ("", "list the commands"),
    "quit": ("", "leave (Ctrl-D too)"),
}
ALIASES = {"exit": "quit", "q": "quit", "?": "help", "h": "help"}


def say(*lines: str) -> None:
    """Every line the session prints goes through here: stdout, flushed, never an encoding crash."""
    for line in lines:
        write_line(sys.stdout, str(line))


class History:
    """Input history in `$ORCH_HOME/history`, written after every line so a crash loses nothing.

    Kept by us rather than readline's own file functions: piped input never reaches readline, and
    libedit (macOS) writes a different file format, but the file should look the same everywhere.
    """

    def __init__(self, path: Path, readline: Any = None) -> None:
        self.path, self.readline, self.lines = path, readline, []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file():
                raw = path.read_text(encoding="utf-8", errors="replace").splitlines()
                self.lines = [x for x in raw if x.strip() and x != "_HiStOrY_V2_"][-HISTORY_MAX:]
        except OSError:
            self.path = None  # an unwritable home costs the history, not the session
        if readline is not None:
            if hasattr(readline, "set_auto_history"):
                readline.set_auto_history(False)
            for line in self.lines:
                readline.add_history(line)

    def add(self, line: str) -> None:
        if not line.strip() or (self.lines and self.lines[-1] == line):
            return
        self.lines = (self.lines + [line])[-HISTORY_MAX:]
        if self.readline is not None:
            self.readline.add_history(line)
        if self.path is not None:
            from utils.run.runstore import atomic_write
            try:
                atomic_write(self.path, "\n".join(self.lines) + "\n")
            except OSError:
                self.path = None


def _load_readline() -> Any:
    """GNU readline or libedit when present (arrow keys, Ctrl-R); None on builds without it."""
    try:
        import readline
    except ImportError:
        return None
    return readline


class Session:
    """The state between prompts: workflow, topic, options, current plan and this session's runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings  # frozen: /model derives a new one
        self.options = {**settings.run_options(), "plan_only": False}
        self.spec: Any = None
        self.auto_spec = False          # picked from the topic: re-picked for the next topic
        self.inputs: dict = {}
        self.topic: str | None = None
        self.plan: Plan | None = None
        self.plan_source = ""           # model, offline, user, replan (as in the contract's plan event)
        self.plan_note = ""
        self.runs: list[dict] = []      # {status, run_dir, document_path, document, artifacts}
        self.offline_said = False

    # ------------------------------------------------------------ plumbing

    def llm(self, emit) -> Any:
        """A fresh client per plan or run, so each run's totals are its own (the disk cache still
        makes repeated calls free)."""
        llm = make_llm(self.settings, emit)
        if llm.offline and not self.offline_said:
            self.offline_said = True
            say(notice_line({"level": "warn", "message": OFFLINE_NOTE}))
        return llm

    @staticmethod
    def planning_emit(event: Event) -> None:
        """While planning only retries and warnings are worth a line; the plan is shown after."""
        if event.kind == "retry":
            say(retry_line(event.data))
        elif event.kind == "notice" and event.data.get("level") == "warn":
            say(notice_line(event.data))

    def use_spec(self, spec: Any, *, auto: bool, routed: str | None = None) -> None:
        # checks --input/--data before anything is planned; a routed topic's data file is asked for
        inputs = workflow_inputs(spec, self.settings, routed=routed, ask=input)
        spec, inputs, _ = with_web(spec, inputs, self.settings)  # web roles only when web research is on
        if self.spec is not None and self.spec.name != spec.name and self.plan is not None:
            self.plan = None
            say("(plan cleared: it was made for another workflow)")
        self.spec, self.inputs, self.auto_spec = spec, inputs, auto

    def need_plan(self) -> Plan:
        if self.plan is None:
            raise UsageError("no plan yet — type a topic, or /plan")
        return self.plan

    def show_plan(self) -> None:
        plan = self.need_plan()
        say(*plan_lines(plan.model_dump(), instructions=True))
        note = f" — {self.plan_note}" if self.plan_note else ""
        say(f"  ({len(plan.tasks)} tasks · source: {self.plan_source}{note} · workflow {self.spec.name} · "
            f"strategy {self.options['strategy']})")

    # ------------------------------------------------------------ planning

    def set_topic(self, text: str) -> None:
        self.topic = check_topic(text)
        if self.spec is None or self.auto_spec:  # routed exactly as on the command line
            self.llm(self.planning_emit)  # says the offline note once, before anything else
            spec, why = route_topic(self.settings, self.topic, self.planning_emit)
            say(f"Workflow: {spec.name} ({why}; /example NAME to choose another)")
            self.use_spec(spec, auto=True, routed=self.topic)
        self.plan_topic()

    def ask_planner(self, goal_text: str) -> tuple[Plan, bool]:
        """One orchestrator pass (the plan-only graph). Returns the plan and whether it was offline."""
        from flows import build_plan_flow

        llm = self.llm(self.planning_emit)
        shared = new_shared(goal=goal_text, spec=self.spec, options={**self.options, "plan_only": True},
                            inputs=self.inputs, llm=llm, emit=self.planning_emit)
        run_closing(llm, lambda: build_plan_flow().run_async(shared))
        return Plan.model_validate(shared["plan"]), llm.offline

    def plan_topic(self) -> None:
        if self.spec is None:
            raise UsageError("choose a workflow with /example NAME, or type a topic")
        if not self.topic:
            self.topic = check_topic(self.spec.default_topic, "the workflow's default topic")
            say(f"Topic: {self.topic} (the {self.spec.name} workflow's default)")
        say(f"Planning: {self.topic} ...")
        plan, offline = self.ask_planner(self.topic)
        self.plan, self.plan_source, self.plan_note = plan, "offline" if offline else "model", ""
        self.show_plan()

    # ------------------------------------------------------------ commands

    def cmd_help(self, rest: str) -> None:
        width = max(len(f"/{n} {a}".strip()) for n, (a, _) in COMMANDS.items())
        say("Commands (any other line is the topic: it is planned at once):")
        say(*[f"  {f'/{n} {a}'.strip():<{width}}  {d}" for n, (a, d) in COMMANDS.items()])

    def cmd_example(self, rest: str) -> None:
        from utils.run.spec import load_spec, spec_names
        if not rest:
            raise UsageError(f"usage: /example NAME ({', '.join(spec_names())})")
        self.use_spec(load_spec(rest), auto=False)
        say(f"Workflow: {self.spec.name} — {self.spec.description.strip().splitlines()[0]}")
        if self.plan is None:
            say("Type a topic, or /plan for the workflow's default topic.")

    def cmd_strategy(self, rest: str) -> None:
        if rest not in STRATEGIES:
            raise UsageError(f"usage: /strategy NAME ({', '.join(STRATEGIES)})")
        self.options["strategy"] = rest
        say(f"Strategy: {rest}")

    def cmd_workers(self, rest: str) -> None:
        if not rest.isdigit():
            raise UsageError("usage: /workers N (a whole number)")
        check_workers(int(rest), "/workers N")
        self.options["max_workers"] = int(rest)
        self.settings = self.settings.replace(options={**self.settings.options, "max_workers": int(rest)})
        say(f"Workers: {rest}")

    def cmd_model(self, rest: str) -> None:
        if not rest or len(rest.split()) != 1:
            raise UsageError("usage: /model NAME")
        self.options["model"] = rest
        self.settings = self.settings.replace(model=rest)
        say(f"Model: {rest}")

    def cmd_plan(self, rest: str) -> None:
        if rest:
            self.set_topic(rest)
        else:
            self.plan_topic()

    def cmd_replan(self, rest: str) -> None:
        plan = self.need_plan()
        if not rest:
            raise UsageError("usage: /replan FEEDBACK... (what to change in the plan)")
        # The planner only sees the goal text: the previous plan and the feedback ride along in it.
        goal_text = (f"{self.topic}\n\nPrevious plan:\n{outline(plan)}\n\n"
                     f"User feedback on the previous plan:\n{rest}")
        say(f"Replanning with your feedback: {rest}")
        new, offline = self.ask_planner(goal_text)
        self.plan = new.model_copy(update={"goal": self.topic})  # workers get the topic, not the request
        self.plan_source, self.plan_note = "replan", f"feedback: {rest}"
        if offline:
            say("(offline provider: the planner cannot act on feedback, so the plan is the example plan)")
        self.show_plan()

    def cmd_show(self, rest: str) -> None:
        last = self.runs[-1] if self.runs else None
        if rest not in ("", "plan", "doc"):
            raise UsageError("usage: /show [plan|doc]")
        if rest == "doc" or (not rest and self.plan is None and last):
            if not last or not last["document"]:
                raise UsageError("no document yet — /run a plan first")
            say(last["document"].rstrip(), f"(document: {last['document_path']})")
            return
        self.show_plan()
        if last and last["document_path"]:
            say(f"  last document: {last['document_path']} (/show doc prints it)")

    def edit(self, name: str, rest: str) -> None:
        """Apply one plan edit; keep it only if the result passes the check a model's plan must pass."""
        new = plan_edit.from_command(self.need_plan(), name, rest)
        problems = plan_problems(new, self.spec.roles, self.options["max_tasks"])
        if problems:
            say("edit refused, the plan is unchanged:", *[f"  - {p}" for p in problems])
            return
        self.plan, self.plan_source = new, "user"
        self.show_plan()

    def cmd_run(self, rest: str) -> None:
        """The one run function on the preset plan; whatever happens, the run folder keeps the state."""
        plan = self.need_plan()
        display, inputs, setup = make_display(self.settings), dict(self.inputs), []
        # the same set-up as a command-line run: analysis target, project team, "no sources" said
        options = prepare_new_run(self.settings, self.spec, plan.goal, inputs,
                                  {**self.options, "plan_only": False}, display, setup)
        request = RunRequest(spec=self.spec, goal=plan.goal, inputs=inputs, options=options,
                             plan=plan.model_dump(), setup_totals=setup,
                             meta={"interactive": True, "plan_source": self.plan_source, "plan_note": self.plan_note})
        say(f"Running {len(plan.tasks)} tasks ({options['strategy']}, {options['max_workers']} workers)")
        outcome = run_workflow(self.settings, request, display, offline_note=not self.offline_said)
        self.offline_said = self.offline_said or outcome.info["offline"]
        if outcome.status == "interrupted":
            say("Run interrupted; its state is saved (resume command above). Back at the prompt.")
        self.runs.append({"status": outcome.status, "run_dir": outcome.run_dir,
                          "document_path": outcome.document_path, "document": outcome.shared.get("document"),
                          "artifacts": any(r.get("artifacts") for r in outcome.shared.get("results", {}).values())})

    def cmd_save(self, rest: str) -> None:
        from utils.run.runstore import atomic_write
        last = next((r for r in reversed(self.runs) if r["document"]), None)
        if last is None:
            raise UsageError("nothing to save yet — /run a plan first")
        if not rest:
            say(f"Saved: {last['document_path']}")
            return
        target = Path(rest).expanduser()
        if target.is_dir() or rest.endswith(("/", "\\")):
            target = target / f"{last['run_dir'].name}.md"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, for_markdown(last["document"]))
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
        extra = f" (the charts it links stay in {last['run_dir']})" if last["artifacts"] else ""
        say(f"Saved: {target}{extra}")

    def cmd_history(self, rest: str) -> None:
        if not self.runs:
            say("No runs in this session yet.")
        for i, r in enumerate(self.runs, 1):
            say(f"  {i}. {r['status']:<11} {r['run_dir']}")

    # ------------------------------------------------------------ dispatch

    def handle(self, line: str) -> bool:
        """Run one input line; False means leave."""
        if not line.startswith("/"):
            self.set_topic(line)
            return True
        name, _, rest = line[1:].partition(" ")
        name = ALIASES.get(name.lower(), name.lower())
        if name == "quit":
            return False
        if name in plan_edit.EDIT_COMMANDS:
            self.edit(name, rest)
            return True
        handler = getattr(self, f"cmd_{name}", None) if name in COMMANDS else None
        if handler is None:
            say(f"unknown command /{name} — type /help")
            return True
        handler(rest.strip())
        return True


def run_interactive(settings: Settings) -> int:
    """The prompt loop. Returns 0 when the user leaves (/quit or Ctrl-D), whatever the runs did."""
    from utils.run.spec import load_spec
    if hasattr(sys.stdin, "reconfigure"):  # one non-UTF-8 line must not break every later one
        sys.stdin.reconfigure(errors="replace")
    tty = sys.stdin.isatty()
    readline = _load_readline() if tty else None  # piped input never goes through readline
    history = History(home() / "history", readline)
    # a custom server's model asked for once, at the start: plans and runs name the one they use
    settings = with_model(settings, lambda event: say(notice_line(event.data)) if event.kind == "notice" else None)
    session = Session(settings)
    if settings.workflow_file or (settings.example and settings.example != "all"):
        session.use_spec(load_spec(settings.workflow_file or settings.example), auto=False)
    pending = [settings.topic] if settings.topic else []
    if tty:
        say("Interactive mode — type a topic to plan it, /help for commands, Ctrl-D to leave.")
    while True:
        try:
            if pending:
                line = pending.pop(0)
            else:
                prompt = f"orch[{session.spec.name if session.spec else '-'}]> " if tty else ""
                line = input(prompt)
                history.add(line.strip())
            line = line.strip()
            if line and not session.handle(line):
                return 0
        except EOFError:
            if tty:
                say("")
            return 0
        except KeyboardInterrupt:
            say("(interrupted — /quit or Ctrl-D to leave)")
        except (OrchError, ValueError) as exc:
            say(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except Exception as exc:  # a bug: report it, keep the session
            if settings.verbose:
                traceback.print_exc()
            say(f"error: {type(exc).__name__}: {exc}" + ("" if settings.verbose else " (--verbose shows details)"))
