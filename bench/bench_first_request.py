"""Time from process start to the first model request, with and without the early SDK import
(`openai`, with its HTTP package and the CA certificates, loaded in a background thread that
main.py starts right after parsing the flags, utils/model/preload.py).

`python main.py --example blog` against the fake server in this process (which refuses the key, so
the run ends at its first request); the server stamps each
request with `time.monotonic()`, the same clock as the parent's start stamp, so the figure is the
real gap a user waits before the model starts working. The "no preload" variant patches
`utils.model.preload.preload_http` out, so the SDK import and the CA bundle happen only at
the first request. Python threads share one interpreter lock, so the background import overlaps
the app's own imports only where either waits (file reads); the process CPU column is the floor. The model is named (ORCH_MODEL), so no `/models` lookup comes first.
`import openai` is timed alone for comparison.
Both variants start through the same small wrapper and alternate, median of RUNS.

    python bench/bench_first_request.py
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, RunFailed, header, import_ms, main_guard, median, scratch, table, verdict  # noqa: E402
from fakes.fake_llm import FakeLLMServer  # noqa: E402

RUNS = 5
TARGET_S = 0.8
WRAPPER = ("import sys, time, atexit; sys.argv = ['main.py'] + sys.argv[2:]\n"
           "atexit.register(lambda: sys.stderr.write('CPU %.3f\\n' % time.process_time()))\n"
           "import utils.model.preload as p\n"
           "PRELOAD = {preload}\n"
           "if not PRELOAD: p.preload_http = lambda: None\n"
           "import main; main.entry()\n")


def first_request_s(server: FakeLLMServer, preload: bool) -> tuple[float, float]:
    """(wall seconds to the first request, the process's CPU seconds when it exits right after it:
    the figure a loaded machine distorts least)."""
    home = scratch("first")
    env = {"ORCH_HOME": str(home), "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench",
           "ORCH_MODEL": "fake-model", "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    server.reset()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", WRAPPER.format(preload=preload), "x", "--example", "blog",
                           "--no-cache", "--quiet", "--output-dir", str(home / "runs")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode not in (0, 1) or not server.requests:
        raise RunFailed(f"run exited {proc.returncode}: {proc.stderr.strip()[:200]}")
    cpu = [float(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("CPU ")]
    return server.requests[0].t_in - started, cpu[-1] if cpu else float("nan")


def main() -> None:
    header("First model request after process start")
    with FakeLLMServer(require_key="sk-not-this-one") as server:
        with_pre, without = [], []
        for _ in range(RUNS):  # interleaved, so machine load hits both alike
            with_pre.append(first_request_s(server, True))
            without.append(first_request_s(server, False))
    sdk = import_ms("openai") / 1000
    a, b = median([w for w, _ in with_pre]), median([w for w, _ in without])
    cpu_a, cpu_b = median([c for _, c in with_pre]), median([c for _, c in without])
    table(["variant", "first request (s, median)", "process CPU s", "goal", ""],
          [["SDK imported in the background from flag parsing", round(a, 3), round(cpu_a, 3), TARGET_S,
            verdict(a <= TARGET_S)],
           ["SDK imported at the first request", round(b, 3), round(cpu_b, 3), "", ""],
           ["(for comparison: import openai, in a fresh interpreter)", round(sdk, 3), "", "", ""]])
    print(f"\nratio with/without early import: {a / b:.2f}")


if __name__ == "__main__":
    main_guard(main)
