"""The run options in one place: workflows, strategies, defaults, limits and the home folder.

The command line's help and checks, the config file, a saved run and the interactive commands all
read these, so a value allowed in one place is allowed in all of them (a saved run used to accept
10,000 workers where the command line stopped at 256) and a default is written once.

Dependency-free on purpose (standard library only, nothing imported at module level but `os`):
`main.py --help` imports it before any heavy package, and every layer may import it.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

WORKFLOWS = ("blog", "report", "analysis", "project")
STRATEGIES = ("dependency", "static", "priority", "dynamic", "hybrid")
PROVIDERS = ("openai", "offline")

# name: (smallest, largest or None). The scheduler keeps one slot per worker, so workers are bounded
# (a typo cannot exhaust memory); the others are far above any real run, far below an overflow.
LIMITS: dict[str, tuple[int, int | None]] = {
    "max_workers": (1, 256),
    "max_tasks": (1, 100_000),
    "max_revisions": (0, 1_000),
    "max_rounds": (1, 10_000),
    "context_budget": (200, 10_000_000),  # tokens of one worker prompt: below 200 no prompt fits
    "max_tokens_total": (1, None),
}
MAX_WORKERS = LIMITS["max_workers"][1]
MIN_SCORE_RANGE = (0.0, 10.0)

DEFAULTS: dict[str, object] = {
    "strategy": STRATEGIES[0],
    "max_workers": 4,
    "max_tasks": 12,
    "max_revisions": 1,
    "max_rounds": 6,
    "context_budget": 6000,
}
BATCH_WORKERS = 4  # goals of a --batch run at once (each with its own max_workers)

# Every option a run reads, with its default: the numbers above plus what is off or unset unless asked.
DEFAULT_OPTIONS: dict[str, object] = {
    **DEFAULTS, "model": None, "planner_model": None, "reviewer_model": None, "plan_only": False,
    "max_tokens_total": None, "min_score": None,
}


def limit_problem(name: str, value: int) -> str | None:
    """Why `value` is outside the limits of option `name` ("must be at most 256, got 300"), else None."""
    low, high = LIMITS[name]
    if value < low:
        return f"must be at least {low}, got {value}"
    if high is not None and value > high:
        return f"must be at most {high}, got {value}"
    return None


def home() -> Path:
    """`$ORCH_HOME` (tests point it at a temp dir) or ~/.orchestrator: config, caches, history.
    Read on every call, so a test can redirect it per test."""
    from pathlib import Path

    return Path(os.environ.get("ORCH_HOME") or Path.home() / ".orchestrator")
