"""What the app writes under hostile replies and tampered state (issue 27): one scrub of every
configured secret in every file and line, files neutralised like the terminal, valid UTF-8 from any
source, a full disk that stops the run at once, and tampered run.json / workflow files refused.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from fakes.fake_llm import Reply
from tests.helpers import ROOT, cli_env, only_run, read_state, run_main, run_process
from tests.scripted import Script, plan_json, request_kind

SECRET = "sk-live-ZQ7SECRETKEYmarker-9f8e7d6c5b4a"
SEARCH_SECRET = "tvly-SEARCHKEYmarker-0a1b2c3d"
PLAN = plan_json([("t1", "analyst", []), ("t2", "writer", ["t1"])], goal="g")


def files_with(root: Path, *needles: bytes) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
            and any(n in p.read_bytes() for n in needles)]


def run(tmp_path: Path, fake_llm, *args: str, key: str = SECRET, **env: str):
    return run_main(["--example", "blog", "--output-dir", str(tmp_path / "runs"), "--max-revisions", "0", *args],
                    cli_env(tmp_path / "home", fake_llm.base_url, key=key, **env))


# ---------------------------------------------------------------- 1. secrets

def test_a_key_echoed_by_the_model_is_in_no_file_and_no_line(fake_llm, tmp_path):
    echo = (f"My key is {SECRET}; header Authorization: Bearer {SECRET}; search key {SEARCH_SECRET}; "
            "another Bearer Zx9TOKENmarker77.")
    fake_llm.responder = Script(plans=[PLAN], worker=lambda tid, req: f"## {tid}\n\n{echo}",
                                cohesion={"title": f"Title {SECRET}", "meta_description": echo,
                                          "introduction": echo, "transitions": {}})
    done = run(tmp_path, fake_llm, TAVILY_API_KEY=SEARCH_SECRET)
    assert done.code == 0, done.explain()
    assert "***" in (only_run(tmp_path / "runs") / "output.md").read_text(encoding="utf-8")
    needles = (b"ZQ7SECRETKEYmarker", b"SEARCHKEYmarker", b"Zx9TOKENmarker")
    assert files_with(tmp_path, *needles) == []  # output.md, run.json, journal, calls, cache
    assert not any(n.decode() in done.output for n in needles)


# ---------------------------------------------------------------- 5. control characters, HTML, links

def test_model_titles_and_text_reach_files_neutralised(fake_llm, tmp_path):
    nasty = "Ti\x1b]0;pwned\x07t\x00le\x9b2J \u202eevil"
    body = ('Intro <script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) '
            '[ok](https://example.org/a) ![x](data:text/html;base64,AAAA) `<kept in code>`')
    plan = plan_json([("t1", "analyst", []), ("t2", "writer", ["t1"])], goal="g")
    plan["tasks"][0]["title"] = nasty
    fake_llm.responder = Script(plans=[plan], worker=lambda tid, req: f"## {nasty}\n\n{body}",
                                cohesion={"title": nasty, "meta_description": nasty, "introduction": body,
                                          "transitions": {}})
    done = run(tmp_path, fake_llm)
    assert done.code == 0, done.explain()
    doc = (only_run(tmp_path / "runs") / "output.md").read_text(encoding="utf-8")
    for bad in ("\x1b", "\x07", "\x00", "\x9b", "\u202e", "<script", "onerror", "javascript:", "data:text"):
        assert bad not in doc, bad
    assert "[ok](https://example.org/a)" in doc and "click" in doc and "`<kept in code>`" in doc
    assert "\x1b" not in done.stderr and "Glyph" not in done.stderr  # timeline.png labels too
    done = run(tmp_path, fake_llm, "--plan-only", "--no-cache")
    plan_doc = sorted((tmp_path / "runs").glob("*/output.md"))[-1].read_text(encoding="utf-8")
    assert "Ti]0;pwnedtle" in plan_doc.replace("\u202e", "") and "\x1b" not in plan_doc and "\u202e" not in plan_doc


# ---------------------------------------------------------------- 2. surrogates, crashes

def test_lone_surrogates_never_make_a_write_raise(tmp_path):
    from utils.model.cache import ResponseCache
    from utils.run.runstore import RunStore

    cache = ResponseCache(tmp_path)
    cache.put("ab" * 32, model="m", text="paid \ud800 answer", prompt_tokens=1, completion_tokens=1)
    assert cache.get("ab" * 32)["text"] == "paid \ufffd answer"
    store = RunStore(tmp_path)
    assert store.write_document("doc \udfff end").read_text(encoding="utf-8") == "doc \ufffd end"


def test_a_surrogate_in_saved_state_is_replaced_where_it_enters(fake_llm, tmp_path, monkeypatch):
    # two runs' timeline.png (~0.3 s each, tests/test_timeline.py) draw no task output: not this test's point
    monkeypatch.setattr("utils.run.timeline.write_pictures", lambda *a, **k: [])
    fake_llm.responder = Script(plans=[PLAN])
    assert run(tmp_path, fake_llm).code == 0
    run_dir = only_run(tmp_path / "runs")
    state = read_state(run_dir)
    state["results"]["t2"]["output"] = "Saved \ud800 text."
    state.update(status="crashed", document=None)
    (run_dir / "run.json").write_text(json.dumps(state), encoding="utf-8")  # ascii: the escape "\ud800"
    (run_dir / "journal.jsonl").unlink()
    before = len(fake_llm.requests)
    done = run_main(["--resume", str(run_dir), "--no-cache"], cli_env(tmp_path / "home", fake_llm.base_url, key=SECRET))
    assert done.code == 0, done.explain()
    assert "header value" not in done.output
    assert len(fake_llm.requests) > before  # the review and cohesion calls were sent, with valid text
    assert "Saved \ufffd text." in (run_dir / "output.md").read_text(encoding="utf-8")
    assert read_state(run_dir)["status"] == "ok"


def test_a_lone_surrogate_in_a_reply_reaches_review_and_cohesion_as_valid_text(fake_llm, tmp_path):
    # the fake server sends JSON with ensure_ascii: the section arrives as the escape "\ud800"
    fake_llm.responder = Script(plans=[PLAN], worker=lambda tid, req: f"## Part {tid}\n\nText \ud800 here.")
    done = run(tmp_path, fake_llm)
    assert done.code == 0, done.explain()
    assert "header value" not in done.output and "not valid Unicode" not in done.output
    later = [r for r in fake_llm.requests if request_kind(r) in ("review", "cohesion")]
    assert {request_kind(r) for r in later} == {"review", "cohesion"}
    assert all("Text \ufffd here" in json.dumps(r.messages, ensure_ascii=False) for r in later)
    assert "Text \ufffd here" in (only_run(tmp_path / "runs") / "output.md").read_text(encoding="utf-8")


def test_only_a_header_that_cannot_be_encoded_is_called_one():
    from utils.model.client import LLMSettings
    from utils.model.transport import Transport

    transport = Transport(LLMSettings(provider="openai", base_url="http://127.0.0.1:9/v1", api_key="k"))
    body = transport._sdk_error(UnicodeEncodeError("utf-8", "a \ud800", 2, 3, "surrogates not allowed"), "m")
    header = transport._sdk_error(UnicodeEncodeError("ascii", "k\u00e9y", 1, 2, "ordinal not in range(128)"), "m")
    assert "header value" not in str(body) and "not valid Unicode (surrogates not allowed)" in str(body)
    assert "a header value (the API key?)" in str(header)


def test_a_bug_writing_the_document_is_a_crash_and_resume_pays_nothing_twice(fake_llm, tmp_path, monkeypatch):
    import utils.run.runstore as runstore

    fake_llm.responder = Script(plans=[PLAN])
    real = runstore.for_markdown
    monkeypatch.setattr(runstore, "for_markdown", lambda text: (_ for _ in ()).throw(RuntimeError("boom")))
    done = run(tmp_path, fake_llm)
    assert done.code == 1 and "boom" in done.stderr, done.explain()
    run_dir = only_run(tmp_path / "runs")
    assert read_state(run_dir)["status"] == "crashed"
    monkeypatch.setattr(runstore, "for_markdown", real)
    paid = len(fake_llm.requests)
    done = run_main(["--resume", str(run_dir)], cli_env(tmp_path / "home", fake_llm.base_url, key=SECRET))
    assert done.code == 0, done.explain()
    assert [request_kind(r) for r in fake_llm.requests[paid:]] == []  # review and cohesion: from the cache
    assert read_state(run_dir)["status"] == "ok" and (run_dir / "output.md").is_file()


# ---------------------------------------------------------------- 8. a full disk

def _full_journal(monkeypatch, after: int) -> None:
    """ENOSPC for every journal line after the first `after` (run.json, being small, still fits)."""
    from utils.run import journal

    real, written = journal.JournalWriter._handle, Counter()

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            written["n"] += 1
            if written["n"] > after:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(text)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def handle(self, path):
        fh = real(self, path)
        return Full(fh) if path.name == "journal.jsonl" else fh

    monkeypatch.setattr(journal.JournalWriter, "_handle", handle)


def test_a_full_disk_stops_the_run_at_once_and_a_resume_elsewhere_pays_nothing_twice(fake_llm, tmp_path, monkeypatch):
    fake_llm.responder = Script(plans=[PLAN])
    _full_journal(monkeypatch, after=3)
    started = time.monotonic()
    done = run(tmp_path, fake_llm)
    assert time.monotonic() - started < 20  # not the 60 s wait for a journal that will never be written
    run_dir = only_run(tmp_path / "runs")
    lines = done.stderr.strip().splitlines()
    assert done.code == 1 and lines[-1].startswith(f"error: cannot write to the run folder {run_dir}"), done.explain()
    assert "No space left on device" in lines[-1] and "KiB free" in lines[-1]
    assert "unexpected" not in done.stderr and "Traceback" not in done.stderr
    assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["status"] == "crashed"
    monkeypatch.undo()
    elsewhere = tmp_path / "elsewhere" / run_dir.name
    shutil.copytree(run_dir, elsewhere)
    done = run_main(["--resume", str(elsewhere)], cli_env(tmp_path / "home", fake_llm.base_url, key=SECRET))
    assert done.code == 0, done.explain()
    asked = Counter(json.dumps(r.messages) for r in fake_llm.requests)
    assert max(asked.values()) == 1, "a request was paid for twice"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_real_16k_tmpfs_is_a_one_line_error(fake_llm, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        fake_llm.responder = Script(plans=[PLAN], worker=lambda tid, req: f"## {tid}\n\n" + "long text " * 2000)
        started = time.monotonic()
        done = run_main(["--example", "blog", "--output-dir", str(disk), "--max-revisions", "0"],
                        cli_env(tmp_path / "home", fake_llm.base_url, key=SECRET))
        assert time.monotonic() - started < 20
        assert done.code == 1 and "error: cannot write to the run folder" in done.stderr, done.explain()
        assert "unexpected" not in done.stderr
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ---------------------------------------------------------------- 3, 4, 9. tampered run.json and workflow files

def saved_run(tmp_path: Path, **over) -> Path:
    run_dir = tmp_path / "runs" / "tampered"
    run_dir.mkdir(parents=True)
    state = {"format": "orchestrator-run/1", "goal": "g", "workflow": "blog", "status": "crashed",
             "options": {"strategy": "dependency"}, **over}
    (run_dir / "run.json").write_text(json.dumps(state), encoding="utf-8")
    return run_dir


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_a_run_json_naming_a_device_or_a_fifo_is_refused_not_read(tmp_path, kind):
    name = kind
    if kind == "fifo":
        name = str(tmp_path / "pipe")
        os.mkfifo(name)
    run_dir = saved_run(tmp_path, inputs={"inputs": [name]}, hashes={name: "0" * 64})
    done = run_process(["--resume", str(run_dir), "--provider", "offline"], cli_env(tmp_path / "home", None),
                       timeout=30)
    assert done.code == 2 and "not a regular file" in done.stderr, done.explain()


@pytest.mark.parametrize("value", ["1e308", "1" + "0" * 400, "-5"])
def test_absurd_saved_totals_are_refused(tmp_path, value):
    run_dir = saved_run(tmp_path)
    text = (run_dir / "run.json").read_text(encoding="utf-8")
    (run_dir / "run.json").write_text(text[:-1] + f', "totals": {{"prompt_tokens": {value}, "seconds": {value}}}}}',
                                      encoding="utf-8")
    done = run_main(["--resume", str(run_dir), "--provider", "offline"], cli_env(tmp_path / "home", None))
    assert done.code == 2 and "totals" in done.stderr and "unexpected" not in done.stderr, done.explain()


def test_a_run_json_too_big_to_be_ours_is_refused_before_reading(tmp_path, monkeypatch):
    import utils.run.runstore as runstore

    run_dir = saved_run(tmp_path, results={"t1": {"id": "t1", "output": "x" * 5000}})
    monkeypatch.setattr(runstore, "MAX_RUN_BYTES", 4000)
    done = run_main(["--resume", str(run_dir), "--provider", "offline"], cli_env(tmp_path / "home", None))
    assert done.code == 2 and "is over" in done.stderr, done.explain()


def test_sample_files_stay_inside_the_workflow_folder(tmp_path):
    secret = tmp_path / "elsewhere" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("a,b\n1,2\n", encoding="utf-8")
    spec = (ROOT / "examples" / "analysis.yaml").read_text(encoding="utf-8")
    folder = tmp_path / "specs" / "deep"
    folder.mkdir(parents=True)
    evil = folder / "evil.yaml"
    evil.write_text(spec.replace("sample_data: data/sales.csv", "sample_data: ../../elsewhere/secret.csv"),
                    encoding="utf-8")
    done = run_main(["--workflow-file", str(evil), "--provider", "offline", "--output-dir", str(tmp_path / "runs")],
                    cli_env(tmp_path / "home", None))
    assert done.code == 2 and "outside the workflow's folder" in done.stderr, done.explain()


def test_huge_prices_are_refused_and_run_json_stays_strict_json(fake_llm, tmp_path):
    fake_llm.responder = Script(plans=[PLAN])
    cfg = tmp_path / "prices.yaml"
    cfg.write_text("prices:\n  gpt-4o-mini: {input: 1e308, output: 1e308}\n", encoding="utf-8")
    done = run(tmp_path, fake_llm, "--config", str(cfg))
    assert done.code == 2 and "prices" in done.stderr, done.explain()
    from utils.text import json_text

    strict = json_text({"cost_usd": 1e308 * 10, "calls": 2})
    assert json.loads(strict, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}")) == {"cost_usd": None,
                                                                                                  "calls": 2}
