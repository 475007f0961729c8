"""What a loaded `run.json` may contain, and which files a resumed run may read.

`run.json` is user-editable (and attackable): a resumed run must not crash on a wrong type deep
inside, nor be pointed at another file on disk. So a loaded run is validated against a schema
(one-line exit-2 error), and every file a run reads (its inputs, its workflow file) is recorded
with a sha256 at the start: on resume a file is read only if its content still matches.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from utils.errors import UsageError
from utils.options import DEFAULTS, LIMITS, STRATEGIES
from utils.run.plan import Plan
from utils.run.results import TaskResult

BUILTIN_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # a built-in workflow is a name, never a path
MAX_TOTAL = 1e15  # tokens, calls, seconds or dollars: more than any run, far below float overflow


class SavedOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    strategy: Literal[STRATEGIES] = DEFAULTS["strategy"]  # type: ignore[valid-type]
    max_workers: StrictInt = Field(DEFAULTS["max_workers"], ge=LIMITS["max_workers"][0], le=LIMITS["max_workers"][1])
    max_tasks: StrictInt = Field(DEFAULTS["max_tasks"], ge=LIMITS["max_tasks"][0], le=LIMITS["max_tasks"][1])
    max_revisions: StrictInt = Field(DEFAULTS["max_revisions"], ge=LIMITS["max_revisions"][0],
                                     le=LIMITS["max_revisions"][1])
    max_rounds: StrictInt = Field(DEFAULTS["max_rounds"], ge=LIMITS["max_rounds"][0], le=LIMITS["max_rounds"][1])
    context_budget: StrictInt = Field(DEFAULTS["context_budget"], ge=LIMITS["context_budget"][0],
                                      le=LIMITS["context_budget"][1])
    model: StrictStr | None = None
    planner_model: StrictStr | None = None
    reviewer_model: StrictStr | None = None
    plan_only: StrictBool = False
    max_tokens_total: StrictInt | None = Field(None, ge=LIMITS["max_tokens_total"][0])
    role_models: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class SavedInputs(BaseModel):
    inputs: list[StrictStr] = Field(default_factory=list)
    data: StrictStr | None = None


class RunFile(BaseModel):
    """The schema of `run.json` (fields the app reads back; others are kept as they are)."""

    model_config = ConfigDict(extra="allow")

    format: Literal["orchestrator-run/1"]
    goal: StrictStr = Field(min_length=1)
    workflow: StrictStr = Field(pattern=BUILTIN_NAME)
    workflow_file: StrictStr | None = None
    options: SavedOptions
    inputs: SavedInputs = Field(default_factory=SavedInputs)
    hashes: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    plan: Plan | None = None
    results: dict[str, TaskResult] = Field(default_factory=dict)
    reviews: list[dict[str, Any]] = Field(default_factory=list)
    revisions_done: StrictInt = 0
    rounds: StrictInt = 0
    status: StrictStr | None = None
    stopped: StrictStr | None = None
    totals: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    journal_seq: StrictInt = 0

    @field_validator("totals")
    @classmethod
    def _sane_totals(cls, totals: dict[str, Any]) -> dict[str, Any]:
        """Counts a run could really reach: 1e308 or 10**400 would overflow when carried on."""
        for name, value in totals.items():
            if isinstance(value, bool) or value is None or not isinstance(value, (int, float)):
                continue
            if not (0 <= value <= MAX_TOTAL) or value != value:
                raise ValueError(f"{name} is {str(value)[:20]}, not a count between 0 and {MAX_TOTAL:.0e}")
        return totals


def sha256_file(path: Path) -> str:
    """sha256 of a regular file. Anything else is an OSError before a byte is read: a tampered
    run.json naming /dev/zero, /dev/urandom or a FIFO would otherwise be hashed (or waited on) forever;
    the FIFO is opened without blocking so the check itself cannot hang."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        digest = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_files(inputs: dict, workflow_file: str | None) -> list[str]:
    """Every file a run reads besides the built-in workflows."""
    files = list(inputs.get("inputs") or [])
    if inputs.get("data"):
        files.append(inputs["data"])
    if workflow_file:
        files.append(workflow_file)
    return files


def file_hashes(inputs: dict, workflow_file: str | None) -> dict[str, str]:
    """sha256 of each file the run reads, recorded when it starts. A file that cannot be read is
    left out (the tool that needs it reports that), so it can never be read on resume."""
    hashes = {}
    for name in recorded_files(inputs, workflow_file):
        try:
            hashes[name] = sha256_file(Path(name))
        except OSError:
            continue
    return hashes


def check_recorded_files(state: dict, where: Path) -> None:
    """Refuse to resume when a file the run would read is not the one it recorded."""
    hashes = state.get("hashes") or {}
    for name in recorded_files(state.get("inputs") or {}, state.get("workflow_file")):
        expected = hashes.get(name)
        if expected is None:
            raise UsageError(f"--resume: {where} names {name}, which this run did not record at its start")
        try:
            actual = sha256_file(Path(name))
        except OSError as exc:
            raise UsageError(f"--resume: cannot read {name}: {exc.strerror or exc}") from None
        if actual != expected:
            raise UsageError(f"--resume: {name} has changed since the run started (sha256 differs); "
                             "restore it or start a new run")


def validate_run(state: dict, where: Path) -> dict:
    """`state` if it is a well-formed run whose files are the recorded ones, else a UsageError."""
    try:
        RunFile.model_validate(state)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"--resume: {where}: {loc}: {first['msg']}") from None
    except RecursionError:
        raise UsageError(f"--resume: {where}: nested too deeply") from None
    check_recorded_files(state, where)
    return state
