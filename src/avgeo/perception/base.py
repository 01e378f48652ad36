"""The perception-engine protocol and registry: every engine turns media into atoms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from avgeo.atoms import Atom
    from avgeo.media import Media


@dataclass
class EngineContext:
    """What an engine may know besides the media: options and facts other engines found
    (e.g. the capture date from metadata, used for the week of a species-range query)."""

    use_metadata: bool = True
    capture_time_utc: Any = None  # datetime | None
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class Engine(Protocol):
    """One perception engine. `media_kinds` says which media it reads."""

    name: ClassVar[str]
    media_kinds: ClassVar[tuple[str, ...]]

    def available(self) -> tuple[bool, str]:
        """(True, "") when it can run here; else (False, why + how to fix)."""
        ...

    def atoms(self, media: Media, ctx: EngineContext) -> list[Atom]:
        """Atoms found in the media. Raises AvgeoError only for user-caused problems."""
        ...


#: name → zero-argument factory. Engines register themselves at import.
REGISTRY: dict[str, Callable[[], Engine]] = {}


def register(name: str) -> Callable[[Callable[[], Engine]], Callable[[], Engine]]:
    def deco(factory: Callable[[], Engine]) -> Callable[[], Engine]:
        REGISTRY[name] = factory
        return factory

    return deco
