"""Finding a model folder the user saved with `save_pretrained` (never a hub download)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from avgeo.errors import BackboneMissingError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def resolve_model_dir(options: dict[str, Any] | None, option: str, env_var: str, what: str,
                      hint: str) -> Path:
    """The folder named by `options[option]` or `$env_var`; BackboneMissingError (naming
    `what`) when unset, missing, or lacking config.json or weights."""
    raw = (options or {}).get(option) or os.environ.get(env_var)
    if not raw:
        raise BackboneMissingError(f"no {what} configured", hint)
    p = Path(str(raw)).expanduser()
    if not p.is_dir():
        raise BackboneMissingError(f"{what} folder not found: {p}", hint)
    if not (p / "config.json").is_file():
        raise BackboneMissingError(f"{what} folder has no config.json: {p}", hint)
    if not any((p / f).is_file() for f in WEIGHT_FILES):
        raise BackboneMissingError(f"{what} folder has no weights: {p}", hint)
    return p
