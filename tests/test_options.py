"""One source for options: workflows, strategies, defaults, limits and the home folder live in
utils/options.py, and every place that takes an option (flags, config file, saved run, /commands)
applies the same limits."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

import main as app
from utils.errors import UsageError
from utils.options import DEFAULTS, LIMITS, MAX_WORKERS, STRATEGIES, WORKFLOWS, home

ROOT = Path(__file__).resolve().parents[1]
OPTION = r"(max_workers|max_tasks|max_revisions|max_rounds|context_budget)"
# What only utils/options.py may write: each pattern is a re-declaration of a list, default or limit.
REDECLARED = {
    "the strategy list": r"""["']dependency["'],\s*["']static["']""",
    "the workflow list": r"""["']blog["'],\s*["']report["'],\s*["']analysis["']""",
    "the provider list": r"""["']openai["'],\s*["']offline["']\)""",
    "the home folder": r"""environ(\.get)?\s*[(\[]\s*["']ORCH_HOME|["']\.orchestrator["']""",
    "MAX_WORKERS": r"\bMAX_WORKERS\s*=",
    "a default in a mapping": rf"""["']{OPTION}["']\s*:\s*\d""",
    "a default or limit in a Field": rf"\b{OPTION}\b[^=\n]*=\s*Field\((\s*\d|[^\n]*\b(ge|le|default)=\d)",
    "a default in help text": r"--(max-workers|max-tasks|max-revisions|max-rounds|context-budget|batch-workers)\b.*"
                              r"\(default \d",
}


def product_files() -> list[Path]:
    files = [ROOT / "main.py", ROOT / "flows.py", ROOT / "nodes.py", *sorted((ROOT / "utils").rglob("*.py"))]
    return [f for f in files if f.name != "options.py" or f.parent.name != "utils"]


def test_no_product_module_re_declares_an_option_list_default_or_limit():
    found = []
    for file in product_files():
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{file.relative_to(ROOT)}:{n}: {what}: {line.strip()}"
                      for what, pattern in REDECLARED.items() if re.search(pattern, line)]
    assert found == []


def test_the_grep_catches_what_it_is_for():
    """The patterns fire on the re-declarations they were written against (each was in the code once)."""
    samples = ['STRATEGIES = ("dependency", "static", "priority")', "MAX_WORKERS = 256",
               'return Path(os.environ.get("ORCH_HOME") or Path.home() / ".orchestrator")',
               '"strategy": "dependency", "max_workers": 4, "max_tasks": 12,',
               "    max_workers: StrictInt = Field(4, ge=1, le=10_000)",
               "    context_budget: int | None = Field(default=None, ge=200)",
               'orch.add_argument("--max-tasks", type=positive_int, help="most tasks a plan may have (default 12)")']
    for sample in samples:
        assert any(re.search(p, sample) for p in REDECLARED.values()), sample


def test_help_shows_the_defaults_and_limits_of_the_module():
    text = " ".join(app.build_parser().format_help().split())
    assert f"1..{MAX_WORKERS} (default {DEFAULTS['max_workers']};" in text
    for flag, key in [("--max-tasks", "max_tasks"), ("--max-revisions", "max_revisions"),
                      ("--max-rounds", "max_rounds"), ("--context-budget", "context_budget")]:
        assert re.search(rf"{flag} [A-Z_]+ [a-z][^(]*\(default {DEFAULTS[key]}\)", text), flag
    assert "{" + ",".join(STRATEGIES) + "}" in text and "{" + ",".join(WORKFLOWS) + ",all}" in text


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_flags_config_and_saved_runs_share_one_set_of_limits(name, tmp_path):
    from utils.app.config import ConfigFile
    from utils.run.runfile import SavedOptions

    low, high = LIMITS[name]
    flag = "--" + name.replace("_", "-")
    for value, ok in [(low, True), (low - 1, False)] + ([(high, True), (high + 1, False)] if high else []):
        parsed = None
        try:
            parsed = app.parse_line([flag, str(value)])[name]
        except ValueError:
            pass
        assert (parsed == value) is ok, (flag, value)
        for model in (ConfigFile, SavedOptions):
            try:
                model.model_validate({name: value})
                accepted = True
            except ValidationError:
                accepted = False
            assert accepted is ok, (model.__name__, name, value)


def test_workers_beyond_the_limit_are_refused_in_a_saved_run_and_at_the_prompt():
    from utils.app.settings import check_workers
    from utils.run.runfile import SavedOptions

    with pytest.raises(ValidationError):
        SavedOptions.model_validate({"max_workers": 10_000})  # a saved run used to allow 10,000
    with pytest.raises(UsageError, match=f"from 1 to {MAX_WORKERS}"):
        check_workers(MAX_WORKERS + 1, "/workers N")


def test_home_follows_orch_home_on_every_call(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "one"))
    assert home() == tmp_path / "one"
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "two"))
    from utils.model.cache import ResponseCache
    from utils.tools.web.cache import web_home
    assert ResponseCache().root == tmp_path / "two" / "cache" and web_home() == tmp_path / "two" / "web"
    monkeypatch.delenv("ORCH_HOME")
    assert home() == Path.home() / ".orchestrator"
