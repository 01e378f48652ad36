"""Shipped flow weights (the MP-16 photo-location prior); see README.md here."""

from __future__ import annotations

from pathlib import Path

from avgeo.errors import WeightsError

PRIOR_FILE = Path(__file__).with_name("prior_mp16.pt")


def default_prior_path() -> Path:
    if not PRIOR_FILE.is_file():
        raise WeightsError(f"the shipped flow prior {PRIOR_FILE.name} is missing",
                           hint="reinstall avgeo or run scripts/train_flow_prior.py")
    return PRIOR_FILE
