"""OpenTelemetry traces of a run, off unless asked for: `--otel` or `OTEL_EXPORTER_OTLP_ENDPOINT`.

Why from events: nodes already report every phase, task, model call and retry as events
(`utils/events.py`), so the trace is one more listener beside the display and the run store, and no
node knows tracing exists. One trace per run: a root span, a span per phase under it, a span per task
under the phase it ran in (a tool task has an `execute_tool` child), a `chat` span per model call
under its task (or phase), with the GenAI semantic conventions (`gen_ai.operation.name`,
`gen_ai.request.model`, `gen_ai.usage.input_tokens`...).

What never leaves: prompts, replies, the goal, plan text and error text are recorded only with
`--otel-content`; API keys never (they are in no event; the exporter's own headers come from the
standard `OTEL_EXPORTER_OTLP_HEADERS`). The packages are an optional extra
(`requirements-otel.txt`); without them, asking for traces is one line and the run goes on.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable

from utils.events import Event
from utils.run.results import SAVED_STATES, TaskState

SERVICE = "kaygraph-orchestrator"
MISSING = ("OpenTelemetry tracing was asked for, but its packages are not installed "
           "(pip install -r requirements-otel.txt); running without traces")
_NS = 1_000_000_000
EXPORT_TIMEOUT_S = 3  # per export, retries included: an absent collector costs a run at most this much


def tracing_wanted(flags: Callable[[str], Any]) -> bool:
    """`--otel`, or an OTLP endpoint in the environment (the standard variables)."""
    return bool(flags("otel") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def make_provider():
    """A tracer provider that sends spans over OTLP/HTTP to the configured endpoint (default
    http://localhost:4318, a local collector). Tests replace this with an in-memory exporter."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Counting(SpanExporter):
        """The OTLP exporter, counting spans it could not send (so the run can say so in one line)."""

        def __init__(self, inner) -> None:
            self.inner, self.failed = inner, 0

        def export(self, spans):
            result = self.inner.export(spans)
            if result != SpanExportResult.SUCCESS:
                self.failed += len(spans)
            return result

        def shutdown(self) -> None:
            self.inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return self.inner.force_flush(timeout_millis)

    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE}  # the variable wins
    provider = TracerProvider(resource=Resource.create(named))
    provider.orch_exporter = Counting(OTLPSpanExporter(timeout=EXPORT_TIMEOUT_S))
    provider.add_span_processor(BatchSpanProcessor(provider.orch_exporter))
    return provider


def _task_of(purpose: Any) -> str:
    from utils.run.report_html import call_task
    return call_task(purpose)


