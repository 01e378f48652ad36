"""Resource limits applied to every input before and while it is decoded.

Defaults suit a single workstation; the CLI and the HTTP service may tighten them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """What avgeo agrees to decode. Exceeding one raises InputTooLargeError (or
    EmptyMediaError for `min_audio_s`)."""

    #: Largest photo or video frame, in pixels (width × height), checked from the header.
    max_pixels: int = 100_000_000
    #: Longest recording accepted (12 h).
    max_duration_s: float = 12 * 3600.0
    #: Largest file accepted (8 GB).
    max_bytes: int = 8 * 1024**3
    #: Shorter audio cannot carry enough signal for any of the audio engines.
    min_audio_s: float = 0.5
    #: Isolated undecodable packets tolerated before a stream counts as corrupt.
    max_bad_packets: int = 16

    def __post_init__(self) -> None:
        from avgeo.errors import ConfigError

        for name in ("max_pixels", "max_duration_s", "max_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"limit {name} must be positive, got {getattr(self, name)}")
        if self.min_audio_s < 0 or self.max_bad_packets < 0:
            raise ConfigError("limits min_audio_s and max_bad_packets must be >= 0")


DEFAULT_LIMITS = Limits()
