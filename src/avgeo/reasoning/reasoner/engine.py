"""The learned reasoner as a pipeline stage (not a perception engine): atoms (and, for a
vision-language policy, the file's images) in, its own Chain of Region and point out, shown
next to the fusion chain. Which policy runs: the folder passed in, else
`$AVGEO_REASONER_POLICY`, else the shipped text policy; a folder holding a Qwen-VL-style
model runs as the vision-language reasoner."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avgeo.atoms import Atom
from avgeo.reasoning.reasoner.parse import ParsedAnswer, parse_completion
from avgeo.reasoning.reasoner.prompt import PromptConfig, render_prompt_within
from avgeo.reasoning.reasoner.vlm import VlmConfig

ENV_VAR = "AVGEO_REASONER_POLICY"


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


def configured_policy_dir(policy_dir: str | Path | None = None) -> Path | None:
    """The policy folder to run: the argument, else $AVGEO_REASONER_POLICY, else None (the
    shipped default)."""
    raw = policy_dir if policy_dir is not None else os.environ.get(ENV_VAR) or None
    return Path(raw).expanduser() if raw else None


def trained_prompt_config(header: dict) -> PromptConfig:
    """The prompt limits a policy was trained with (its header's config; the defaults for a
    policy saved without one): rendering atoms otherwise shows it prompts unlike any it saw."""
    saved = (header.get("config") or {}).get("prompt") or {}
    known = set(PromptConfig.__dataclass_fields__)
    return PromptConfig(**{k: v for k, v in saved.items() if k in known})


class ReasonerEngine:
    """A loaded policy; `reason(atoms)` decodes greedily (deterministic)."""

    name = "reasoner"

    def __init__(self, policy_dir: str | Path | None = None,
                 max_new_tokens: int = 96, prompt_cfg: PromptConfig | None = None,
                 image_cfg: VlmConfig = VlmConfig()) -> None:
        from avgeo.reasoning.reasoner.vlm import is_vlm_dir, load_vlm

        path = configured_policy_dir(policy_dir)
        self.is_vlm = is_vlm_dir(path)
        if self.is_vlm:
            self.model, self.processor = load_vlm(path)
            self.tokenizer = self.processor.tokenizer
            head = path / "avgeo_reasoner.json"  # absent for a stock (untuned) checkpoint
            self.header = json.loads(head.read_text()) if head.is_file() else {}
        else:
            from avgeo.reasoning.reasoner.policy import load_policy

            self.model, self.tokenizer, self.header = load_policy(path)
        self.policy_dir = str(path or "default")
        self.max_new_tokens = max_new_tokens
        self.prompt_cfg = prompt_cfg or trained_prompt_config(self.header)
        self.image_cfg = image_cfg

    def _texts(self, items: Sequence[tuple]) -> list[str]:
        if not self.is_vlm:
            from avgeo.reasoning.reasoner.train import generate

            room = int(self.model.config.max_position_embeddings) - self.max_new_tokens

            def n_tokens(s: str) -> int:
                return len(self.tokenizer(s)["input_ids"])

            prompts = [render_prompt_within(it[0], it[1], self.prompt_cfg, n_tokens, room)
                       for it in items]
            return generate(self.model, self.tokenizer, prompts, self.max_new_tokens)
        from avgeo.reasoning.reasoner.vlm import (
            blank_image,
            generate_vlm,
            media_images,
            user_text,
        )

        texts = [user_text(it[0], it[1], self.prompt_cfg) for it in items]
        images = [media_images(it[2], self.image_cfg) if len(it) > 2 and it[2] is not None
                  else [] for it in items]
        if self.header.get("blank_for_no_image"):
            images = [im or [blank_image()] for im in images]
        return generate_vlm(self.model, self.processor, texts, images, self.max_new_tokens)

    def reason_many(self, items: Sequence[tuple]) -> list[ReasonerOutput]:
        """One output per (atoms, media kind) or (atoms, media kind, media or path); the
        media only matter to a vision-language policy, which is shown its images."""
        out = []
        for text in self._texts(items):
            p = parse_completion(text)
            if p is None:
                out.append(ReasonerOutput([], None, None, text, parsed=False,
                                          policy=self.policy_dir))
            else:
                out.append(ReasonerOutput(_chain(p), p.lat, p.lon, text, True, p.think,
                                          self.policy_dir))
        return out

    def reason(self, atoms: Sequence[Atom], media_kind: str = "unknown",
               media: Any = None) -> ReasonerOutput:
        return self.reason_many([(atoms, media_kind, media)])[0]


_ENGINES: dict[str, ReasonerEngine] = {}


def reason(atoms: Sequence[Atom], media_kind: str = "unknown",
           policy_dir: str | Path | None = None, media: Any = None) -> ReasonerOutput:
    """The learned reasoner's chain, point and raw text for one file's atoms (the policy
    is loaded once per process). `media` (a `Media` or path) gives a vision-language
    policy the file's images."""
    path = configured_policy_dir(policy_dir)
    key = str(path or "")
    if key not in _ENGINES:
        _ENGINES[key] = ReasonerEngine(path)
    return _ENGINES[key].reason(atoms, media_kind, media)
