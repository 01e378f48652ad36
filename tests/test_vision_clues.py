"""Script, language, clue and gazetteer logic of the text engine, on strings (no OCR)."""

from __future__ import annotations

import numpy as np
import pytest

from avgeo.perception.vision.clues import currency_clues, domain_clues, phone_clues, postcode_clues
from avgeo.perception.vision.gazetteer import MixtureLikelihood, fold, match_places
from avgeo.perception.vision.language import detect_language, language_speaker_weights
from avgeo.perception.vision.script import (
    char_script,
    dominant_scripts,
    han_variant,
    script_country_weights,
)


def _top(w: dict[str, float], n: int = 3) -> list[str]:
    return sorted(w, key=lambda k: -w[k])[:n]


@pytest.mark.parametrize("ch,script", [("a", "Latin"), ("Ж", "Cyrillic"), ("λ", "Greek"),
                                       ("ب", "Arabic"), ("ש", "Hebrew"), ("क", "Devanagari"),
                                       ("ก", "Thai"), ("한", "Hangul"), ("か", "Japanese"),
                                       ("カ", "Japanese"), ("路", "Han"), ("7", None),
                                       ("-", None)])
def test_char_script(ch, script):
    assert char_script(ch) == script


def test_kana_makes_han_japanese_and_han_variant():
    assert dominant_scripts("港区できれいな")[0][0] == "Japanese"
    assert han_variant("愚园路") == "Han-Simplified"
    assert han_variant("愚園路") == "Han-Traditional"
    assert han_variant("路") is None


@pytest.mark.parametrize("script,country", [("Hangul", "KR"), ("Thai", "TH"),
                                            ("Japanese", "JP"), ("Greek", "GR"),
                                            ("Hebrew", "IL"), ("Han-Simplified", "CN"),
                                            ("Han-Traditional", "TW")])
def test_script_countries(script, country):
    w = script_country_weights(script)
    assert country in _top(w, 3)
    assert w.get("US", 0.0) < 0.05 * w[country]


def test_cyrillic_countries():
    w = script_country_weights("Cyrillic")
    assert {"RU", "BG", "BY", "UA", "RS"} <= {k for k, v in w.items() if v > 0.5}
    assert w.get("FR", 0.0) < 0.05


@pytest.mark.parametrize("text,code,country", [
    ("Mairie du 1er arrondissement, Musée du Louvre", "fr", "FR"),
    ("Улица Ленина, вход в метро", "ru", "RU"),
    ("서울 평양", "ko", "KR"),
    ("ทางลัด เพชรบุรี", "th", "TH"),
])
def test_language_and_territories(text, code, country):
    g = detect_language(text)
    assert g and g[0].code == code
    assert country in _top(language_speaker_weights(code), 3)


def test_phone_international_and_national():
    (c,) = phone_clues("Shop open 9-5, call +44 20 7946 0958")
    assert c.detail["region"] == "GB" and max(c.countries, key=c.countries.get) == "GB"
    assert phone_clues("call 020 7946 0958") == []  # national format, no region given
    (n,) = phone_clues("call 020 7946 0958", regions=["GB"])
    assert n.detail["region"] == "GB" and n.confidence < c.confidence


def test_domains():
    assert [c.countries for c in domain_clues("www.beispiel.de")] == [{"DE": 1.0}]
    assert [c.countries for c in domain_clues("visit shop.example.co.uk")] == [{"GB": 1.0}]
    assert domain_clues("www.example.com news.tv app.io") == []


def test_currency_and_postcode():
    eur = currency_clues("Menu 12,50 €")[0].countries
    assert {"DE", "FR", "IT"} <= set(eur) and "US" not in eur
    yen = currency_clues("¥1200")[0].countries
    assert {"JP", "CN"} <= set(yen)
    assert set(currency_clues("29,99 zł")[0].countries) == {"PL"}
    assert postcode_clues("London SW1A 1AA")[0].countries == {"GB": 1.0}
    assert postcode_clues("Ottawa ON K1A 0B1")[0].countries == {"CA": 1.0}
    assert postcode_clues("hello world 12") == []


def test_fold_keeps_thai_and_kana_marks():
    assert fold("Musée  du-LOUVRE") == "musee du louvre"
    assert fold("เพชรบุรี") == "เพชรบุรี"
    assert fold("ポイ") == "ポイ"


@pytest.mark.parametrize("lines,prior,name,country", [
    (["서울"], {"KR": 1.0}, "Seoul", "KR"),
    (["เพชรบุรี"], {"TH": 1.0}, "Phetchaburi", "TH"),
    (["港区"], {"JP": 1.0}, "Minato City", "JP"),
    (["Musée du LOUVRE"], {"FR": 1.0}, "Paris 01 Louvre", "FR"),
    (["PARIS"], {"FR": 1.0}, "Paris", "FR"),
])
def test_gazetteer_matches(lines, prior, name, country):
    ms = match_places(lines, prior)
    best = [m.candidates[0][0] for m in ms]
    assert any(p.name == name and p.country == country for p in best), best


def test_gazetteer_country_prior_moves_ambiguous_name():
    (m,) = [m for m in match_places(["Paris"], {"US": 1.0}) if m.query == "Paris"]
    assert m.candidates[0][0].country == "US"
    assert abs(sum(w for _, w in m.candidates) - 1.0) < 1e-9


def test_mixture_likelihood_peaks_at_components():
    from avgeo.geo.grid import global_grid

    grid = global_grid(2)
    mix = MixtureLikelihood([(48.86, 2.35, 0.7), (33.66, -95.55, 0.3)], sigma_km=30.0)
    lm = mix.log_map(grid)
    assert lm.max() == pytest.approx(0.0)
    paris, texas, sydney = (grid.locate(48.86, 2.35)[0], grid.locate(33.66, -95.55)[0],
                            grid.locate(-33.87, 151.2)[0])
    assert lm[paris] > lm[texas] > lm[sydney]
    assert np.isfinite(lm).all()
    assert mix.describe()["n"] == 2
