"""Hostile web servers (issue 27): bodies capped on their DECODED size as they stream, a search call
with a whole-call deadline, and search answers of any shape reported as "the search failed".

Every server is `fakes/fake_web.py` on 127.0.0.1; bombs are sized small here (tens of MB decoded)
and big in bench/bench_memory.py, which measures the process's peak memory.
"""
from __future__ import annotations

import time
import tracemalloc

import pytest

from fakes.fake_web import gzip_bomb
from tests.test_web_tools import pages_by_path, research, settings, web  # noqa: F401 - `web` is the fixture


def peak_bytes(work) -> tuple[object, int]:
    """`work()` and the most bytes Python held at once while it ran (every thread)."""
    tracemalloc.start()
    try:
        out = work()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_gzip_bomb_page_stops_at_the_cap_without_inflating(web):
    web.bomb_bytes = 16_000_000
    gzip_bomb(web.bomb_bytes)  # built before measuring: the server's copy is not the client's memory
    web.RESULT_PATHS = ("/plain.txt",)
    research(settings(web, max_bytes=500_000), "warm-up")  # first-time imports are not the page's memory
    web.RESULT_PATHS = ("/gzip-bomb", "/plain.txt")
    res, peak = peak_bytes(lambda: research(settings(web, max_bytes=500_000)))
    pages = pages_by_path(res)
    assert pages["/gzip-bomb"]["status"] == "too large" and pages["/plain.txt"]["status"] == "ok"
    assert peak < 6_000_000, f"{peak:,} bytes held for a 0.5 MB cap"  # httpx's decoder alone held 16 MB


@pytest.mark.parametrize("path, why", [("/bomb-search", "over"), ("/huge-search", "over"),
                                        ("/deep-search", "nested too deeply")])
def test_a_hostile_search_answer_is_a_failed_search(web, path, why):
    web.bomb_bytes, web.huge_search_bytes = 16_000_000, 8_000_000
    gzip_bomb(web.bomb_bytes)
    s = settings(web, url=web.url(path))
    research(settings(web, url=web.url("/deep-search")), "warm-up")  # first-time imports: not the answer's memory
    res, peak = peak_bytes(lambda: research(s))
    err = res.data["web"]["search_error"]
    assert err and why in err and res.data["web"]["pages"] == [], err
    assert "search" in res.markdown
    assert peak < 6_000_000, f"{peak:,} bytes held for a search answer"


def test_a_search_that_drips_ends_at_its_whole_call_deadline(web):
    s = settings(web, url=web.url("/drip-search"))  # read timeout 0.5 s: a byte every 0.2 s never trips it
    started = time.monotonic()
    err = research(s).data["web"]["search_error"]
    assert "timed out" in err
    assert time.monotonic() - started < 4  # the call deadline (0.5 + 2 x 0.5 s), not forever
