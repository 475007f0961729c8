"""`--batch FILE`: many goals in one process, one shared model-call limit, a resumable record.

The acceptance case runs 20 goals of mixed workflows (and two bad lines) against the fake server,
which answers every structured request with a random schema-valid value (literal mode)."""
from __future__ import annotations

import asyncio
import csv
import json
import threading
from pathlib import Path

import pytest

from fakes.fake_llm import FakeLLMServer, _as_reply
from tests.helpers import clean_env, fast_config, run_main
from tests.scripted import Script, request_kind
from utils.app.batch_file import read_batch
from utils.errors import BudgetExceeded, UsageError
from utils.model.limits import AdaptiveLimit, TokenBudget

WORKFLOW_CYCLE = ("blog", "report", "analysis", "project")



def parse(argv):
    import main
    return main.parse_line(argv)


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


def test_bad_lines_are_named_and_skipped_and_values_checked_like_flags(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    path = write_lines(tmp_path / "goals.jsonl", [
        {"goal": "one", "id": "a", "example": "blog", "max_tasks": 3},
        "{not json",
        {"goal": "two", "strategy": "sideways"},
        {"goal": "three", "colour": "red"},
        "",
        {"goal": "four", "id": "a"},
        {"id": "x"},
        {"goal": "five", "data": "d.csv", "inputs": ["n1.md", "/abs/n2.md"], "no_web": True},
    ])
    goals, bad = read_batch(path, parse)
    assert [g.line for g in goals] == [1, 8]
    assert {b.line: b.error.split(" ")[0] for b in bad} == {2: "not", 3: "argument", 4: "unknown", 6: "id",
                                                           7: "no"}
    assert "sideways" in next(b.error for b in bad if b.line == 3)
    first, last = goals
    assert first.key == "id:a" and first.flags["max_tasks"] == 3 and first.flags["example"] == "blog"
    # relative paths are the batch file's; the lines' values are what the parser made of them
    assert last.flags["data"] == str(tmp_path / "d.csv") and last.flags["input"] == [str(tmp_path / "n1.md"),
                                                                                   "/abs/n2.md"]
    assert last.flags["no_web"] is True and last.key.startswith("line:")


def test_csv_batch_reads_the_goal_column_and_line_numbers(tmp_path):
    path = tmp_path / "goals.csv"
    path.write_text('goal,id,example,max_tasks\n"A post\non tea",t1,blog,2\n,t2,blog,\nCoffee,t3,,\n', encoding="utf-8")
    goals, bad = read_batch(path, parse)
    assert [(g.line, g.id, g.goal) for g in goals] == [(2, "t1", "A post\non tea"), (5, "t3", "Coffee")]
    assert [(b.line, b.error.split(" ")[0]) for b in bad] == [(4, "no")]
    (tmp_path / "nogoal.csv").write_text("topic\nx\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no 'goal' column"):
        read_batch(tmp_path / "nogoal.csv", parse)


def test_one_limit_holds_across_threads_each_with_its_own_event_loop():
    limit, lock = AdaptiveLimit(3), threading.Lock()
    seen = {"now": 0, "peak": 0}

    async def calls():
        async def one():
            await limit.acquire()
            with lock:
                seen["now"] += 1
                seen["peak"] = max(seen["peak"], seen["now"])
            await asyncio.sleep(0.002)
            with lock:
                seen["now"] -= 1
            limit.release()
        await asyncio.gather(*[one() for _ in range(20)])

    threads = [threading.Thread(target=asyncio.run, args=(calls(),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert seen["peak"] == limit.peak == 3 and limit.in_flight == 0


def test_token_budget_reserves_across_runs_and_refuses_past_the_total():
    budget = TokenBudget(3000, used=500)
    assert budget.reserve(100, 1024, 512) == 1024           # run A
    assert budget.reserve(100, 1024, 512) == 1024           # run B, in flight together with A
    with pytest.raises(BudgetExceeded, match="3000"):
        budget.reserve(100, 1024, 512)                        # 500 + 2248 held: 252 left, under 512
    budget.release(1124)
    budget.spend(300)
    assert budget.used == 800 and budget.reserved == 1124
    assert budget.reserve(100, 1024, 512) == 3000 - 800 - 1124 - 100


class ApprovingLiteralServer(FakeLLMServer):
    """Literal mode (a random schema-valid value for each structured request) but reviews, which the
    Script approves (a random score would fail the run's minimum score), and the project's work
    breakdown, whose items must refer to each other: neither is what these tests are about."""

    def _next_reply(self, request):
        if request_kind(request) == "review":
            return _as_reply(Script()(request))
        reply = super()._next_reply(request)
        if ((request.response_format or {}).get("json_schema") or {}).get("name") == "WorkBreakdown":
            value = json.loads(reply.text)  # random, but with unique ids and no references to unknown items
            for i, item in enumerate(value["work_items"]):
                item.update(id=f"w{i}", depends_on=[f"w{i - 1}"] if i else [])
            reply.text = json.dumps(value)
        return reply


def batch_lines(n: int, data: Path) -> list:
    lines: list = []
    for i in range(n):
        workflow = WORKFLOW_CYCLE[i % len(WORKFLOW_CYCLE)]
        line = {"goal": f"Goal number {i} about {workflow}", "id": f"g{i:02d}", "example": workflow}
        if workflow == "analysis":
            line["data"] = str(data)
        lines.append(line)
    lines.insert(5, "{broken")
    lines.insert(12, {"goal": "too many tasks", "max_tasks": 0})
    return lines


def run_batch_cli(tmp_path: Path, server: FakeLLMServer, *extra: str):
    config = fast_config(tmp_path / "config.yaml", max_concurrency=3)
    env = clean_env(ORCH_HOME=str(tmp_path / "home"), OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
    return run_main(["--batch", str(tmp_path / "goals.jsonl"), "--output-dir", str(tmp_path / "out"),
                     "--config", str(config), "--batch-workers", "4", "--max-workers", "3", "--max-tasks", "2",
                     "--max-revisions", "0", *extra], env, cwd=tmp_path)


def test_twenty_goals_share_one_call_limit_and_a_rerun_calls_no_model(tmp_path, monkeypatch):
    """#25's acceptance as written: 20 goals of mixed workflows and two bad lines."""
    # each run's timeline.png costs ~0.3 s of CPU (tested in tests/test_timeline.py): not this test's point
    monkeypatch.setattr("utils.run.timeline.write_pictures", lambda *a, **k: [])
    data = Path(__file__).resolve().parent.parent / "examples" / "data" / "sales.csv"
    if not data.is_file():
        data = next((Path(__file__).resolve().parent.parent / "examples").rglob("*.csv"))
    write_lines(tmp_path / "goals.jsonl", batch_lines(20, data))
    with ApprovingLiteralServer(schema_mode="literal", seed=3) as server:
        server.responder = Script()
        done = run_batch_cli(tmp_path, server, "--json")
        first_calls = len(server.requests)
        doc = json.loads(done.stdout)
        assert server.max_in_flight <= 3, server.max_in_flight  # 4 goals x 3 workers, one limit of 3
        again = run_batch_cli(tmp_path, server)
        assert len(server.requests) == first_calls, "a re-run repays no call"
    assert done.code == 1, done.explain()  # two bad lines: not every line became an ok goal
    assert "goals.jsonl:6: not a JSON object" in done.stderr and "goals.jsonl:13: argument --max-tasks" in done.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open(encoding="utf-8")))
    assert len(rows) == 20 and [r["id"] for r in rows] == [f"g{i:02d}" for i in range(20)]
    assert {r["workflow"] for r in rows} == set(WORKFLOW_CYCLE)
    assert all(r["status"] == "ok" for r in rows), [(r["id"], r["status"]) for r in rows]
    folders = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert len(folders) == 20 and {str(f) for f in folders} == {r["folder"] for r in rows}
    # the summary's figures are each run's own record
    for r in rows:
        totals = json.loads((Path(r["folder"]) / "run.json").read_text(encoding="utf-8"))["totals"]
        assert int(r["calls"]) == totals["calls"]
        assert int(r["tokens"]) == totals["prompt_tokens"] + totals["completion_tokens"]
    assert sum(int(r["calls"]) for r in rows) == first_calls
    assert doc["counts"] == {"ok": 20} and [b["line"] for b in doc["bad_lines"]] == [6, 13]
    assert "20 goals (20 ok), 20 already done before, 2 bad lines skipped" in again.stdout


def test_executor_ray_without_ray_is_one_line_saying_how_to_install_it(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    write_lines(tmp_path / "goals.jsonl", [{"goal": "tea", "example": "blog"}])
    done = run_main(["--batch", str(tmp_path / "goals.jsonl"), "--executor", "ray", "--provider", "offline",
                     "--output-dir", str(tmp_path / "out")], clean_env(ORCH_HOME=str(tmp_path / "h")), cwd=tmp_path)
    assert done.code == 2 and done.stderr.strip().splitlines() == [
        "error: --executor ray needs Ray: pip install -r requirements-ray.txt (or: pip install ray)"]
    assert not (tmp_path / "out").exists()


def test_a_rerun_drops_only_the_empty_run_folders_a_killed_driver_left(tmp_path):
    from utils.app.batch import drop_empty_runs
    out = tmp_path / "out"
    (out / "20261204-235959-blog-a-post").mkdir(parents=True)          # made, killed before its first save
    (out / "20261204-235958-blog-other").mkdir()
    (out / "20261204-235958-blog-other" / "run.json").write_text("{}")  # a run: kept
    (out / "my-notes").mkdir()                                          # the user's: kept, even empty
    assert drop_empty_runs(out) == ["20261204-235959-blog-a-post"]
    assert sorted(p.name for p in out.iterdir()) == ["20261204-235958-blog-other", "my-notes"]
    assert drop_empty_runs(tmp_path / "absent") == []
