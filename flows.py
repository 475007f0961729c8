"""Graph wiring: which node follows which, per strategy. `main.py` picks the graph.

    OrchestratorNode --work--> WorkerBatch --review--> ClaimsNode --review--> ReviewerNode --approve--> AggregatorNode
    WorkerBatch --stopped--> AggregatorNode
    ClaimsNode --revise--> WorkerBatch   (sentences the citation check failed, back to their workers once)
    ReviewerNode --revise--> WorkerBatch (bounded by --max-revisions)
    dynamic/hybrid:  WorkerBatch --replan--> ReplanNode --work--> WorkerBatch
                                             ReplanNode --review--> ClaimsNode
    ReviewerNode and ReplanNode --stopped--> AggregatorNode (token budget: what is done is assembled)
"""
from __future__ import annotations

from nodes import AggregatorNode, ClaimsNode, OrchestratorNode, ReplanNode, ReviewerNode, WorkerBatch
from utils.engine import AsyncGraph
from utils.options import STRATEGIES


def build_plan_flow() -> AsyncGraph:
    """Plan only: the orchestrator alone (`--plan-only`, the interactive plan step)."""
    return AsyncGraph(start=OrchestratorNode())


def build_flow(strategy: str = "dependency") -> AsyncGraph:
    """The whole orchestrator–worker–reviewer graph for one strategy."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    orchestrator, workers = OrchestratorNode(), WorkerBatch()
    reviewer, aggregator = ReviewerNode(), AggregatorNode()
    claims = ClaimsNode()
    orchestrator - "work" >> workers
    workers - "review" >> claims
    claims - "review" >> reviewer
    claims - "revise" >> workers            # sentences the citation check failed, back once
    workers - "stopped" >> aggregator
    reviewer - "revise" >> workers
    reviewer - "approve" >> aggregator
    reviewer - "stopped" >> aggregator      # token budget during review: still assemble
    if strategy in ("dynamic", "hybrid"):
        replanner = ReplanNode()
        workers - "replan" >> replanner
        replanner - "work" >> workers
        replanner - "review" >> claims
        replanner - "stopped" >> aggregator
    return AsyncGraph(start=orchestrator)
