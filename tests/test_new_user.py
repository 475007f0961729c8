"""What a new user hits (issue 24): resume without the model settings, Ctrl-C's document, a topic
routed to analysis without data, the project plan's missing producer, the team, plan-then-run, and
the smaller points. In-process against the fake server unless a signal is the point."""
from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from fakes.fake_llm import Reply
from tests.helpers import cli_env, done_ids, fast_config, only_run, read_state, run_main
from tests.scripted import Script
from tests.test_resume import SIX_SECTIONS

UNIT = {"prompt_tokens": 500, "completion_tokens": 500, "total_tokens": 1000}


def _metered(req):
    reply = Script(plans=[SIX_SECTIONS])(req)
    reply = reply if isinstance(reply, Reply) else Reply(text=reply)
    reply.usage = dict(UNIT)
    return reply


def _stopped_run(fake_llm, tmp_path: Path) -> tuple[Path, list[str], str]:
    """A blog run against the fake server stopped by its token budget; (run dir, common args, hint)."""
    fake_llm.responder = _metered
    out = tmp_path / "runs"
    common = ["--no-cache", "--output-dir", str(out), "--config", str(fast_config(tmp_path / "fast.yaml"))]
    first = run_main(["--example", "blog", "--max-workers", "1", "--max-tokens-total", "3500", *common],
                     cli_env(tmp_path / "home", fake_llm.base_url))
    assert first.code == 1, first.explain()
    hint = re.findall(r"python main\.py (--resume .*)", first.output)[0]
    return only_run(out), common, hint


def _files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


# ---------------------------------------------------------------- 1. resume keeps the model settings

def test_resume_without_model_settings_says_what_is_needed_and_changes_nothing(fake_llm, tmp_path):
    run_dir, common, hint = _stopped_run(fake_llm, tmp_path)
    before, calls = _files(run_dir), len(fake_llm.requests)
    bare = run_main([*hint.split(), *common], cli_env(tmp_path / "home", None, None))
    assert bare.code == 2, bare.explain()
    lines = [line for line in bare.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "OPENAI_API_KEY" in lines[0], bare.explain()
    assert _files(run_dir) == before, "a refused resume must not touch the run folder"
    assert len(fake_llm.requests) == calls


def test_resume_uses_the_saved_provider_base_url_and_model(fake_llm, tmp_path):
    run_dir, common, hint = _stopped_run(fake_llm, tmp_path)
    saved = read_state(run_dir)["meta"]
    assert saved["provider"] == "openai" and saved["base_url"] == fake_llm.base_url
    # the key is a secret (never saved); the server, the model and the provider come from run.json
    again = run_main([*hint.split(), *common], cli_env(tmp_path / "home", None, "sk-test"))
    assert again.code == 0, again.explain()
    state = read_state(run_dir)
    assert state["status"] == "ok" and state["meta"]["provider"] == "openai"
    assert state["meta"]["model"] == saved["model"] and state["meta"]["base_url"] == fake_llm.base_url
    assert "offline" not in (run_dir / "output.md").read_text(encoding="utf-8").lower()


# ---------------------------------------------------------------- 2. Ctrl-C and SIGTERM keep a document

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_write_output_md_with_the_finished_work(sig, fake_llm, tmp_path):
    from tests.test_lifecycle import start_blocked, stop
    from tests.test_resume import section_text

    proc, gate, run_dir = start_blocked(fake_llm, tmp_path)
    stdout, stderr = stop(proc, gate, sig)
    assert proc.returncode in (130, 143), stdout + stderr
    done = done_ids(read_state(run_dir))
    doc = (run_dir / "output.md").read_text(encoding="utf-8")
    for tid in {"t2", "t3"} & done:  # the writers that finished are in it, the held ones are not
        assert section_text(tid) in doc
    assert section_text("t4") not in doc and "interrupted" in doc.lower()
    assert str(run_dir / "output.md") in stdout + stderr


# ---------------------------------------------------------------- 5. a topic routed to analysis needs data

ANALYSIS_TOPIC = "Research the market for e-bikes in Germany: analyse the data and its trends"


def test_a_topic_routed_to_analysis_without_data_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "runs"
    done = run_main([ANALYSIS_TOPIC, "--provider", "offline", "--output-dir", str(out)],
                    cli_env(tmp_path / "home", None, None))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.code == 2 and len(lines) == 1 and "--data" in lines[0], done.explain()
    assert "Workflow: analysis" in done.stdout  # it was routed there, then stopped before planning
    assert not out.exists() or not list(out.iterdir()), "no run folder for a run that cannot start"


def test_the_demo_topic_routed_to_analysis_still_uses_the_sample(tmp_path):
    from utils.run.spec import load_spec

    out = tmp_path / "runs"
    done = run_main([load_spec("analysis").default_topic, "--provider", "offline", "--output-dir", str(out)],
                    cli_env(tmp_path / "home", None, None))
    assert done.code == 0, done.explain()
    assert Path(read_state(only_run(out))["inputs"]["data"]).name == "sales.csv"


def test_interactive_asks_for_the_data_file_of_a_topic_routed_to_analysis(tmp_path):
    from tests.test_target import shop_csv

    csv = shop_csv(tmp_path)
    out = tmp_path / "runs"
    done = run_main(["--interactive", "--output-dir", str(out), "--provider", "offline"],
                    cli_env(tmp_path / "home", None, None), stdin=f"{ANALYSIS_TOPIC}\n{csv}\n/run\n/quit\n")
    assert done.code == 0, done.explain()
    assert "data file" in done.stdout.lower(), done.stdout
    assert read_state(only_run(out))["inputs"]["data"] == str(csv), done.stdout
