"""Command line for the KayGraph orchestrator–worker app.

    python main.py --example blog
    python main.py "Create a guide to Python decorators"
    python main.py --interactive
    orch runs                     # once installed (pip install .): `orch` is `python main.py`

This module only parses flags, resolves configuration and owns the terminal: the graph lives in
`flows.py`, the nodes in `nodes.py`, everything else in `utils/`. Heavy imports (httpx, rich,
pydantic) happen after parsing, so `--help` and `--version` start fast.
"""
from __future__ import annotations

import argparse
import os
import sys

from utils.options import BATCH_WORKERS, DEFAULTS, LIMITS, MAX_WORKERS, PROVIDERS, STRATEGIES, WORKFLOWS, limit_problem

__version__ = "0.1.0"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit 2) instead of usage plus error."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"error: {message} (see --help)\n")


def whole_number(minimum: int):
    """An argparse type: a whole number of at least `minimum`, with a one-line error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def bounded(name: str):
    """An argparse type: a whole number within option `name`'s limits (utils/options.py)."""

    def parse(text: str) -> int:
        value = whole_number(LIMITS[name][0])(text)
        problem = limit_problem(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


workers = bounded("max_workers")


def score(text: str) -> float:
    """An argparse type: a review score from 0 to 10."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 10, got '{text}'") from None
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be from 0 to 10, got {text}")
    return value


# The on/off flags of "input and output", in --help order: one table instead of a line each.
OUTPUT_SWITCHES = (
    ("--quiet", "only errors and the final summary line"),
    ("--json", "print one JSON summary on stdout, nothing else"),
    ("--show-calls", "show each model call's prompt and reply on stderr"),
    ("--verbose", "--show-calls, plus tracebacks and engine logs"),
    ("--open", "open the run's report.html in a browser when it ends"),
    ("--otel", "send an OpenTelemetry trace of the run (OTLP; also on when OTEL_EXPORTER_OTLP_ENDPOINT is set; "
               "needs requirements-otel.txt)"),
    ("--otel-content", "put prompts and replies in the trace (off: never)"),
    ("--version", "show app, engine, HTTP client and python versions"),
)


def build_parser(cls: type[Parser] = Parser) -> argparse.ArgumentParser:
    prog = "orch" if os.path.basename(sys.argv[0] or "") == "orch" else "main.py"
    p = cls(prog=prog, description="Plan a task into subtasks, run them with parallel LLM workers, "
               "review and assemble the result.",
               epilog="Exit codes: 0 ok, 1 run failed or partial, 2 bad usage or input, 130 interrupted (Ctrl-C), "
                      "143 terminated (SIGTERM); both resumable.")
    what = p.add_argument_group("what to run")
    what.add_argument("topic", nargs="?", help="free-text goal; the best-fitting workflow is picked")
    what.add_argument("--example", choices=WORKFLOWS + ("all",), help="run a built-in workflow (all: the four)")
    what.add_argument("--workflow-file", metavar="PATH", help="run a workflow spec of your own (YAML)")
    what.add_argument("--interactive", action="store_true", help="plan, edit, run and save at a prompt")
    what.add_argument("--resume", metavar="RUN", help="continue a stopped run (folder or id)")
    what.add_argument("--plan-only", action="store_true", help="plan, show and save the plan (plan.yaml), then stop")
    what.add_argument("--run-plan", metavar="PATH", help="run a saved plan: a --plan-only run folder or a "
                      "(edited) plan.yaml")

    orch = p.add_argument_group("orchestration")
    orch.add_argument("--strategy", choices=STRATEGIES,
                      help=f"how tasks are scheduled (default: {DEFAULTS['strategy']})")
    orch.add_argument("--max-workers", type=workers, help=f"workers running at once, 1..{MAX_WORKERS} (default "
                      f"{DEFAULTS['max_workers']}; raises the run-wide model-call limit when above it)")
    orch.add_argument("--max-tasks", type=bounded("max_tasks"),
                      help=f"most tasks a plan may have (default {DEFAULTS['max_tasks']})")
    orch.add_argument("--max-revisions", type=bounded("max_revisions"),
                      help=f"review-and-revise rounds (default {DEFAULTS['max_revisions']})")
    orch.add_argument("--max-rounds", type=bounded("max_rounds"),
                      help=f"planning rounds for dynamic/hybrid (default {DEFAULTS['max_rounds']})")
    orch.add_argument("--context-budget", type=bounded("context_budget"),
                      help=f"token budget of one worker prompt (default {DEFAULTS['context_budget']})")
    orch.add_argument("--min-score", type=score, metavar="N", help="a final review scoring below N (0-10) ends "
                      "the run needs-work, exit 1 (default: the workflow's, 5)")
    orch.add_argument("--max-tokens-total", type=bounded("max_tokens_total"), help="stop scheduling model calls past this many tokens")

    model = p.add_argument_group("model")
    model.add_argument("--provider", choices=PROVIDERS, help="openai: any OpenAI-compatible server; "
                       "offline: no model (default: openai when a key or base URL is set)")
    model.add_argument("--model", help="model name (env ORCH_MODEL)")
    model.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (env OPENAI_BASE_URL)")
    model.add_argument("--config", metavar="PATH", help="YAML config; flags and environment override it, it "
                       "overrides a saved run and defaults")
    model.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    model.add_argument("--stream", action="store_true", help="stream model replies (shown as they arrive on a terminal)")

    io = p.add_argument_group("input and output")
    io.add_argument("--input", action="append", metavar="PATH", help="a source file for report (repeatable)")
    io.add_argument("--no-web", action="store_true", help="no web research for this run (see README: Web research)")
    io.add_argument("--data", metavar="PATH", help="CSV for analysis (default: the shipped sample)")
    io.add_argument("--start-date", metavar="YYYY-MM-DD", help="project: first working day (default: today)")
    io.add_argument("--holidays", metavar="DATE,...", help="project: days off besides weekends, Christmas and "
                    "New Year, e.g. 2026-12-24,2026-12-31")
    io.add_argument("--team", metavar="ROLE=N,...", help='project: the team, e.g. "backend=2,frontend=1,qa=1" (default: proposed)')
    io.add_argument("--target", metavar="COLUMN", help="analysis: the column to explain (default: the model chooses)")
    io.add_argument("--impute", choices=("median",), help="analysis: fill missing feature values (median plus a "
                    "missing-indicator) instead of leaving those rows out of the model")
    io.add_argument("--output-dir", metavar="DIR", help="where run folders go (default runs/)")
    for flag, text in OUTPUT_SWITCHES:
        io.add_argument(flag, action="store_true", help=text)
    io.add_argument("--completion", choices=("bash", "zsh"), help="print a shell completion script "
                    "(e.g. eval \"$(orch --completion bash)\")")

    batch = p.add_argument_group("batches of goals (README: Batches)")
    batch.add_argument("--batch", metavar="FILE", help="run every goal of a JSON Lines or CSV file, one run folder "
                       "each under --output-dir (default runs/batch-<file name>); re-running resumes it")
    batch.add_argument("--batch-workers", type=workers, help=f"goals run at once (default "
                       f"{BATCH_WORKERS}; one shared model-call limit and --max-tokens-total budget for all)")
    batch.add_argument("--executor", choices=("local", "ray"), help="local: threads in this process (default); "
                       "ray: each goal a Ray task (pip install -r requirements-ray.txt)")
    batch.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join, e.g. auto (default: start a "
                       "local Ray for the batch)")
    batch.add_argument("--ray-cpus", type=float, metavar="N", help="CPUs a goal's Ray task reserves (default 1)")
    return p


def parse_line(argv: list[str]) -> dict:
    """One batch line's options, parsed and checked by the command line's own parser (types,
    choices, ranges); a bad value raises ValueError with the parser's message."""
    return vars(build_parser(LineParser).parse_args(argv))


class LineParser(Parser):
    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        raise ValueError(message)


def version_text() -> str:
    from importlib import metadata

    from utils.engine import ENGINE_NAME, ENGINE_VERSION
    try:
        httpx_version = metadata.version("httpx")
    except metadata.PackageNotFoundError:
        httpx_version = "not installed"
    return (f"orchestrator {__version__} · engine {ENGINE_NAME} {ENGINE_VERSION} · httpx {httpx_version} · "
            f"python {sys.version.split()[0]}")


def _calls_a_model(args: argparse.Namespace) -> bool:
    """Whether this run will likely call a model (flags and environment only; a config file's
    base URL is seen later, when the client is made): then the SDK import can start now."""
    if args.provider == "offline" or os.environ.get("ORCH_PROVIDER", "").strip().lower() == "offline":
        return False
    return bool(args.provider == "openai" or args.base_url or os.environ.get("OPENAI_API_KEY", "").strip()
                or os.environ.get("OPENAI_BASE_URL", "").strip())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["runs"]:  # `orch runs [show ID]`: the run history, not a topic
        from utils.app.history import runs_command
        return runs_command(argv[1:])
    args = build_parser().parse_args(argv)
    if args.completion:
        from utils.app.completion import completion_script
        print(completion_script(build_parser(), args.completion))
        return 0
    if args.version:
        print(version_text())
        return 0
    if _calls_a_model(args):  # the SDK loads in the background while the app's own modules load
        from utils.model import preload
        preload.preload_http()
    from utils.app.cli import run_cli  # heavy imports only once we know there is work to do

    return run_cli(vars(args), version=__version__, parse_line=parse_line)  # a plain mapping: nothing downstream mutates flags


def entry() -> None:
    """The process: a stdout that survives a closed pipe, one line for a bug, and an exit that a
    second Ctrl-C cannot turn into a signal death (-2): once interrupted, the state is saved, so
    leave at once with 130 (or 143) instead of waiting for worker threads."""
    from utils.app.render_plain import SafeStdout

    verbose = "--verbose" in sys.argv
    sys.stdout, sys.stderr = SafeStdout(sys.stdout), SafeStdout(sys.stderr)
    try:
        code = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # a bug, not a user error: keep the message short unless asked
        if verbose or os.environ.get("ORCH_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --verbose for details)", file=sys.stderr)
        code = 1
    if code in (130, 143):
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
