"""Errors a user can cause, each with a one-line message and a fix hint.

Anything else that escapes is a bug: the CLI reports it as such and exits 70.
"""

from __future__ import annotations


class AvgeoError(Exception):
    """Base class for user-caused errors. `hint` says how to fix it."""

    hint: str = "see `avgeo --help`"
    #: HTTP status the service answers with for this error.
    http_status: int = 400
    #: CLI exit status.
    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = " ".join(str(message).split())
        if hint is not None:
            self.hint = hint

    def one_line(self) -> str:
        return f"error: {self.message} (hint: {self.hint})"


class MediaError(AvgeoError):
    """A media file cannot be used."""

    http_status = 415
    exit_code = 3
    hint = "pass a photo (JPEG/PNG/HEIC/WebP), audio (WAV/FLAC/MP3/OGG/M4A) or video (MP4/MOV/MKV)"


class MediaNotFoundError(MediaError):
    http_status = 404
    hint = "check the path"


class UnsupportedMediaError(MediaError):
    """Not a media file we can decode (wrong content, unknown codec)."""


class CorruptMediaError(MediaError):
    """Looks like media but fails to decode."""

    hint = "the file is damaged or truncated; re-export or re-download it"


class EmptyMediaError(MediaError):
    """Decodes, but holds nothing to analyse (0 bytes, no streams, too short)."""

    http_status = 422
    hint = "pass a file with content (audio needs at least about 1 s)"


class InputTooLargeError(MediaError):
    """Exceeds a configured limit (pixels, duration, bytes)."""

    http_status = 413
    hint = "raise the limit (see `avgeo locate --help`) or pass a smaller file"


class TableError(AvgeoError):
    """A CSV/Parquet table is missing columns, has bad values or does not join."""

    exit_code = 4
    http_status = 422
    hint = "fix the named row/column, or name the columns with --id/--lat/--lon"


class BackboneMissingError(AvgeoError):
    """An optional engine's package or weights are not installed."""

    exit_code = 5
    http_status = 422
    hint = "install the optional package or pass --engines without it"


class WeightsError(BackboneMissingError):
    """Model weights are missing, unreadable or of the wrong version."""

    hint = "point to a valid weights file or re-run the matching `avgeo train` command"


class ConfigError(AvgeoError):
    """Bad options or configuration."""

    exit_code = 2
    http_status = 422
    hint = "check the option values (see --help)"
