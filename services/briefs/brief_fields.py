"""Each brief type's own fields; a draft may be partial, a submitted brief must have its essentials."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.contracts.briefs import BriefType

Text = Annotated[str, Field(min_length=1, max_length=10_000)]
Line = Annotated[str, Field(min_length=1, max_length=1_000)]
Lines = Annotated[list[Line], Field(max_length=100)]


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(ge=0, max_digits=16, decimal_places=2, examples=["500000.00"])
    currency: str = Field(default="CNY", pattern="^[A-Z]{3}$")


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    # Fields a brief of this type must have before it can be submitted for sign-off.
    essentials: ClassVar[tuple[str, ...]] = ()

    def missing(self) -> list[str]:
        return [name for name in self.essentials if getattr(self, name) in (None, "", [])]


class ClientBriefFields(_Fields):
    """The client's own request (客户指令), recorded as the client gave it."""

    essentials = ("request",)
    request: Text | None = None
    background: Text | None = None
    objectives: Text | None = None
    deadline: date | None = None
    budget: Budget | None = None
    contact_person: Line | None = None


class CreativeBriefFields(_Fields):
    essentials = ("background", "objective", "target_audience", "key_insight", "single_minded_proposition")
    background: Text | None = None
    objective: Text | None = None
    target_audience: Text | None = None
    key_insight: Text | None = None
    single_minded_proposition: Text | None = None
    reasons_to_believe: Lines = []
    tone: Text | None = None
    mandatories: Lines = []
    deliverables: Lines = []
    budget: Budget | None = None
    timing: Text | None = None


class MediaBriefFields(_Fields):
    essentials = ("objectives", "target", "markets", "flight_start", "flight_end", "channels", "budget")
    objectives: Text | None = None
    target: Text | None = None
    markets: Lines = []
    flight_start: date | None = None
    flight_end: date | None = None
    channels: Lines = []
    kpis: Lines = []
    budget: Budget | None = None

    @model_validator(mode="after")
    def _flight_in_order(self) -> MediaBriefFields:
        if self.flight_start and self.flight_end and self.flight_end < self.flight_start:
            raise ValueError("flight_end is before flight_start")
        return self


class ResearchBriefFields(_Fields):
    essentials = ("background", "decisions", "objectives", "audience_and_sample", "method", "report_date")
    background: Text | None = None
    decisions: Lines = Field(default=[], description="The decisions the research feeds.")
    objectives: Text | None = None
    audience_and_sample: Text | None = None
    method: Text | None = None
    stimulus: Text | None = None
    deliverables: Lines = []
    report_date: date | None = None
    budget: Budget | None = None


FIELDS_BY_TYPE: dict[BriefType, type[_Fields]] = {
    BriefType.CLIENT: ClientBriefFields,
    BriefType.CREATIVE: CreativeBriefFields,
    BriefType.MEDIA: MediaBriefFields,
    BriefType.RESEARCH: ResearchBriefFields,
}


def parse_fields(brief_type: BriefType, raw: dict[str, Any]) -> _Fields:
    """Validate `raw` as the fields of `brief_type` (raises pydantic's ValidationError)."""
    return FIELDS_BY_TYPE[brief_type].model_validate(raw)


def stored(fields: _Fields) -> dict[str, Any]:
    """The JSON kept in the database: unset fields left out, decimals and dates as text."""
    return fields.model_dump(mode="json", exclude_none=True)


def merged(brief_type: BriefType, current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A PATCH: `changes` over `current`, a null clearing a field; the result is validated whole."""
    combined = {**current, **changes}
    combined = {k: v for k, v in combined.items() if v is not None}
    return stored(parse_fields(brief_type, combined))
