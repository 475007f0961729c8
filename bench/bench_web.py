"""Web research: parallel fetching and the page cache, against the tests' fake web on 127.0.0.1.

One research question whose search returns 8 article URLs; every article takes `HOLD_S` to answer.
Three figures from one run: fetched one at a time (per-host limit 1), fetched in parallel (per-host
limit 8), and the same question again served from $ORCH_HOME/web (no fetch). Ratios, not absolute
times, are the point: the machine is shared. Measures, asserts nothing.

    python bench/bench_web.py
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOLD_S = 0.2
PAGES = 8


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-bench-web-"))
    os.environ["ORCH_HOME"] = str(home)
    from fakes.fake_web import FakeWeb
    from utils.tools import ToolInput, run_tool
    from utils.tools.web.settings import resolve_web

    web = FakeWeb().start()
    web.RESULT_PATHS = tuple(f"/article/batteries?n={i}" for i in range(PAGES))
    web.hold_s = HOLD_S
    try:
        base = resolve_web(no_web=False, no_cache=False, config={"web_results": PAGES},
                           env={"ORCH_SEARCH": "searxng", "SEARXNG_URL": web.url("/searxng"),
                                "ORCH_WEB_ALLOW_PRIVATE": "1"})

        def timed(**over) -> tuple[float, dict]:
            inp = ToolInput(task={"id": "q1", "instructions": "home battery storage"}, data_path=None,
                            input_paths=[], deps={}, params={}, goal="g", web={**base, **over})
            t0 = time.perf_counter()
            res = run_tool("web_research", inp)
            return time.perf_counter() - t0, res.data["web"]

        serial, _ = timed(per_host=1, cache=False)
        parallel, _ = timed(per_host=PAGES, max_fetches=PAGES)
        cached, info = timed(per_host=PAGES)
        print(f"{PAGES} pages, {HOLD_S * 1000:.0f} ms each")
        print(f"  one at a time   {serial:6.2f} s")
        print(f"  in parallel     {parallel:6.2f} s   ({serial / parallel:.1f}x faster)")
        print(f"  from the cache  {cached:6.2f} s   ({serial / max(cached, 1e-6):.0f}x faster, "
              f"{info['fetched']} fetched, {info['from_cache']} from cache)")
    finally:
        web.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
