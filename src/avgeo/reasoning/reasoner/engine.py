"""The learned reasoner as a pipeline stage (not a perception engine): atoms in, its own
Chain of Region and point out, shown next to the fusion chain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avgeo.atoms import Atom
from avgeo.reasoning.reasoner.parse import ParsedAnswer, parse_completion
from avgeo.reasoning.reasoner.prompt import PromptConfig, render_prompt


@dataclass
class ReasonerOutput:
    """`chain`: [{level, code, name}] continent → city ('' code where there is none);
    lat/lon None and `parsed` False when the policy wrote a malformed answer."""

    chain: list[dict[str, str]]
    lat: float | None
    lon: float | None
    text: str
    parsed: bool = True
    think: str = ""
    policy: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _chain(p: ParsedAnswer) -> list[dict[str, str]]:
    from avgeo.geo.regions import continent_name, country_name

    out = []
    if p.continent:
        out.append({"level": "continent", "code": p.continent,
                    "name": continent_name(p.continent)})
    if p.country:
        out.append({"level": "country", "code": p.country, "name": country_name(p.country)})
    if p.admin1:
        out.append({"level": "admin1", "code": "", "name": p.admin1})
    if p.city:
        out.append({"level": "city", "code": "", "name": p.city})
    return out


class ReasonerEngine:
    """A loaded policy; `reason(atoms)` decodes greedily (deterministic)."""

    name = "reasoner"

    def __init__(self, policy_dir: str | Path | None = None,
                 max_new_tokens: int = 96, prompt_cfg: PromptConfig = PromptConfig()) -> None:
        from avgeo.reasoning.reasoner.policy import load_policy

        self.model, self.tokenizer, self.header = load_policy(policy_dir)
        self.policy_dir = str(policy_dir or "default")
        self.max_new_tokens = max_new_tokens
        self.prompt_cfg = prompt_cfg

    def reason_many(self, items: Sequence[tuple[Sequence[Atom], str]]) -> list[ReasonerOutput]:
        from avgeo.reasoning.reasoner.train import generate

        prompts = [render_prompt(a, k, self.prompt_cfg) for a, k in items]
        texts = generate(self.model, self.tokenizer, prompts, self.max_new_tokens)
        out = []
        for text in texts:
            p = parse_completion(text)
            if p is None:
                out.append(ReasonerOutput([], None, None, text, parsed=False,
                                          policy=self.policy_dir))
            else:
                out.append(ReasonerOutput(_chain(p), p.lat, p.lon, text, True, p.think,
                                          self.policy_dir))
        return out

    def reason(self, atoms: Sequence[Atom], media_kind: str = "unknown") -> ReasonerOutput:
        return self.reason_many([(atoms, media_kind)])[0]


_ENGINES: dict[str, ReasonerEngine] = {}


def reason(atoms: Sequence[Atom], media_kind: str = "unknown",
           policy_dir: str | Path | None = None) -> ReasonerOutput:
    """The learned reasoner's chain, point and raw text for one file's atoms (the policy
    is loaded once per process)."""
    key = str(policy_dir or "")
    if key not in _ENGINES:
        _ENGINES[key] = ReasonerEngine(policy_dir)
    return _ENGINES[key].reason(atoms, media_kind)
