"""Peak memory (RSS) of the process under hostile inputs (issue 27): each case runs in a child process
of its own and reports its `ru_maxrss`, beside a child that only imports the same modules.

Cases (the servers are fakes/fake_web.py on 127.0.0.1; sizes are the issue's):
- page bomb: a research task fetching a page of 4 GB of zeros sent as `Content-Encoding: gzip, gzip`
  (about 4 KB on the wire); page cap 5 MB;
- search bomb: the same body as the search endpoint's JSON answer;
- search 400 MB: a search endpoint streaming 400 MB of valid JSON; search cap 2 MB;
- resume 50 MB: `--resume` (offline model) of a run whose run.json holds one 50 MB task output.
Measures, asserts nothing; exits non-zero only if a case did not end the expected way.

    python bench/bench_memory.py            (about a minute: building the 4 GB bomb takes the most)
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BOMB_BYTES = 4_000_000_000
SEARCH_BYTES = 400_000_000
OUTPUT_BYTES = 50_000_000


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def child(case: str, arg: str) -> None:
    """One case in this (child) process; prints `peak_mb result`."""
    if case == "baseline":
        import utils.app.cli  # noqa: F401 - the app's own imports, for comparison
        from utils.tools import ToolInput, run_tool  # noqa: F401
        import httpx  # noqa: F401
        print(f"{peak_mb():.0f} imports only")
        return
    if case == "resume":
        import main
        code = main.main(["--resume", arg, "--quiet"])
        print(f"{peak_mb():.0f} exit {code}")
        return
    from utils.tools import ToolInput, run_tool
    from utils.tools.web.settings import resolve_web

    base, path = arg.split(" ")
    env = {"ORCH_SEARCH": "searxng", "SEARXNG_URL": base + ("/searxng" if case == "page" else path),
           "ORCH_WEB_TIMEOUT": "30", "ORCH_WEB_ALLOW_PRIVATE": "1"}
    web = resolve_web(no_web=False, no_cache=True, config={}, env=env)
    inp = ToolInput(task={"id": "q1", "title": "Research", "instructions": "battery"}, data_path=None,
                    input_paths=[], deps={}, params={}, goal="goal", web=web)
    res = run_tool("web_research", inp).data["web"]
    outcome = res.get("search_error") or ",".join(p["status"] for p in res["pages"])
    print(f"{peak_mb():.0f} {outcome}")


def run_child(case: str, arg: str, env: dict) -> tuple[float, str, float]:
    started = time.monotonic()
    out = subprocess.run([sys.executable, __file__, "--child", case, arg], capture_output=True, text=True,
                         env=env, timeout=600)
    line = (out.stdout.strip().splitlines() or ["0 (no output) " + out.stderr[-300:]])[-1]
    mb, _, outcome = line.partition(" ")
    return float(mb), outcome, time.monotonic() - started


def fifty_mb_run(home: Path, env: dict) -> Path:
    """A finished offline blog run, then one task output made 50 MB and the run marked crashed."""
    runs = home / "runs"
    subprocess.run([sys.executable, str(ROOT / "main.py"), "--example", "blog", "--provider", "offline",
                    "--output-dir", str(runs), "--quiet"], env=env, check=True, capture_output=True)
    run_dir = next(runs.iterdir())
    state = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    first = next(iter(state["results"]))
    state["results"][first]["output"] = "word " * (OUTPUT_BYTES // 5)
    state["status"] = "crashed"
    (run_dir / "run.json").write_text(json.dumps(state), encoding="utf-8")
    (run_dir / "journal.jsonl").unlink(missing_ok=True)
    return run_dir


def main() -> int:
    from fakes.fake_web import FakeWeb, gzip_bomb

    home = Path(tempfile.mkdtemp(prefix="orch-bench-mem-"))
    env = {**os.environ, "ORCH_HOME": str(home / "home"), "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ORCH_MODEL", "ORCH_PROVIDER"):
        env.pop(name, None)
    web = FakeWeb().start()
    try:
        t0 = time.monotonic()
        web.bomb_bytes, web.huge_search_bytes = BOMB_BYTES, SEARCH_BYTES
        size = len(gzip_bomb(BOMB_BYTES))
        print(f"bomb: {BOMB_BYTES / 1e9:.0f} GB of zeros -> {size:,} bytes as 'gzip, gzip' "
              f"(built in {time.monotonic() - t0:.0f} s)")
        web.RESULT_PATHS = ("/gzip-bomb",)
        cases = [("baseline", "imports", "-", "imports only"),
                 ("page", "page bomb (4 GB decoded)", f"{web.base} /gzip-bomb", "too large"),
                 ("search", "search bomb (4 GB decoded)", f"{web.base} /bomb-search", "over"),
                 ("search", "search 400 MB JSON", f"{web.base} /huge-search", "over"),
                 ("resume", "resume, 50 MB task output", str(fifty_mb_run(home, env)), "exit 0")]
        print(f"\n{'case':<30} {'peak RSS':>10} {'time':>8}  outcome")
        bad = 0
        for case, label, arg, expect in cases:
            mb, outcome, secs = run_child(case, arg, env)
            bad += expect not in outcome
            print(f"{label:<30} {mb:>7.0f} MB {secs:>6.1f} s  {outcome[:70]}")
        return 1 if bad else 0
    finally:
        web.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
