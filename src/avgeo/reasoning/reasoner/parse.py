"""Strict parser of the reasoner's completion (format defined in `prompt.py`): anything
that does not match exactly is malformed and earns no reward."""

from __future__ import annotations

import re
from dataclasses import dataclass

CONTINENTS = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")
_NAME = r"[^|<>\n]{1,60}?"
_COORD = r"-?\d{1,3}\.\d{3}"
_ANSWER = re.compile(
    r"continent: (?P<continent>[A-Z]{2}|-) \| country: (?P<country>[A-Z]{2}|-) \| "
    rf"admin1: (?P<admin1>{_NAME}) \| city: (?P<city>{_NAME}) \| "
    rf"(?P<lat>{_COORD}), (?P<lon>{_COORD})")
_COMPLETION = re.compile(
    r"\A\s*<think>(?P<think>[^<>]{0,600})</think>\n(?P<answer>[^\n]*?)\s*\Z")


@dataclass(frozen=True)
class ParsedAnswer:
    """A well-formed completion; '' for levels written as '-'."""

    think: str
    continent: str
    country: str
    admin1: str
    city: str
    lat: float
    lon: float


def _known_country(code: str) -> bool:
    from avgeo.geo.regions import country_name

    return code == "XK" or country_name(code) != code


def parse_answer_line(line: str, think: str = "") -> ParsedAnswer | None:
    """The answer line alone (no think block), or None if it breaks the format."""
    m = _ANSWER.fullmatch(line)
    if m is None:
        return None
    cont, ctry = m["continent"], m["country"]
    if cont != "-" and cont not in CONTINENTS:
        return None
    if ctry != "-" and not _known_country(ctry):
        return None
    admin1, city = m["admin1"], m["city"]
    if admin1 != admin1.strip() or city != city.strip():
        return None  # padded names mean the separators were not written as ' | '
    lat, lon = float(m["lat"]), float(m["lon"])
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None

    def opt(s: str) -> str:
        return "" if s == "-" else s

    return ParsedAnswer(think, opt(cont), opt(ctry), opt(admin1), opt(city), lat, lon)


def parse_completion(text: str) -> ParsedAnswer | None:
    """The parsed completion, or None when it is malformed in any way."""
    if not isinstance(text, str):
        return None
    m = _COMPLETION.match(text)
    if m is None:
        return None
    return parse_answer_line(m["answer"], m["think"].strip())
