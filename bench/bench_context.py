"""Context growth: prompt tokens sent per run for blog plans of 4, 8, 16 and 32 sections.

Each plan is shaped like a real blog plan: an analysis task, then sections that each depend on the
analysis and on the previous section. Every worker answers a ~400-token section (1,600 characters).
Tokens are the server's usage figures (the fake server counts 4 characters a token), summed by the
client (LLMClient.totals) for the whole run, and per kind of request from the server's record.
If prompts stay linear in plan size, tokens per section stay flat and 32 sections cost ~8x what 4
do; a prompt that grew with the plan (quadratic total) would cost up to ~64x.

Prompt-prefix share: providers discount input that repeats an earlier prompt's prefix (OpenAI
prompt caching, vLLM prefix caching). For each worker prompt (system + user text, in the order the
server received them) the longest prefix it shares with an earlier one is what such a cache can
reuse; the share is that over all worker prompt characters (utils.run.context.shared_prefix_chars).

    python bench/bench_context.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import blog, header, main_guard, make_llm, make_shared, open_server, run_graph, table  # noqa: E402

SECTIONS = (4, 8, 16, 32)
REPLY_CHARS = 1600


def shared_prefix_share(worker_records) -> float:
    from utils.run.context import shared_prefix_chars

    prompts = [r.prompt for r in sorted(worker_records, key=lambda r: r.t_in)]
    return shared_prefix_chars(prompts) / max(sum(map(len, prompts)), 1)


def tokens(records, kind: str) -> int:
    return sum(r.prompt_chars // 4 for r in records if r.kind == kind)


def main() -> None:
    header("Context growth: prompt tokens per run")
    print(f"blog plans (analysis + N sections, each on the analysis and the previous section), "
          f"~{REPLY_CHARS // 4}-token replies, context budget 6000, max_revisions 0")
    measured = {}
    with open_server() as server:
        for n in SECTIONS:
            shape = blog(n)
            server.script(shape.tasks, shape.latency, reply_chars=REPLY_CHARS)
            llm = make_llm(server.base_url)
            run_graph(make_shared(shape.plan(), llm))
            recs = server.records()
            worker = [r for r in recs if r.kind == "worker"]
            measured[n] = {"total": llm.totals.prompt_tokens, "calls": llm.totals.calls,
                           "worker": tokens(recs, "worker"), "review": tokens(recs, "review"),
                           "cohesion": tokens(recs, "cohesion"),
                           "largest": max(r.prompt_chars // 4 for r in worker),
                           "prefix": shared_prefix_share(worker),
                           "last": max(worker, key=lambda r: r.t_in).prompt_chars // 4}
    rows = []
    first = SECTIONS[0]
    for n in SECTIONS:
        m = measured[n]
        rows.append([n, m["calls"], m["total"], f"{m['total'] / n:.0f}", m["worker"], f"{m['worker'] / n:.0f}",
                     m["largest"], f"{m['prefix']:.1%}", m["review"], m["cohesion"],
                     f"{m['total'] / measured[first]['total']:.2f}x (sections x{n // first})"])
    table(["sections", "calls", "prompt tokens (run)", "per section", "worker prompts", "worker per section",
           "largest worker prompt", "shared prefix of worker prompts", "review prompt", "cohesion prompt", f"run vs {first} sections"], rows)
    last = SECTIONS[-1]
    ratio = measured[last]["total"] / measured[first]["total"]
    worker_ratio = measured[last]["worker"] / measured[first]["worker"]
    print(f"\nlinear-fit check, {last} vs {first} sections (x{last // first} the sections): whole run "
          f"{ratio:.2f}x, worker prompts {worker_ratio:.2f}x (linear: {last // first}x, quadratic: "
          f"~{(last // first) ** 2}x)")
    slope = (measured[last]["last"] - measured[first]["last"]) / (last - first)
    print(f"the last section's prompt (2 dependency outputs, like every later section): "
          f"{measured[first]['last']} tokens at {first} sections, {measured[last]['last']} at {last}: "
          f"+{slope:.1f} tokens per extra task, the plan outline every worker sees (one line per task)")
    shares = ", ".join(f"{measured[n]['prefix']:.1%} at {n}" for n in SECTIONS)
    print(f"shared prefix of worker prompt tokens (what a provider's prefix cache can reuse): {shares} sections")
    print("review and cohesion prompts stop growing at the context budget x 2 (12,000 tokens): "
          "beyond it the section texts they see are shortened")


if __name__ == "__main__":
    main_guard(main)
