"""Reasoning: atoms → posterior over the H3 grid → Chain of Region with a rationale."""
