"""Deterministic tool workers: real numbers computed without a model.

The planner assigns a tool role like any other role; the node calls `run_tool` in a thread. Tools are
pure (no file writes, no printing) so they can run concurrently and be re-run on resume with the same
result: charts come back as PNG bytes in `ToolResult.artifacts` and the node writes them. Every figure a
final document quotes should come from a tool's `data`, never from model prose.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from utils.errors import ToolError


@dataclass
class ToolInput:
    task: dict                        # the Task as dict (id, title, instructions, inputs, ...)
    data_path: Path | None            # --data CSV (analysis)
    input_paths: list[Path]           # --input files + spec sample sources (report)
    deps: dict[str, dict]             # dependency task results (their `data` dicts and `output`)
    params: dict                      # from the role spec in YAML (e.g. team, target column)
    goal: str
    target: str | None = None         # the analysis target column chosen for the run (utils/run/target.py)
    web: dict | None = None           # the run's web research settings (utils/tools/web/settings.py)


@dataclass
class ToolResult:
    markdown: str                     # what the worker "wrote": goes into the document
    data: dict                        # machine-readable figures (JSON-serialisable)
    artifacts: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes (PNG charts)


ANALYSIS_JSON = "analysis.json"    # the modeller's machine-readable result (utils/tools/model_report.py)
RUN_FILES = frozenset({ANALYSIS_JSON})  # artifacts saved under their own name: one per run, found by name

ToolFn = Callable[[ToolInput], ToolResult]
TOOLS: dict[str, ToolFn] = {}


def run_tool(name: str, inp: ToolInput) -> ToolResult:
    """Run one tool by name; an unknown name is a spec error the user must read, hence ToolError."""
    fn = TOOLS.get(name)
    if fn is None:
        raise ToolError(f"unknown tool {name!r}; known tools: {', '.join(tool_names())}")
    return fn(inp)


def tool_names() -> list[str]:
    """Sorted names, for spec validation and error messages."""
    return sorted(TOOLS)


# ---- chart helpers shared by the tool modules --------------------------------------------------

def new_figure(width: float = 8.0, height: float = 5.0) -> Any:
    """A matplotlib Figure on the Agg canvas, built without pyplot.

    pyplot keeps global state and is not thread-safe; tools run in worker threads side by side, so each
    chart gets its own Figure + FigureCanvasAgg. matplotlib is imported lazily: only chart tools pay for it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any, **savefig: Any) -> bytes:
    """Render a figure to PNG bytes (metadata stripped of the software version for stable output).

    Every label is neutralised first (`for_file`): a model-written title with ESC or U+202E would
    otherwise be drawn as boxes and make matplotlib warn on stderr with the raw character in the line."""
    from matplotlib.text import Text

    from utils.text import for_file

    for text in fig.findobj(Text):
        raw = text.get_text()
        if isinstance(raw, str) and raw != for_file(raw):
            text.set_text(for_file(raw))
    for ax in fig.axes:  # tick labels are made again at draw time from the axis' formatter
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t.get_text() for t in axis.get_ticklabels()]
            if any(label != for_file(label) for label in labels):
                axis.set_ticks(axis.get_ticklocs(), [for_file(label) for label in labels])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, **savefig)
    return buf.getvalue()


def _register() -> None:
    # Imported here, after the dataclasses exist, because the tool modules import them from this package.
    from utils.tools import data, facts_chart, project, sources, web

    for module in (data, facts_chart, project, sources, web):
        TOOLS.update(module.TOOLS_HERE)


_register()
