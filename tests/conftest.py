"""Shared fixtures: the project's shared data folder and GPU skipping."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AVGEO_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU tests
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def media_dir(shared_data) -> Path:
    return shared_data / "media"


@pytest.fixture(scope="session")
def bad_dir(shared_data) -> Path:
    return shared_data / "bad"


@pytest.fixture(scope="session")
def manifest(media_dir) -> list[dict]:
    with open(media_dir / "MANIFEST.csv", newline="") as fh:
        return list(csv.DictReader(fh))
