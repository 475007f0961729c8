"""The config file: flags and environment override it, it overrides a saved run and defaults.

The config file is YAML validated by a model class, so a typo or a wrong type is one clear line.
API keys are read from the environment only, never from this file, so configs can be shared.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from utils.errors import UsageError
from utils.files import parse_user_yaml, read_user_text
from utils.options import LIMITS, MIN_SCORE_RANGE, PROVIDERS, STRATEGIES, home


MAX_CONFIG_DEPTH = 16  # settings nest two or three levels; a parser would recurse on anything deeper
MAX_CONFIG_BYTES = 1_000_000  # a config is a few dozen lines


MAX_PRICE = 1e6  # USD per 1M tokens: far above any real price, far below a cost that overflows to inf


class Price(BaseModel):
    input: float = Field(ge=0, le=MAX_PRICE, description="USD per 1M prompt tokens")
    output: float = Field(ge=0, le=MAX_PRICE, description="USD per 1M completion tokens")
    cached_input: float | None = Field(default=None, ge=0, le=MAX_PRICE, description="USD per 1M cached prompt tokens")


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: Literal[PROVIDERS] | None = None  # type: ignore[valid-type]
    model: str | None = None
    base_url: str | None = None
    strategy: Literal[STRATEGIES] | None = None  # type: ignore[valid-type]
    max_workers: int | None = Field(default=None, ge=LIMITS["max_workers"][0], le=LIMITS["max_workers"][1])
    max_tasks: int | None = Field(default=None, ge=LIMITS["max_tasks"][0], le=LIMITS["max_tasks"][1])
    max_revisions: int | None = Field(default=None, ge=LIMITS["max_revisions"][0], le=LIMITS["max_revisions"][1])
    max_rounds: int | None = Field(default=None, ge=LIMITS["max_rounds"][0], le=LIMITS["max_rounds"][1])
    context_budget: int | None = Field(default=None, ge=LIMITS["context_budget"][0], le=LIMITS["context_budget"][1])
    max_tokens_total: int | None = Field(default=None, ge=LIMITS["max_tokens_total"][0])
    min_score: float | None = Field(default=None, ge=MIN_SCORE_RANGE[0], le=MIN_SCORE_RANGE[1])
    output_dir: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    retry_deadline_s: float | None = Field(default=None, gt=0, le=3600)
    max_retries: int | None = Field(default=None, ge=0, le=20)
    backoff_base_s: float | None = Field(default=None, ge=0, le=600)
    backoff_max_s: float | None = Field(default=None, ge=0, le=3600)
    max_concurrency: int | None = Field(default=None, ge=1)
    models: dict[str, str] = Field(default_factory=dict, description="per-role models; 'planner', 'reviewer' too")
    prices: dict[str, Price] = Field(default_factory=dict)
    search: Literal["searxng", "tavily", "brave", "none"] | None = None  # web research provider (env ORCH_SEARCH)
    search_url: str | None = None                    # its endpoint (SearXNG base URL; keys only from env)
    web_timeout_s: float | None = Field(default=None, gt=0)
    web_results: int | None = Field(default=None, ge=1, le=20)


def load_config(path: str | None) -> ConfigFile:
    """The `--config` file, else `$ORCH_HOME/config.yaml` when present, else defaults."""
    file = Path(path) if path else home() / "config.yaml"
    if not path and not file.is_file():
        return ConfigFile()
    text = read_user_text(file, "config file", max_bytes=MAX_CONFIG_BYTES, missing=f"config file not found: {file}")
    raw = parse_user_yaml(text, f"config file {file}", max_depth=MAX_CONFIG_DEPTH)
    if raw is None:
        return ConfigFile()
    if not isinstance(raw, dict):
        raise UsageError(f"config file {file} must be a mapping of settings, got {type(raw).__name__}")
    try:
        return ConfigFile.model_validate(raw)
    except RecursionError:
        raise UsageError(f"config file {file} is nested too deeply") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        hint = ""
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:  # a typo: name the setting meant
            import difflib
            close = difflib.get_close_matches(str(err["loc"][0]), list(ConfigFile.model_fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"config file {file}: {where}: {err['msg']}{hint}") from None
