"""Progress events: nodes report what happens, `main.py` decides how to show it.

Nodes never print. They call `emit(Event(kind, data))`; the kinds and their fields are listed in
the README's design section. Keeping this a plain callable lets tests collect events in a list.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Event:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


Emit = Callable[[Event], None]


def null_emit(event: Event) -> None:
    """Default sink: drop the event (library use, tests that don't care)."""


class Collector:
    """An `Emit` that keeps every event; handy in tests and for `--json` summaries."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.kind == kind]
