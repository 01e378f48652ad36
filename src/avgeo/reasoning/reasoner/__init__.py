"""The learned reasoner: a Chain-of-Region policy that reads a file's atoms as text and
writes `<think>…</think>` plus a chain and a point, trained by SFT then GRPO on a
haversine + hierarchical reward (see `train.py`)."""

from avgeo.reasoning.reasoner.parse import ParsedAnswer, parse_completion
from avgeo.reasoning.reasoner.prompt import render_prompt, render_target

__all__ = ["ParsedAnswer", "parse_completion", "render_prompt", "render_target"]
