"""Helpers for the orchestrator app: pure functions and the single LLM boundary."""
