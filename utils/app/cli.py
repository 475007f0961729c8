"""What `main.py` does once flags are parsed: build the settings, run, report, exit code.

Every user-facing failure is an `OrchError` turned into one line on stderr here; with `--verbose`
the traceback follows. The process-wide concerns live here too: logging (engine logs reach stderr
only with --verbose), SIGTERM handled like Ctrl-C, and a closed stdout that never stops a run.
"""
from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import traceback
from typing import Any, Callable, Iterator, Mapping

from utils.app.settings import Settings, build_settings
from utils.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, OrchError
from utils.options import WORKFLOWS

EXIT_TERMINATED = 143  # 128 + SIGTERM, what shells expect; the run is saved and resumable like Ctrl-C
NOISY_LOGGERS = ("http", "openai", "urllib3", "asyncio", "matplotlib", "PIL")  # name prefixes


def run_cli(flags: Mapping[str, Any], *, version: str, parse_line: Callable[[list[str]], dict] | None = None) -> int:
    """Build the settings once, dispatch, and turn an `OrchError` into one line and its exit code.
    `parse_line`: the command line's parser for one line of a `--batch` file."""
    verbose = bool(flags.get("verbose"))
    configure_logging(verbose)
    with terminate_as_interrupt() as term:
        try:
            from utils.tools.web.settings import register_keys

            register_keys()  # search keys are scrubbed from every line and file, like the model's key
            settings = build_settings(flags, version=version)
            code = dispatch(settings, parse_line)
        except OrchError as exc:
            if verbose:
                traceback.print_exc()
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            if not term.fired:
                raise
            code = EXIT_INTERRUPTED
    return EXIT_TERMINATED if term.fired and code == EXIT_INTERRUPTED else code


def dispatch(settings: Settings, parse_line: Callable[[list[str]], dict] | None = None) -> int:
    if settings.flag("batch"):
        from utils.app.batch import run_batch
        return run_batch(settings, parse_line)
    if settings.interactive:
        from utils.app.interactive import run_interactive
        return run_interactive(settings)
    if settings.example == "all":
        return run_all(settings)
    return run_one(settings)


# ---------------------------------------------------------------- runs

def run_one(settings: Settings) -> int:
    """A single run: new, resumed or plan-only."""
    from utils.app.request import request_for
    from utils.app.run import make_display, run_workflow
    from utils.app.summary import json_summary

    display = make_display(settings)
    outcome = run_workflow(settings, request_for(settings, display), display)
    if settings.json:
        print(json.dumps(json_summary(outcome), indent=1))
    return outcome.exit_code


def run_all(settings: Settings) -> int:
    """`--example all`: the four workflows one after another (each with its own default topic, its
    `--data`/`--input` only where it uses them), then one table, or ONE JSON document with --json."""
    from utils.app.request import DATA_TOOLS, SOURCE_TOOLS, request_for, uses_tools, with_model
    from utils.app.run import make_display, run_workflow
    from utils.run.spec import load_spec

    rows, worst, offline_said = [], EXIT_OK, False
    # a custom server's model asked for once, not once a workflow
    settings = with_model(settings, make_display(settings, mode="json" if settings.json or settings.quiet else None))
    for name in WORKFLOWS:
        spec = load_spec(name)
        sub = settings.replace(example=name, topic=None,
                               data=settings.data if (spec.sample_data or uses_tools(spec, DATA_TOOLS)) else None,
                               inputs=settings.inputs if (spec.sample_inputs or uses_tools(spec, SOURCE_TOOLS)) else ())
        # --json/--quiet: the one document or the table rows are the summary, so the runs stay silent
        display = make_display(sub, mode="json" if settings.json or settings.quiet else None)
        try:
            outcome = run_workflow(sub, request_for(sub, display), display, show_document=False,
                                  offline_note=not offline_said)
        except OrchError as exc:  # one workflow's bad input does not stop the others
            print(f"error: {name}: {exc}", file=sys.stderr)
            rows.append({"workflow": name, "status": "failed", "exit_code": exc.exit_code, "seconds": None,
                         "calls": 0, "cached": 0, "tokens": 0, "output": None})
            worst = max(worst, EXIT_FAILED)
            continue
        t = outcome.totals
        offline_said = offline_said or outcome.info["offline"]  # the offline note once, not four times
        rows.append({"workflow": name, "status": outcome.status, "exit_code": outcome.exit_code,
                     "seconds": outcome.elapsed_s, "calls": t.get("calls", 0), "cached": t.get("cached", 0),
                     "tokens": t.get("prompt_tokens", 0) + t.get("completion_tokens", 0),
                     "output": str(outcome.document_path) if outcome.document_path else None,
                     "offline": outcome.info["offline"]})
        if outcome.exit_code == EXIT_INTERRUPTED:
            worst = EXIT_INTERRUPTED
            break
        worst = max(worst, outcome.exit_code if outcome.exit_code != EXIT_USAGE else EXIT_FAILED)
    if settings.json:
        print(json.dumps({"runs": rows, "exit_code": worst}, indent=1))
    else:
        from utils.app.render import all_table
        all_table(rows, quiet=settings.quiet)
    return worst


# ---------------------------------------------------------------- process-wide setup

class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (tests swap it), marked so a second
    `configure_logging` in the same process replaces it instead of stacking another."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        # HTTP and plotting libraries' chatter is not what --verbose is for (the `call` events are)
        self.addFilter(lambda r: r.levelno >= logging.WARNING or not r.name.startswith(NOISY_LOGGERS))

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbose: bool) -> None:
    """Engine and library logs reach stderr only with --verbose (and never the HTTP libraries'
    debug chatter, which `--verbose` replaced with the model calls themselves). Without it the
    user sees the app's own messages only: the node library logs a warning for every failed attempt,
    which the app already reports as one line."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, (_StderrHandler, logging.NullHandler)):
            root.removeHandler(handler)
    if verbose:
        root.addHandler(_StderrHandler())
        root.setLevel(logging.INFO)
    else:
        root.addHandler(logging.NullHandler())  # no handler at all would fall back to stderr
        root.setLevel(logging.CRITICAL + 1)


class _Term:
    fired = False


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[_Term]:
    """SIGTERM is handled like Ctrl-C: the same path saves the state and prints the resume hint;
    `run_cli` then exits 143 instead of 130. Restores the previous handler afterwards."""
    term = _Term()

    def on_term(signum: int, frame: Any) -> None:
        term.fired = True
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):   # asyncio.run's graceful handler (cancel the main task) or the default one
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: leave signals alone
        yield term
        return
    try:
        yield term
    finally:
        signal.signal(signal.SIGTERM, previous)
