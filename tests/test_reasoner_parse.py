"""The reasoner's output format: a strict parser that accepts exactly the documented form."""

from __future__ import annotations

import pytest

from avgeo.atoms import Atom
from avgeo.reasoning.likelihood import CountryLikelihood, LongitudeBand, PointLikelihood
from avgeo.reasoning.reasoner.parse import parse_completion
from avgeo.reasoning.reasoner.prompt import (
    ANSWER_CUE,
    Answer,
    format_answer,
    render_prompt,
    render_target,
)

GOOD = ("<think>script Latin; language it . so EU IT</think>\n"
        "continent: EU | country: IT | admin1: Tuscany | city: Arezzo | 43.467, 11.885")


def test_parses_the_documented_form() -> None:
    p = parse_completion(GOOD)
    assert p is not None
    assert (p.continent, p.country, p.admin1, p.city) == ("EU", "IT", "Tuscany", "Arezzo")
    assert (p.lat, p.lon) == (43.467, 11.885)
    assert p.think == "script Latin; language it . so EU IT"


def test_unknown_levels_and_trailing_whitespace() -> None:
    p = parse_completion("<think></think>\ncontinent: - | country: - | admin1: - | city: - | "
                         "-0.500, -179.999  \n")
    assert p is not None
    assert (p.continent, p.country, p.admin1, p.city) == ("", "", "", "")
    assert (p.lat, p.lon) == (-0.5, -179.999)


def test_names_with_spaces_accents_and_hyphens() -> None:
    p = parse_completion("<think>x</think>\ncontinent: EU | country: FR | admin1: Île-de-France"
                         " | city: Saint-Denis de la Réunion | 48.857, 2.352")
    assert p is not None and p.admin1 == "Île-de-France"


MALFORMED = [
    "",
    "hello",
    GOOD.replace("<think>", ""),
    GOOD.replace("</think>", ""),
    GOOD.replace("</think>\n", "</think>"),
    GOOD.replace("</think>\n", "</think>\n\n"),
    GOOD.replace("</think>\n", "</think> "),
    GOOD + "\nmore text",
    GOOD + " extra",
    GOOD.replace("continent: EU", "continent: Europe"),
    GOOD.replace("continent: EU", "continent: XX"),
    GOOD.replace("continent: EU", "continent: eu"),
    GOOD.replace("country: IT", "country: Italy"),
    GOOD.replace("country: IT", "country: ZZ"),
    GOOD.replace("country: IT", "country: ITA"),
    GOOD.replace("country: IT", "country:IT"),
    GOOD.replace(" | admin1", " admin1"),
    GOOD.replace(" | admin1", "| admin1"),
    GOOD.replace(" | admin1", " |  admin1"),
    GOOD.replace("admin1: Tuscany", "admin1: "),
    GOOD.replace("admin1: Tuscany", "admin1: Tus|cany"),
    GOOD.replace("city: Arezzo", "city: " + "A" * 61),
    GOOD.replace("city: Arezzo | ", ""),
    GOOD.replace("43.467, 11.885", "43.47, 11.885"),
    GOOD.replace("43.467, 11.885", "43.4670, 11.885"),
    GOOD.replace("43.467, 11.885", "43.467,11.885"),
    GOOD.replace("43.467, 11.885", "43.467 11.885"),
    GOOD.replace("43.467, 11.885", "43, 11"),
    GOOD.replace("43.467, 11.885", "91.000, 11.885"),
    GOOD.replace("43.467, 11.885", "43.467, 180.001"),
    GOOD.replace("43.467, 11.885", "+43.467, 11.885"),
    GOOD.replace("43.467, 11.885", "43.467N, 11.885E"),
    GOOD.replace("43.467, 11.885", "nan, 11.885"),
    GOOD.replace("43.467, 11.885", "1e1, 11.885"),
    GOOD.replace("43.467, 11.885", ""),
    GOOD.replace("continent: EU | ", ""),
    "<think>a<b</think>\ncontinent: EU | country: IT | admin1: T | city: A | 1.000, 2.000",
    "<think>x</think>\n<think>y</think>\ncontinent: EU | country: IT | admin1: T | city: A | "
    "1.000, 2.000",
    "<think>" + "x" * 601 + "</think>\ncontinent: EU | country: IT | admin1: T | city: A | "
    "1.000, 2.000",
    GOOD.replace("\n", "\ncontinent: EU\n"),
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_is_rejected(text: str) -> None:
    assert parse_completion(text) is None


def test_non_string_is_rejected() -> None:
    assert parse_completion(None) is None  # type: ignore[arg-type]


def test_format_answer_round_trips_and_wraps_longitude() -> None:
    ans = Answer("OC", "NZ", "Canterbury", "Christchurch", -43.5321, 172.6362)
    p = parse_completion(f"<think>t</think>\n{format_answer(ans)}")
    assert p is not None and (p.lat, p.lon) == (-43.532, 172.636)
    wrapped = format_answer(Answer("", "", "", "", 10.0, 190.0))
    assert wrapped.endswith("10.000, -170.000")
    assert "admin1: - | city: -" in wrapped


def test_names_with_separators_are_cleaned_to_stay_parsable() -> None:
    ans = Answer("EU", "FR", "A|B", "<x>", 1.0, 2.0)
    assert parse_completion(render_target([], ans)) is not None


def test_render_prompt_shows_atoms_and_likelihoods() -> None:
    atoms = [
        Atom("place:Arezzo", "ocr", "place_name", "'AREZZO' matches Arezzo (IT)", 0.8,
             likelihood=PointLikelihood(43.46, 11.88, 30.0)),
        Atom("language:it", "ocr", "language", "text is Italian", 0.7,
             likelihood=CountryLikelihood({"IT": 1.0, "SM": 0.9, "CH": 0.2})),
        Atom("utc_offset:+1h", "meta", "time_zone", "UTC+1", 0.9,
             likelihood=LongitudeBand(-5.0, 35.0)),
        Atom("speech", "speech", "speech", "speech 0–2 s", 0.6, start_s=0.0, end_s=2.0),
        Atom("speech", "speech", "speech", "speech 5–9 s", 0.7, start_s=5.0, end_s=9.0),
    ]
    text = render_prompt(atoms, "photo")
    assert text.endswith(ANSWER_CUE)
    assert "point 43.5,11.9 ±30km" in text
    assert "countries IT:1.0 SM:0.9 CH:0.2" in text
    assert "lon -5..35" in text
    # the two speech windows are pooled into one line with their count and span
    assert "x2 t=0-9s" in text
    assert text.index("place:Arezzo") < text.index("speech")
    assert "atoms: none" in render_prompt([], "audio")
