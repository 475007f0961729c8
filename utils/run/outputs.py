"""Model classes for every structured answer we ask a model for (besides the plan itself).

They are the validation boundary: the LLM client parses the reply into one of these or raises,
so nodes never handle half-formed dicts.
"""
from __future__ import annotations

from typing import Annotated, Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model, field_validator, model_validator

from utils.dag import free_id

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

    @field_validator("transitions", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        """The reply sends transitions as [{id, sentence}] (strict schemas have no free-form maps)."""
        if isinstance(value, list):
            return {str(x.get("id")): str(x.get("sentence") or "") for x in value if isinstance(x, dict)}
        return value


class WorkItem(BaseModel):
    model_config = NUMBERS_AS_IDS
    id: str
    name: str
    estimate_days: float = Field(gt=0)
    depends_on: list[str] = Field(default_factory=list)
    role: str


class WorkBreakdown(BaseModel):
    summary: str = ""
    work_items: list[WorkItem] = Field(min_length=1)
    _repairs: list[str] = PrivateAttr(default_factory=list)  # what `salvage` changed: said in markdown()

    @model_validator(mode="after")
    def _references(self) -> "WorkBreakdown":
        """Unique ids and known dependencies: a schema cannot say these, the repair round-trip can."""
        ids = [w.id for w in self.work_items]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"work item ids must be unique: {', '.join(dupes)}")
        unknown = sorted({d for w in self.work_items for d in w.depends_on if d not in ids or d == w.id})
        if unknown:
            raise ValueError(f"depends_on names unknown work items or the item itself: {', '.join(unknown[:5])}")
        return self

    @classmethod
    def salvage(cls, data: Any) -> tuple[Any, list[str]]:
        """What a schema cannot say, repaired after the model's own repair failed (as a plan is):
        a dependency written as a work item's name becomes its id, one naming no item (or the item
        itself) is dropped, a repeated id gets a suffix. Returns the data and what was changed, which
        the breakdown's markdown states; anything else is left for validation to refuse."""
        items = data.get("work_items") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(w, dict) for w in items):
            return data, []
        items, fixes, seen = [dict(w) for w in items], [], set()
        for w in items:
            wid = str(w.get("id"))
            if wid in seen:
                new = free_id(wid, seen, sep="-")
                fixes.append(f"repeated id '{wid}' renamed '{new}'")
                w["id"] = wid = new
            seen.add(wid)
        by_name = {str(w.get("name", "")).strip().casefold(): str(w.get("id")) for w in items}
        for w in items:
            deps, kept, wid = w.get("depends_on") if isinstance(w.get("depends_on"), list) else [], [], str(w.get("id"))
            for d in map(str, deps):
                ref = d if d in seen else by_name.get(d.strip().casefold())
                if ref is None or ref == wid:
                    fixes.append(f"dropped the dependency of '{wid}' on '{d}' (it names no other work item)")
                elif ref not in kept:
                    kept.append(ref)
            w["depends_on"] = kept
        return {**data, "work_items": items}, fixes

    def markdown(self) -> str:
        lines = [self.summary, "", "| id | work item | role | estimate (days) | depends on |",
                 "|---|---|---|---:|---|"]
        for w in self.work_items:
            lines.append(f"| {w.id} | {w.name} | {w.role} | {w.estimate_days:g} | {', '.join(w.depends_on) or '—'} |")
        if self._repairs:
            lines += ["", "Repaired by the app after the model's repair failed: " + "; ".join(self._repairs) + "."]
        return "\n".join(lines).strip()


OUTPUT_SCHEMAS: dict[str, type[BaseModel]] = {"work_breakdown": WorkBreakdown}


# -- per-run reply models: one definition gives the schema sent and the validation -----------------
def _enum(values: Iterable[str]) -> Any:
    values = tuple(dict.fromkeys(values))
    return Literal[values] if values else str


def review_model(done_ids: Iterable[str]) -> type[BaseModel]:
    """A review of this run's finished tasks: score 0-10, verdicts only for tasks that exist."""
    ids = tuple(done_ids)
    verdict = create_model(
        "TaskVerdict", __base__=TaskVerdict,
        id=(_enum(ids), Field(description="id of a finished task")),
        verdict=(Literal["approve", "revise"], Field(default="approve")),
        feedback=(str, Field(default="", description="for revise: what exactly to change (required)")))
    return create_model(
        "ReviewResult", __base__=ReviewResult,
        score=(float, Field(ge=0, le=10, description="overall quality from 0 to 10")),
        summary=(str, Field(default="", description="two or three sentences")),
        tasks=(list[verdict], Field(default_factory=list, max_length=len(ids),
                                    description="only tasks that clearly need work, each at most once")))


class _CohesionReply(BaseModel):
    @field_validator("transitions", mode="before", check_fields=False)
    @classmethod
    def _from_map(cls, value: Any) -> Any:
        """A server that ignores the schema often answers the map it used to be asked for."""
        if isinstance(value, dict):
            return [{"id": k, "sentence": v} for k, v in value.items()]
        return value


def cohesion_model(section_ids: Iterable[str], *, meta_limit: int = 155) -> type[BaseModel]:
    """The cohesion pass's reply: transitions as a list keyed by the document's section ids (strict
    schemas have no free-form maps). `Cohesion.model_validate(reply.model_dump())` gives the map."""
    transition = create_model("Transition", id=(_enum(section_ids), ...),
                              sentence=(str, Field(description="one sentence opening that section")))
    return create_model(
        "Cohesion", __base__=_CohesionReply,
        title=(str, Field(min_length=1, description="the document's title")),
        meta_description=(str, Field(default="", max_length=meta_limit)),
        introduction=(str, Field(default="", description="a short introduction")),
        transitions=(list[transition], Field(default_factory=list, description="sections after the first")))


def output_model(name: str | None, roles: dict[str, Any], team: Iterable[str] | None = None) -> type[BaseModel] | None:
    """A role's structured output for this run; a work breakdown's `role` is an enum of the run's
    team (`team`: --team or the proposed one), else of the team the workflow's scheduling tool
    staffs (its `params.team`), so every item can be scheduled by someone the user has."""
    base = OUTPUT_SCHEMAS.get(name or "")
    if base is not WorkBreakdown:
        return base
    team = list(team or []) or [r for role in roles.values()
                                for r in ((getattr(role, "params", None) or {}).get("team") or {})]
    if not team:
        return base
    item_id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
    item = create_model("WorkItem", __base__=WorkItem, id=(item_id, ...), role=(_enum(team), ...),
                        depends_on=(list[item_id], Field(default_factory=list,
                                                          description="ids of other work items in this answer")))
    return create_model("WorkBreakdown", __base__=WorkBreakdown,
                        work_items=(list[item], Field(min_length=1, max_length=60)))


def choice_model(names: Iterable[str]) -> type[BaseModel]:
    """The workflow choice for a free-text topic: an enum of the workflows, with a one-line reason."""
    def tidy(cls, value: Any) -> Any:  # "`Blog`" from a server that ignores the schema
        return value.strip().strip("`").lower() if isinstance(value, str) else value

    return create_model("WorkflowChoice", workflow=(_enum(names), Field(description="the workflow that fits best")),
                        reason=(str, Field(default="", description="one sentence")),
                        __validators__={"_tidy": field_validator("workflow", mode="before")(tidy)})
