"""The app's settings: ONE typed, frozen object built once per process from flags, environment,
config file, saved run and defaults.

Why one object: settings used to be resolved in three places with three precedence rules, and the
parsed argparse namespace was mutated and carried through the modules. Now `main.py` hands the flags
over as a plain mapping, `build_settings` resolves everything once with one rule, and every other
module reads this object (and derives a changed copy with `dataclasses.replace`, never mutates it).

Precedence, for every setting: flags > environment > config file > saved run (`--resume`) > defaults.
The model client's own settings (key, base URL, model, provider) follow the same rule in
`utils.model.settings.settings_from_env`, fed from here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from utils.app.config import ConfigFile, load_config
from utils.errors import UsageError
from utils.options import DEFAULT_OPTIONS, LIMITS, limit_problem

MAX_TOPIC_CHARS = 2000
OPTION_KEYS = ("strategy", "max_workers", "max_tasks", "max_revisions", "max_rounds", "context_budget", "model",
               "max_tokens_total", "min_score", "overlap")


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know, resolved. Derive variants with `settings.replace(...)`."""

    # what to run
    topic: str | None = None
    example: str | None = None
    workflow_file: str | None = None
    interactive: bool = False
    resume: str | None = None
    plan_only: bool = False
    # orchestration: flag > config > default (a saved run slots in under the config file: `for_resume`)
    options: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_OPTIONS))
    flag_options: Mapping[str, Any] = field(default_factory=dict)  # only those given as flags
    # model
    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    no_cache: bool = False
    stream: bool = False
    # input and output
    inputs: tuple[str, ...] = ()
    data: str | None = None
    output_dir: Path = Path("runs")
    quiet: bool = False
    json: bool = False
    verbose: bool = False
    show_calls: bool = False
    config: ConfigFile = field(default_factory=ConfigFile)
    version: str | None = None
    # every flag as parsed, read-only: for a workflow's own flags (e.g. --team, --target, --no-web)
    flags: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # a resumed run's model settings (provider, model, base URL from run.json): under the config file
    saved_model: Mapping[str, Any] = field(default_factory=dict)
    saved_key: bool = False  # the saved run sent an API key (the key itself is never saved)
    # a batch's runs share one model-call limit and token budget (utils.model.limits.CallPool)
    model_pool: Any = None

    def flag(self, name: str, default: Any = None) -> Any:
        value = self.flags.get(name)
        return default if value is None else value

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def run_options(self, saved: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The shared store's options. With a saved run: flags > config > saved > defaults."""
        if saved is None:
            return {**self.options, "plan_only": self.plan_only}
        config = {k: getattr(self.config, k) for k in OPTION_KEYS if getattr(self.config, k, None) is not None}
        opts = {**DEFAULT_OPTIONS, **dict(saved), **config, **self.flag_options}
        check_workers(opts.get("max_workers"), "run.json options.max_workers")
        return opts

    def for_resume(self, saved: Mapping[str, Any]) -> "Settings":
        """These settings for continuing `saved` (a run.json): its provider, model and base URL slot in
        under the config file, so a shell without OPENAI_BASE_URL resumes against the same server
        instead of filling the rest of the run with offline placeholders."""
        meta = saved.get("meta") if isinstance(saved.get("meta"), Mapping) else {}
        model = {k: meta[k] for k in ("provider", "model", "base_url") if isinstance(meta.get(k), str) and meta[k]}
        return self.replace(saved_model=model, saved_key=meta.get("api_key") is True)

    def llm_overrides(self, budget: int | None = None, workers: int | None = None) -> dict[str, Any]:
        """Flag values for the model client (`settings_from_env` puts them above env and config).
        `budget`/`workers`: the run's own values where they differ (a resumed run's saved options)."""
        workers = int(workers or self.options.get("max_workers") or 1)
        limit = self.config.max_concurrency or 8
        values = {"provider": self.provider, "model": self.model, "base_url": self.base_url,
                  "max_tokens_total": budget or self.options.get("max_tokens_total"),
                  "stream": self.stream or None, "cache": False if self.no_cache else None,
                  # more workers than the run-wide call limit would only queue: the limit follows them
                  "max_concurrency": max(limit, workers) if workers > limit else None}
        return {k: v for k, v in values.items() if v is not None}

    def llm_config(self) -> dict[str, Any]:
        """The config file's model settings, in the shape `settings_from_env` takes."""
        cfg = {**self.saved_model, **self.config.model_dump(exclude={"models", "prices"}, exclude_none=True)}
        cfg["prices"] = {k: v.model_dump() for k, v in self.config.prices.items()} or None
        return cfg


def check_workers(value: Any, where: str) -> None:
    """`max_workers` is within its limits (utils/options.py) wherever it comes from (flag, config, saved
    run, /workers)."""
    if value is None:
        return
    low, high = LIMITS["max_workers"]
    if isinstance(value, bool) or not isinstance(value, int) or limit_problem("max_workers", value):
        raise UsageError(f"{where} must be a whole number from {low} to {high}, got {value!r}")


def check_topic(topic: str | None, what: str = "the topic") -> str:
    """A topic (typed, a workflow's default or a saved goal) is non-empty and at most MAX_TOPIC_CHARS."""
    if topic is None:
        raise UsageError("give a topic, --example NAME, --resume RUN or --interactive (see --help)")
    topic = topic.strip()
    if not topic:
        raise UsageError(f"{what} is empty")
    if len(topic) > MAX_TOPIC_CHARS:
        raise UsageError(f"{what} is {len(topic)} characters; the limit is {MAX_TOPIC_CHARS}")
    if any("\udc80" <= ch <= "\udcff" for ch in topic):
        raise UsageError(f"{what} is not valid UTF-8 text")
    return topic


def check_conflicts(flags: Mapping[str, Any]) -> None:
    """Flags that contradict each other, or that would be silently ignored, are a usage error."""
    f = flags.get
    rules = [
        (f("json") and f("interactive"), "--json cannot be combined with --interactive"),
        (f("interactive") and f("resume"), "--interactive cannot resume a run; run: python main.py --resume RUN"),
        (f("workflow_file") and f("example"), "give --workflow-file or --example, not both"),
        (f("topic") is not None and f("example") == "all",
         "--example all runs each workflow's own topic; drop the topic, or pick one workflow with --example NAME"),
        (f("topic") is not None and f("resume"), "--resume continues the saved goal; a topic cannot be given with it"),
        (f("plan_only") and f("interactive"), "--plan-only has no effect with --interactive (plans are shown there)"),
        (f("interactive") and f("example") == "all", "--interactive works on one workflow: use --example NAME"),
        (f("json") and f("quiet"), "give --json or --quiet, not both"),
        (f("batch") and (f("topic") is not None or f("resume") or f("interactive") or f("run_plan")
                         or f("example") == "all"),
         "--batch runs the goals in its file: drop the topic, --resume, --interactive, --run-plan and --example all"),
        (not f("batch") and (f("executor") not in (None, "local") or f("ray_address") or f("batch_workers")),
         "--batch-workers, --executor and --ray-address apply to --batch FILE"),
        (f("run_plan") and (f("resume") or f("interactive") or f("plan_only") or f("topic") is not None
                            or f("example") or f("workflow_file")),
         "--run-plan runs the plan file's own workflow and goal: drop --resume, --interactive, --plan-only, "
         "--example, --workflow-file and the topic"),
    ]
    for broken, message in rules:
        if broken:
            raise UsageError(message)


def build_settings(flags: Mapping[str, Any], *, version: str | None = None) -> Settings:
    """Resolve flags (argparse's values as a mapping) + config file + defaults into one Settings."""
    check_conflicts(flags)
    check_workers(flags.get("max_workers"), "--max-workers")
    cfg = load_config(flags.get("config"))
    check_workers(cfg.max_workers, "config max_workers")
    options = dict(DEFAULT_OPTIONS)
    given = {k: flags[k] for k in OPTION_KEYS if flags.get(k) is not None}
    for key in OPTION_KEYS:
        value = given.get(key, getattr(cfg, key, None))
        if value is not None:
            options[key] = value
    options["planner_model"] = cfg.models.get("planner")
    options["reviewer_model"] = cfg.models.get("reviewer")
    options["role_models"] = {k: v for k, v in cfg.models.items() if k not in ("planner", "reviewer")}
    topic = flags.get("topic")
    if topic == "-":  # `echo topic | main.py -`: the topic is standard input, as for most commands
        import sys
        topic = sys.stdin.read()
    if topic is not None:
        topic = check_topic(topic)
    return Settings(
        topic=topic, example=flags.get("example"), workflow_file=flags.get("workflow_file"),
        interactive=bool(flags.get("interactive")), resume=flags.get("resume"),
        plan_only=bool(flags.get("plan_only")), options=options, flag_options=given,
        provider=flags.get("provider"), model=flags.get("model"), base_url=flags.get("base_url"),
        no_cache=bool(flags.get("no_cache")), stream=bool(flags.get("stream")),
        inputs=tuple(flags.get("input") or ()), data=flags.get("data"),
        output_dir=Path(flags.get("output_dir") or cfg.output_dir or "runs"),
        quiet=bool(flags.get("quiet")), json=bool(flags.get("json")), verbose=bool(flags.get("verbose")),
        show_calls=bool(flags.get("show_calls") or flags.get("verbose")), config=cfg, version=version,
        flags=MappingProxyType(dict(flags)))
