"""Graph wiring: which node follows which, per strategy. `main.py` picks the graph.

    OrchestratorNode --work--> WorkerBatch --review--> ReviewerNode --approve--> AggregatorNode
                                   ^  |                     |
                                   |  +--stopped------------|-------------------> AggregatorNode
                                   +-------revise-----------+
    dynamic/hybrid:  WorkerBatch --replan--> ReplanNode --work--> WorkerBatch
                                             ReplanNode --review--> ReviewerNode
    ReviewerNode and ReplanNode --stopped--> AggregatorNode (token budget: what is done is assembled)
"""
from __future__ import annotations

from nodes import AggregatorNode, OrchestratorNode, ReplanNode, ReviewerNode, WorkerBatch
from utils.engine import AsyncGraph

STRATEGIES = ("dependency", "static", "priority", "dynamic", "hybrid")


def build_plan_flow() -> AsyncGraph:
    """Plan only: the orchestrator alone (`--plan-only`, the interactive plan step)."""
    return AsyncGraph(start=OrchestratorNode())


def build_flow(strategy: str = "dependency") -> AsyncGraph:
    """The whole orchestrator–worker–reviewer graph for one strategy."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    orchestrator, workers = OrchestratorNode(), WorkerBatch()
    reviewer, aggregator = ReviewerNode(), AggregatorNode()
    orchestrator - "work" >> workers
    workers - "review" >> reviewer
    workers - "stopped" >> aggregator
    reviewer - "revise" >> workers
    reviewer - "approve" >> aggregator
    reviewer - "stopped" >> aggregator      # token budget during review: still assemble
    if strategy in ("dynamic", "hybrid"):
        replanner = ReplanNode()
        workers - "replan" >> replanner
        replanner - "work" >> workers
        replanner - "review" >> reviewer
        replanner - "stopped" >> aggregator
    return AsyncGraph(start=orchestrator)
