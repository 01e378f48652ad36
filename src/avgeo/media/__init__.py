"""Media decoding: sniff content, probe containers, stream audio chunks and video frames,
load photos upright in RGB, all under resource limits."""

from avgeo.media.audio import AudioChunk
from avgeo.media.container import DataPacket, Media, StreamInfo, open_media
from avgeo.media.limits import DEFAULT_LIMITS, Limits
from avgeo.media.photo import to_rgb
from avgeo.media.sniff import Sniff, sniff_bytes
from avgeo.media.video import Frame

__all__ = [
    "DEFAULT_LIMITS",
    "AudioChunk",
    "DataPacket",
    "Frame",
    "Limits",
    "Media",
    "Sniff",
    "StreamInfo",
    "open_media",
    "sniff_bytes",
    "to_rgb",
]
