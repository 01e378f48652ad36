"""The public result of `avgeo.locate`: a pydantic model whose field names are a contract."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ChainItem(BaseModel):
    level: str  # continent | country | admin1 | city
    code: str  # ISO 3166-1 alpha-2 for country, ISO 3166-2 for admin1 where known
    name: str
    probability: float


class Region(BaseModel):
    lat: float
    lon: float
    probability: float
    area_km2: float
    n_cells: int = 0


class CredibleRegion(BaseModel):
    level: float
    probability: float
    area_km2: float
    n_cells: int
    cells: list[str] = Field(default_factory=list, description="H3 cells, densest first")


class AtomOut(BaseModel):
    name: str
    engine: str
    kind: str
    evidence: str
    confidence: float
    start_s: float | None = None
    end_s: float | None = None
    value: dict[str, Any] = Field(default_factory=dict)
    likelihood: dict[str, Any] | None = None
    contribution: float | None = Field(
        None, description="log-odds this atom's group adds to the chosen country vs runner-up")


class HeatCell(BaseModel):
    cell: str  # H3 index
    probability: float


class TimelineSegment(BaseModel):
    start_s: float
    end_s: float
    atoms: list[str]


class SkippedEngine(BaseModel):
    name: str
    reason: str


class Engines(BaseModel):
    used: list[str] = Field(default_factory=list)
    skipped: list[SkippedEngine] = Field(default_factory=list)


class Counterfactual(BaseModel):
    removed: str
    evidence: str
    country: str
    country_probability: float
    lat: float
    lon: float
    moved_km: float


class ReasonerAnswer(BaseModel):
    """The learned reasoner's own chain and point, shown beside the fusion answer."""

    chain: list[dict[str, str]] = Field(default_factory=list)
    lat: float | None = None
    lon: float | None = None
    parsed: bool = False
    text: str = ""
    policy: str = ""
    #: The country (code) and admin-1 its point lies in ('' at sea or unparsed): a small
    #: policy can name one region and write a point in another, and the reader should see it.
    point_country: str = ""
    point_admin1: str = ""


class Prediction(BaseModel):
    id: str | None = None
    file: str | None = None
    kind: str
    duration_s: float | None = None
    lat: float
    lon: float
    point_method: str
    chain: list[ChainItem]
    regions: list[Region]
    credible_regions: list[CredibleRegion]
    atoms: list[AtomOut]
    rationale: list[str]
    timeline: list[TimelineSegment] = Field(default_factory=list)
    heatmap: list[HeatCell] = Field(
        default_factory=list, description="the most probable cells of the posterior (H3)")
    counterfactuals: list[Counterfactual] = Field(default_factory=list)
    engines: Engines
    reasoner: ReasonerAnswer | None = None
    timings_s: dict[str, float]
    use_metadata: bool = True
    notes: list[str] = Field(default_factory=list)
    version: str

    def country(self) -> str | None:
        for c in self.chain:
            if c.level == "country":
                return c.code
        return None
