"""OpenTelemetry traces (`utils/app/otel.py`): one trace per run, built from the run's events.

The SDK's in-memory exporter stands in for a collector (`make_provider` is swapped), and the fake
model answers with token counts chosen here, so every span's numbers are checked against values
the test set, not against what the app computed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes.fake_llm import Reply
from tests.helpers import run_app
from tests.scripted import Script

otel_sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk not installed "
                               "(pip install -r requirements-otel.txt)")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

GOAL = "Zebra-striped widget market in Atlantis"
SECRET_REPLY = "PRIVATE-REPLY-TEXT-4471"
USAGE = {"a1": (1234, 56, 200), "s1": (777, 33, 0)}  # prompt, completion, cached


def plan() -> dict:
    return {"goal": GOAL, "notes": "", "done": False, "tasks": [
        {"id": "g1", "title": "Facts", "role": "gatherer", "instructions": "Extract", "depends_on": [],
         "priority": 1, "inputs": ["notes.md"]},
        {"id": "a1", "title": "Analysis", "role": "analyst", "instructions": "Analyse", "depends_on": ["g1"],
         "priority": 2},
        {"id": "s1", "title": "Summary", "role": "summarizer", "instructions": "Sum up", "depends_on": ["a1"],
         "priority": 3}]}


def worker(tid: str, req) -> Reply:
    prompt, completion, cached = USAGE[tid]
    return Reply(text=f"## Part {tid}\n\n{SECRET_REPLY} [source: notes.md:L3].",
                 usage={"prompt_tokens": prompt, "completion_tokens": completion,
                        "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}})


@pytest.fixture
def exporter(monkeypatch):
    exp = InMemorySpanExporter()

    def provider():
        p = TracerProvider()
        p.add_span_processor(SimpleSpanProcessor(exp))
        return p

    monkeypatch.setattr("utils.app.otel.make_provider", provider)
    return exp


def run_report(tmp_path: Path, fake_llm, *flags: str, env: dict[str, str] | None = None):
    fake_llm.responder = Script(plans=[plan()], worker=worker)
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nWe counted 14 shops in Atlantis.\n", encoding="utf-8")
    run = run_app(["--example", "report", GOAL, "--input", str(notes), "--no-web", *flags], tmp_path,
                  server=fake_llm, env=env)
    assert run.code == 0, run.explain()
    return run


def test_one_trace_per_run_with_the_span_tree_usage_and_no_content(exporter, fake_llm, tmp_path):
    run = run_report(tmp_path, fake_llm, "--otel")
    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1
    by_id = {s.context.span_id: s for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1 and roots[0].name == "invoke_agent orchestrator report"
    root = roots[0]

    def parent(s):
        return by_id[s.parent.span_id]

    phases = {s.attributes["orchestrator.phase"]: s for s in spans if s.name.startswith("phase ")}
    assert {"planning", "working", "reviewing", "assembling"} <= set(phases)
    assert all(parent(s) is root for s in phases.values())
    tasks = {s.attributes["orchestrator.task.id"]: s for s in spans if s.name.startswith("task ")}
    assert set(tasks) == {"g1", "a1", "s1"}
    # under the phase each ran in: tasks started while the plan streamed run in "planning + working"
    assert all(parent(t).name in ("phase working", "phase planning + working") for t in tasks.values())
    assert {t.attributes["orchestrator.task.role"] for t in tasks.values()} == {"gatherer", "analyst", "summarizer"}
    assert all(t.attributes["orchestrator.task.state"] == "done" for t in tasks.values())

    tool = [s for s in spans if s.name.startswith("execute_tool")]
    assert len(tool) == 1 and parent(tool[0]) is tasks["g1"]
    assert tool[0].attributes["gen_ai.tool.name"] == "extract_facts"

    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(chats) == len(fake_llm.requests)  # one span per model call
    for tid, (prompt, completion, cached) in USAGE.items():
        mine = [c for c in chats if c.attributes.get("orchestrator.task.id") == tid]
        assert len(mine) == 1 and parent(mine[0]) is tasks[tid]
        a = mine[0].attributes
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (prompt, completion)
        assert a["gen_ai.usage.cache_read.input_tokens"] == cached and a["orchestrator.cache_hit"] is False
        assert a["gen_ai.request.model"] and a["orchestrator.retries"] == 0
    planning_call = next(c for c in chats if "planning" in c.attributes["orchestrator.call.purpose"])
    assert parent(planning_call) in [phases[p] for p in ("planning", "planning + working") if p in phases]
    # The root's usage is the sum over every call (the calls' own numbers, from calls.jsonl).
    calls = [json.loads(line) for line in (run.run_dir() / "calls.jsonl").read_text().splitlines()]
    assert root.attributes["gen_ai.usage.input_tokens"] == sum(c["prompt_tokens"] for c in calls)
    assert root.attributes["gen_ai.usage.output_tokens"] == sum(c["completion_tokens"] for c in calls)
    assert root.attributes["orchestrator.status"] == "ok"
    assert root.attributes["gen_ai.request.model"] == calls[0]["model"]

    # Never the prompt, the reply, the goal or the key, in any attribute or span event.
    values = [str(v) for s in spans for v in [*s.attributes.values(), *(x for e in s.events
                                                                         for x in e.attributes.values())]]
    text = "\n".join(values)
    for secret in (SECRET_REPLY, GOAL, "sk-test", "We counted 14 shops", "Analyse"):
        assert secret not in text, secret


def test_otel_content_adds_prompts_and_replies(exporter, fake_llm, tmp_path):
    run_report(tmp_path, fake_llm, "--otel", "--otel-content")
    chats = [s for s in exporter.get_finished_spans() if s.attributes.get("orchestrator.task.id") == "a1"
             and s.attributes.get("gen_ai.operation.name") == "chat"]
    assert SECRET_REPLY in chats[0].attributes["gen_ai.output.messages"]
    assert "We counted 14 shops" in chats[0].attributes["gen_ai.input.messages"]
    assert "sk-test" not in str(dict(chats[0].attributes))


def test_traces_are_off_unless_asked_for(exporter, fake_llm, tmp_path, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    run_report(tmp_path, fake_llm)
    assert exporter.get_finished_spans() == ()


def test_the_endpoint_variable_turns_traces_on(exporter, fake_llm, tmp_path):
    run = run_app(["--example", "blog"], tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert run.code == 0, run.explain()
    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1 and sum(s.parent is None for s in spans) == 1


def test_missing_packages_are_one_line_and_the_run_goes_on(fake_llm, tmp_path, monkeypatch):
    def missing():
        raise ImportError("No module named 'opentelemetry'")

    monkeypatch.setattr("utils.app.otel.make_provider", missing)
    run = run_app(["--example", "blog", "--otel"], tmp_path)
    assert run.code == 0, run.explain()
    lines = [ln for ln in run.done.output.splitlines() if "OpenTelemetry" in ln]
    assert len(lines) == 1 and "requirements-otel.txt" in lines[0]


def test_a_run_reaches_a_real_otlp_endpoint_without_the_key(fake_llm, tmp_path):
    """The real exporter (OTLP/HTTP protobuf) against a local collector stand-in: spans arrive at
    /v1/traces; the API key and the replies are not in what was sent."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            bodies.append((self.path, self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_report(tmp_path, fake_llm, env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}"})
    finally:
        server.shutdown()
        server.server_close()
    assert bodies and {p for p, _ in bodies} == {"/v1/traces"}
    sent = b"".join(b for _, b in bodies)
    assert b"gen_ai.usage.input_tokens" in sent and b"kaygraph-orchestrator" in sent
    assert b"sk-test" not in sent and SECRET_REPLY.encode() not in sent


def test_an_absent_collector_is_one_warning_and_the_run_succeeds(tmp_path, monkeypatch):
    monkeypatch.setattr("utils.app.otel.EXPORT_TIMEOUT_S", 0.3)
    run = run_app(["--example", "blog", "--otel"], tmp_path,
                  env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:pw@127.0.0.1:9"})
    assert run.code == 0, run.explain()
    lines = [ln for ln in run.done.output.splitlines() if "could not be sent" in ln]
    assert len(lines) == 1 and "http://127.0.0.1:9" in lines[0] and "pw" not in lines[0]
