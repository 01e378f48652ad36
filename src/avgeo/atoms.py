"""Atoms: named, time-stamped, scored cues from perception, each with a likelihood over
the globe. Every perception engine returns a list of these; reasoning fuses them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from avgeo.reasoning.likelihood import Likelihood

AtomKind = Literal[
    "metadata",
    "species",
    "species_absence",
    "sound_event",
    "mains_hum",
    "speech",
    "script",
    "language",
    "text",
    "place_name",
    "phone_prefix",
    "domain",
    "currency",
    "visual_concept",
    "acoustic_atom",
    "time_zone",
    "embedding",
]


@dataclass
class Atom:
    """One piece of evidence.

    `likelihood` is None for atoms that are informative to a reader but carry no
    geographic signal (e.g. "speech detected"). `group` pools near-duplicates (the same
    species in 40 windows) so that correlated evidence is not counted 40 times; it
    defaults to `name`.
    """

    name: str
    engine: str
    kind: AtomKind
    evidence: str
    confidence: float = 1.0
    start_s: float | None = None
    end_s: float | None = None
    value: dict[str, Any] = field(default_factory=dict)
    likelihood: Likelihood | None = None
    group: str | None = None
    contribution: float | None = None

    @property
    def pool_key(self) -> str:
        return self.group or self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "engine": self.engine,
            "kind": self.kind,
            "evidence": self.evidence,
            "confidence": float(self.confidence),
            "start_s": self.start_s,
            "end_s": self.end_s,
            "value": self.value,
            "likelihood": None if self.likelihood is None else self.likelihood.describe(),
            "contribution": self.contribution,
        }
