"""Model classes for every structured answer we ask a model for (besides the plan itself).

They are the validation boundary: the LLM client parses the reply into one of these or raises,
so nodes never handle half-formed dicts.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NUMBERS_AS_IDS = ConfigDict(coerce_numbers_to_str=True)  # models often answer `"id": 3`


class TaskVerdict(BaseModel):
    model_config = NUMBERS_AS_IDS
    id: str
    verdict: Literal["approve", "revise"] = "approve"
    feedback: str = ""


class ReviewResult(BaseModel):
    score: float | None = Field(description="overall quality from 0 to 10")
    summary: str = ""
    tasks: list[TaskVerdict] = Field(default_factory=list)

    @field_validator("score")
    @classmethod
    def _in_range(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 10:
            raise ValueError("score must be between 0 and 10")
        return value


class Cohesion(BaseModel):
    title: str
    meta_description: str = ""
    introduction: str = ""
    transitions: dict[str, str] = Field(default_factory=dict, description="task id -> opening sentence")


class WorkItem(BaseModel):
    model_config = NUMBERS_AS_IDS
    id: str
    name: str
    estimate_days: float = Field(gt=0)
    depends_on: list[str] = Field(default_factory=list)
    role: str


class WorkBreakdown(BaseModel):
    summary: str = ""
    work_items: list[WorkItem]

    def markdown(self) -> str:
        lines = [self.summary, "", "| id | work item | role | estimate (days) | depends on |",
                 "|---|---|---|---:|---|"]
        for w in self.work_items:
            lines.append(f"| {w.id} | {w.name} | {w.role} | {w.estimate_days:g} | {', '.join(w.depends_on) or '—'} |")
        return "\n".join(lines).strip()


OUTPUT_SCHEMAS: dict[str, type[BaseModel]] = {"work_breakdown": WorkBreakdown}
