"""OCR on textures must not invent writing: stray glyphs are not a script."""

from __future__ import annotations

import pytest

from avgeo.media import open_media
from avgeo.perception.base import EngineContext
from avgeo.perception.vision.engine import TextEngine, _worded_text


class _W:
    def __init__(self, text: str) -> None:
        self.text = text


def test_isolated_glyphs_are_dropped():
    words = [_W("เว"), _W("จ"), _W("ะ"), _W("서"), _W("Seoul")]
    assert _worded_text(words) == "เว 서 Seoul"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["arezzo_dscn0010.jpg", "lund_29.jpg",
                                  "carlsbad_gopro_max.mp4"])
def test_street_photos_get_no_foreign_script(media_dir, name):
    eng = TextEngine()
    if not eng.available()[0]:
        pytest.skip(eng.available()[1])
    atoms = eng.atoms(open_media(media_dir / name), EngineContext(use_metadata=False))
    scripts = {a.value.get("script") for a in atoms if a.kind == "script"}
    assert scripts <= {"Latin"}, scripts
