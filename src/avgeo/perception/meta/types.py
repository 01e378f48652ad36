"""Plain result types shared by the metadata readers (a GPS fix, a GPS track)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

#: User-equivalent range error of a consumer GPS receiver; horizontal error ≈ DOP × this.
UERE_M = 5.0


def plausible_latlon(lat: float, lon: float) -> bool:
    """Finite, in range, and not the (0, 0) that receivers without a fix write."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return False
    return not (abs(lat) < 1e-9 and abs(lon) < 1e-9)


@dataclass
class GpsFix:
    """One position read from metadata. `accuracy_m` is a 1-sigma horizontal error."""

    lat: float
    lon: float
    alt_m: float | None = None
    dop: float | None = None
    time_utc: datetime | None = None
    source: str = ""
    accuracy_m: float = 30.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lat": self.lat,
            "lon": self.lon,
            "alt_m": self.alt_m,
            "dop": self.dop,
            "time_utc": None if self.time_utc is None else self.time_utc.isoformat(),
            "source": self.source,
            "accuracy_m": self.accuracy_m,
            "notes": list(self.notes),
        }


@dataclass
class GpsTrack:
    """GPS samples from telemetry (GoPro GPMF). `t_s` is media time; `fix` 0/2/3 per sample
    (-1 when the stream did not say); `dop` per sample (nan when absent)."""

    lat: np.ndarray
    lon: np.ndarray
    alt_m: np.ndarray
    t_s: np.ndarray
    fix: np.ndarray
    dop: np.ndarray
    time_utc: list[datetime | None] = field(default_factory=list)
    key: str = "GPS5"
    device: str | None = None

    def __len__(self) -> int:
        return len(self.lat)

    def valid_mask(self) -> np.ndarray:
        """Samples with a 2D/3D fix (or unknown fix) and plausible coordinates."""
        ok = np.array([plausible_latlon(float(a), float(b)) for a, b in zip(self.lat, self.lon,
                                                                              strict=True)],
                      dtype=bool)
        return ok & ((self.fix >= 2) | (self.fix < 0))


def camera_name(make: str | None, model: str | None) -> str | None:
    """"Make Model", without the make twice when the model already starts with it."""
    make, model = (make or "").strip(), (model or "").strip()
    if model.lower().startswith(make.lower()):
        make = ""
    return f"{make} {model}".strip() or None
