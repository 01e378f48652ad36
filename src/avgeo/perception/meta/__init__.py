"""Metadata perception: GPS, capture time, UTC offset and camera read from EXIF, QuickTime/MP4
boxes, GoPro GPMF telemetry and audio tags, turned into atoms by `MetadataEngine`."""

from avgeo.perception.meta.engine import MetadataEngine, read_metadata
from avgeo.perception.meta.types import GpsFix, GpsTrack

__all__ = ["GpsFix", "GpsTrack", "MetadataEngine", "read_metadata"]
