"""avgeo: where on Earth was this photo, sound or video captured, and why."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "locate"]


def locate(*args, **kwargs):
    """Locate a media file; see :func:`avgeo.pipeline.locate`."""
    from avgeo.pipeline import locate as _locate

    return _locate(*args, **kwargs)