class RunTracer:
    """An event sink that turns one run's events into one trace. `end(status)` closes it."""

    def __init__(self, provider, *, workflow: str, meta: dict, content: bool = False, goal: str = "") -> None:
        from opentelemetry import trace

        self._trace, self.provider, self.content = trace, provider, content
        self.tracer = provider.get_tracer("orchestrator", "1")
        self._lock = threading.Lock()
        attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": f"orchestrator {workflow}",
                 "orchestrator.workflow": workflow, "orchestrator.strategy": str(meta.get("strategy") or ""),
                 "gen_ai.provider.name": str(meta.get("provider") or ""), "orchestrator.engine": str(meta.get("engine") or "")}
        if meta.get("model"):
            attrs["gen_ai.request.model"] = str(meta["model"])
        if content and goal:
            attrs["orchestrator.goal"] = goal
        self.root = self.tracer.start_span(f"invoke_agent orchestrator {workflow}", attributes=attrs)
        self.phase = None
        self.tasks: dict[str, Any] = {}
        self.totals: dict = {}
        self.model = str(meta.get("model") or "")

    # -- helpers ------------------------------------------------------------------------------
    def _ctx(self, span):
        return self._trace.set_span_in_context(span)

    def _child(self, name: str, parent, attrs: dict, start_ns: int | None = None):
        return self.tracer.start_span(name, context=self._ctx(parent), attributes=attrs, start_time=start_ns)

    def _error(self, span, message: str | None, kind: str = "error") -> None:
        from opentelemetry.trace import Status, StatusCode
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, (message or kind)[:500] if self.content else kind))

    # -- events -------------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            with self._lock:
                try:
                    handler(event.data)
                except Exception:  # noqa: BLE001 - tracing must never break a run
                    pass

    def _on_phase(self, data: dict) -> None:
        if self.phase is not None:
            self.phase.end()
            self.phase = None
        name = str(data.get("name") or "")
        if name and name != "done":
            self.phase = self._child(f"phase {name}", self.root, {"orchestrator.phase": name})

    def _on_task(self, data: dict) -> None:
        tid, state = str(data.get("id") or ""), str(data.get("state") or "")
        span = self.tasks.get(tid)
        if state == TaskState.RUNNING and span is None:
            attrs = {"orchestrator.task.id": tid, "orchestrator.task.role": str(data.get("role") or ""),
                     "orchestrator.task.revision": int(data.get("revision") or 0)}
            if data.get("worker") is not None:
                attrs["orchestrator.task.worker"] = int(data["worker"])
            if self.content and data.get("title"):
                attrs["orchestrator.task.title"] = str(data["title"])
            self.tasks[tid] = self._child(f"task {tid}", self.phase or self.root, attrs)
        elif state in SAVED_STATES and "result" in data:
            self._end_task(tid, span, state, data)

    def _end_task(self, tid: str, span, state: str, data: dict) -> None:
        result = data.get("result") or {}
        if span is None:  # skipped (or never started): a zero-length span says so
            span = self._child(f"task {tid}", self.phase or self.root,
                               {"orchestrator.task.id": tid, "orchestrator.task.role": str(data.get("role") or "")})
        self.tasks.pop(tid, None)
        span.set_attribute("orchestrator.task.state", state)
        span.set_attribute("orchestrator.task.revision", int(data.get("revision") or 0))
        for key in ("prompt_tokens", "completion_tokens"):
            if isinstance(result.get(key), int):
                span.set_attribute("gen_ai.usage." + ("input_tokens" if key == "prompt_tokens" else "output_tokens"),
                                   result[key])
        tool = str(result.get("model") or "")
        if tool.startswith("tool:") and result.get("started") and result.get("finished"):
            child = self._child(f"execute_tool {tool[5:]}", span,
                                {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool[5:],
                                 "orchestrator.task.id": tid}, int(float(result["started"]) * _NS))
            if state == TaskState.FAILED:
                self._error(child, str(data.get("error") or ""), "tool_error")
            child.end(int(float(result["finished"]) * _NS))
        if state == TaskState.FAILED:
            self._error(span, str(data.get("error") or ""), "task_failed")
        span.end()

    def _on_call(self, data: dict) -> None:
        tid = _task_of(data.get("purpose"))
        parent = self.tasks.get(tid) or self.phase or self.root
        end_ns = time.time_ns()
        latency = float(data.get("latency_s") or 0.0)
        model = str(data.get("model") or "")
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": model, "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": int(data.get("prompt_tokens") or 0),
            "gen_ai.usage.output_tokens": int(data.get("completion_tokens") or 0),
            "gen_ai.usage.cache_read.input_tokens": int(data.get("cached_tokens") or 0),
            "orchestrator.call.purpose": str(data.get("purpose") or ""),
            "orchestrator.cache_hit": bool(data.get("cached")), "orchestrator.offline": bool(data.get("offline")),
            "orchestrator.retries": int(data.get("retries") or 0)}
        if tid:
            attrs["orchestrator.task.id"] = tid
        if isinstance(data.get("cost_usd"), (int, float)):
            attrs["orchestrator.cost_usd"] = float(data["cost_usd"])
        if self.content:
            attrs["gen_ai.input.messages"] = json.dumps(data.get("messages") or [], ensure_ascii=False)
            if data.get("reply") is not None:
                attrs["gen_ai.output.messages"] = json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": data["reply"]}]}], ensure_ascii=False)
        self.model = self.model or model  # a custom server's model is learnt at its first call
        span = self._child(f"chat {model}".strip(), parent, attrs, end_ns - int(latency * _NS))
        if data.get("error"):
            self._error(span, str(data["error"]), "model_call_failed")
        span.end(end_ns)

    def _on_retry(self, data: dict) -> None:
        tid = _task_of(data.get("purpose"))
        span = self.tasks.get(tid) or self.phase or self.root
        attrs = {"attempt": int(data.get("attempt") or 0), "wait_s": float(data.get("wait_s") or 0.0)}
        if self.content:
            attrs["reason"] = str(data.get("reason") or "")
        span.add_event("retry", attrs)

    def _on_review(self, data: dict) -> None:
        attrs: dict[str, Any] = {"round": int(data.get("round") or 0),
                                 "sent_back": len(data.get("revise") or []), "approved": len(data.get("approved") or [])}
        if isinstance(data.get("score"), (int, float)):
            attrs["score"] = float(data["score"])
        (self.phase or self.root).add_event("review", attrs)

    def _on_llm(self, data: dict) -> None:
        self.totals = dict(data)

    # -- the end ------------------------------------------------------------------------------
    def end(self, status: str) -> str | None:
        """Close every open span (an interrupted run's tasks say so), the root with the run's status
        and usage, then send what is left to the exporter. Returns a warning when spans were lost."""
        with self._lock:
            for tid, span in list(self.tasks.items()):
                span.set_attribute("orchestrator.task.state", "interrupted")
                span.end()
            self.tasks.clear()
            if self.phase is not None:
                self.phase.end()
                self.phase = None
            t = self.totals
            self.root.set_attribute("orchestrator.status", status)
            if self.model:
                self.root.set_attribute("gen_ai.request.model", self.model)
            self.root.set_attribute("gen_ai.usage.input_tokens", int(t.get("prompt_tokens") or 0))
            self.root.set_attribute("gen_ai.usage.output_tokens", int(t.get("completion_tokens") or 0))
            self.root.set_attribute("orchestrator.calls", int(t.get("calls") or 0))
            self.root.set_attribute("orchestrator.cache_hits", int(t.get("cached") or 0))
            self.root.set_attribute("orchestrator.retries", int(t.get("retries") or 0))
            if status not in ("ok", "planned"):
                self._error(self.root, status, status)
            self.root.end()
        try:
            self.provider.shutdown()  # sends what is left (bounded by the exporter's timeout)
        except Exception:  # noqa: BLE001 - an unreachable collector never fails a run
            pass
        failed = getattr(getattr(self.provider, "orch_exporter", None), "failed", 0)
        if failed:
            where = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
                "OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
            from utils.model.settings import safe_base_url
            return f"trace: {failed} span(s) could not be sent to {safe_base_url(where)} (is a collector running?)"
        return None


def start_tracing(flags: Callable[[str], Any], notice: Callable[[str, str], None], *, workflow: str,
                  meta: dict, goal: str = "") -> RunTracer | None:
    """A `RunTracer` when traces were asked for and the packages are there; else None (with one
    notice line when they were asked for but are missing)."""
    if not tracing_wanted(flags):
        return None
    try:
        provider = make_provider()
    except ImportError:
        notice(MISSING, "warn")
        return None
    return RunTracer(provider, workflow=workflow, meta=meta, content=bool(flags("otel_content")), goal=goal)
