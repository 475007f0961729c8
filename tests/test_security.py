"""Security: the API key never leaks (terminal, --verbose logs, run.json, cache, error messages), run
folders named from topics or workflow names stay inside --output-dir, and files given with --input or
--data are read, never executed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes.fake_llm import Reply
from tests.scripted import Script, plan_json, request_kind, task_id
from tests.helpers import ROOT, cli_env, only_run, read_state, run_dirs, run_main

SECRET = "sk-live-ZQ7SECRETKEYmarker-9f8e7d6c5b4a"
FRAGMENT = "ZQ7SECRETKEYmarker"  # the distinctive middle: catches partial echoes too
PLAN = plan_json([("t1", "analyst", [], 1), ("t2", "writer", ["t1"]), ("t3", "writer", ["t1"])], goal="g")


def leaks(tmp_path: Path, *texts: str) -> list[str]:
    """Every place (output text or file under tmp_path) that contains the secret or its fragment."""
    found = [f"output #{i}" for i, t in enumerate(texts) if FRAGMENT in t]
    for path in tmp_path.rglob("*"):
        if path.is_file() and FRAGMENT.encode() in path.read_bytes():
            found.append(str(path.relative_to(tmp_path)))
    return found


def test_the_api_key_never_appears_anywhere(fake_llm, tmp_path):
    echo = f"Incorrect API key provided: {SECRET}. You can find your API key at https://example.invalid"
    mode = {"name": "ok"}
    script = Script(plans=[PLAN], worker=lambda tid, req: f"## Section {tid}\n\nText for {tid}.")

    def responder(req):
        assert req.headers.get("authorization") == f"Bearer {SECRET}"  # it is really sent, to the server only
        if mode["name"] == "401":
            return Reply(status=401, error_message=echo)
        if mode["name"] == "echoing-errors" and request_kind(req) == "worker":
            # servers that quote the key back in their errors, in every way we map them
            return {"t1": Reply(status=500, error_message=echo), "t2": Reply(status=400, error_message=echo),
                    "t3": Reply(status=403, error_message=echo)}[task_id(req)]
        return script(req)

    fake_llm.responder = responder
    env = cli_env(tmp_path / "home", fake_llm.base_url, key=SECRET)
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("backoff_base_s: 0.001\nbackoff_max_s: 0.01\nmax_retries: 1\n")
    outputs = []
    runs = [("ok", ["--example", "blog"], 0),                     # writes the cache under ORCH_HOME
            ("ok", ["--example", "blog", "--verbose"], 0),        # served from the cache, debug logs on
            ("ok", ["--example", "blog", "--json", "--no-cache"], 0),
            ("401", ["--example", "blog", "--verbose", "--no-cache"], 1),
            ("echoing-errors", ["--example", "blog", "--verbose", "--no-cache", "--max-revisions", "0"], 1),
            ("echoing-errors", ["--example", "blog", "--quiet", "--no-cache"], 1)]
    for name, args, code in runs:
        mode["name"] = name
        done = run_main([*args, "--output-dir", str(tmp_path / "runs"), "--config", str(cfg)], env)
        assert done.code == code, done.explain()
        outputs += [done.stdout, done.stderr]
    assert "authentication failed" in outputs[7]
    assert "error: planning: authentication failed" in outputs[7], "--verbose output should be there to check"
    assert "HTTP Request" not in outputs[3] + outputs[7], "--verbose shows model calls, not HTTP-library logs"
    assert list((tmp_path / "home" / "cache").rglob("*.json")), "the cache should have been written"
    assert len(run_dirs(tmp_path / "runs")) == len(runs)
    assert leaks(tmp_path, *outputs) == []


@pytest.mark.parametrize("topic", ["../../etc/passwd x", "/etc/cron.d/evil", "..", "a/../../b\\..\\c",
                                   "~root/.ssh/authorized_keys", "\u202e../../x", "C:\\Windows\\evil"])
def test_run_folders_from_topics_stay_inside_the_output_dir(tmp_path, topic):
    out = tmp_path / "nested" / "runs"
    done = run_main([topic, "--example", "blog", "--provider", "offline", "--output-dir", str(out)],
                    cli_env(tmp_path / "home", None), cwd=tmp_path)
    assert done.code == 0, done.explain()
    run_dir = only_run(out)
    assert run_dir.resolve().parent == out.resolve()
    assert set(p.name for p in tmp_path.iterdir()) <= {"nested", "home"}
    assert read_state(run_dir)["goal"] == topic.strip()


def test_a_workflow_name_cannot_escape_the_output_dir_either(tmp_path):
    spec = (ROOT / "examples" / "blog.yaml").read_text(encoding="utf-8")
    evil = tmp_path / "evil.yaml"
    evil.write_text(spec.replace("name: blog", "name: ../../../escaped", 1), encoding="utf-8")
    out = tmp_path / "runs"
    done = run_main(["--workflow-file", str(evil), "--provider", "offline", "--output-dir", str(out)],
                    cli_env(tmp_path / "home", None), cwd=tmp_path)
    assert done.code == 0, done.explain()
    assert only_run(out).resolve().parent == out.resolve()
    assert not list(tmp_path.parent.glob("escaped*")) and not list(tmp_path.glob("escaped*"))


PAYLOADS = {
    "notes.md": "# Notes\n\n$(touch {marker}-1)\n\n`touch {marker}-2`\n\nRevenue grew 12% in 2024.\n",
    "script.txt": "import os\nos.system('touch {marker}-3')\n__import__('os').system('touch {marker}-4')\n",
    "data.json": '{{"cmd": "$(touch {marker}-5)", "value": 3}}',
    "evil.py": "import os\nos.system('touch {marker}-6')\n",
}


def test_input_and_data_files_are_read_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    files = {}
    for name, text in PAYLOADS.items():
        files[name] = tmp_path / name
        files[name].write_text(text.format(marker=marker), encoding="utf-8")
    csv = tmp_path / "data.csv"
    csv.write_text(f"region,sales,note\nnorth,10,$(touch {marker}-7)\nsouth,12,\"=cmd|' /C touch {marker}-8'!A0\"\n"
                   f"east,9,`touch {marker}-9`\n", encoding="utf-8")
    env = cli_env(tmp_path / "home", None)
    out = ["--output-dir", str(tmp_path / "runs"), "--provider", "offline"]
    report = run_main(["--example", "report", *[a for n in ("notes.md", "script.txt", "data.json")
                                                for a in ("--input", str(files[n]))], *out], env, cwd=tmp_path)
    assert report.code == 0, report.explain()
    analysis = run_main(["--example", "analysis", "--data", str(csv), *out], env, cwd=tmp_path)
    assert analysis.code in (0, 1), analysis.explain()  # the tools may dislike the note column; never run it
    python = run_main(["--example", "report", "--input", str(files["evil.py"]), *out], env, cwd=tmp_path)
    assert python.code == 2 and "unsupported source type .py" in python.stderr, python.explain()
    created = [p for p in tmp_path.rglob("pwned*")] + [p for p in ROOT.rglob("pwned*")]
    assert created == [], created
    first_report = sorted(p for p in (tmp_path / "runs").iterdir() if "-report-" in p.name)[0]
    state = read_state(first_report)
    assert [Path(p).name for p in state["inputs"]["inputs"]] == ["notes.md", "script.txt", "data.json"]
    assert json.loads(files["data.json"].read_text())["value"] == 3  # the files themselves are untouched
