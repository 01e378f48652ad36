"""Textual clues in recognised text: phone numbers, ccTLD web domains, currency signs and
codes, distinctive postcodes; each names the countries it points at."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass
class Clue:
    kind: str  # "phone_prefix" | "domain" | "currency" | "postcode"
    match: str
    countries: dict[str, float]
    confidence: float
    detail: dict[str, object] = field(default_factory=dict)


def _digits_fixed(text: str) -> str:
    """OCR swaps letters and digits inside numbers (O→0, l/I→1); fix only runs that are
    mostly digits so words stay intact."""
    def fix(m: re.Match) -> str:
        s = m.group(0)
        return s.translate(str.maketrans({"O": "0", "o": "0", "l": "1", "I": "1", "|": "1"}))

    return re.sub(r"[+(]?\d[\dOolI|()\-. ]{6,}\d", fix, text)


def phone_clues(text: str, regions: list[str] | None = None) -> list[Clue]:
    """International numbers (+CC …) anywhere; national formats only when tried against
    candidate `regions` (from script/language) and valid there."""
    # (not phonenumbers.geocoder: its place-name tables cost ~100 MB of memory)
    import phonenumbers
    from phonenumbers import PhoneNumberMatcher

    text = _digits_fixed(text)
    out: list[Clue] = []
    seen: set[str] = set()
    for region, conf in [(None, 0.9)] + [(r, 0.5) for r in (regions or [])]:
        try:
            matcher = PhoneNumberMatcher(text, region or "ZZ",
                                         leniency=phonenumbers.Leniency.VALID)
        except Exception:
            continue
        for m in matcher:
            num = m.number
            if region is None and not m.raw_string.lstrip().startswith(("+", "00")):
                continue
            key = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
            if key in seen:
                continue
            seen.add(key)
            codes = phonenumbers.region_codes_for_country_code(num.country_code)
            main = phonenumbers.region_code_for_number(num)
            weights = {c: (1.0 if c == main else 0.3) for c in codes if c != "001"}
            if not weights:
                continue
            out.append(Clue("phone_prefix", m.raw_string, weights, conf,
                            {"e164": key, "country_code": num.country_code,
                             "region": main, "international": region is None}))
    return out


# Country-code TLDs whose registrations are mostly foreign (sold as generic names).
_GENERIC_CCTLDS = {"tv", "io", "co", "me", "fm", "ai", "ly", "gg", "to", "ws", "cc", "nu",
                   "tk", "ml", "ga", "cf", "gq", "sh", "ac", "vc", "la", "am", "im", "is",
                   "app", "dev"}
_TLD_ALIAS = {"uk": "GB", "su": "RU", "eu": None}
_DOMAIN = re.compile(
    r"(?<![\w@.-])((?:www\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,}))(?![\w.-]*@)",
    re.IGNORECASE)


@lru_cache(maxsize=1)
def _alpha2() -> set[str]:
    import pycountry

    return {c.alpha_2 for c in pycountry.countries}


def domain_clues(text: str) -> list[Clue]:
    """Web domains ending in a country-code TLD. Generic TLDs (.com, .org) and ccTLDs
    sold worldwide (.tv, .io, .co, .me …) say nothing about the place."""
    out = []
    for m in _DOMAIN.finditer(text.replace(" . ", ".")):
        host, tld = m.group(1), m.group(2).lower()
        if host.count(".") < 1 or len(tld) != 2 or tld in _GENERIC_CCTLDS:
            continue
        if not (host.lower().startswith("www.") or re.search(r"[a-z]{3,}\.", host, re.I)):
            continue
        cc = _TLD_ALIAS.get(tld, tld.upper())
        if cc is None or cc not in _alpha2():
            continue
        conf = 0.8 if host.lower().startswith("www.") else 0.6
        out.append(Clue("domain", host, {cc: 1.0}, conf, {"tld": tld}))
    return out


# Symbols used by one currency family each; ambiguous ones map to several codes.
_SYMBOLS: dict[str, tuple[str, ...]] = {
    "€": ("EUR",), "£": ("GBP", "EGP", "GIP", "FKP", "SHP"), "¥": ("JPY", "CNY"),
    "円": ("JPY",), "元": ("CNY",), "₹": ("INR",), "₩": ("KRW",), "฿": ("THB",),
    "₽": ("RUB",), "₺": ("TRY",), "₴": ("UAH",), "₪": ("ILS",), "₫": ("VND",),
    "₱": ("PHP",), "₦": ("NGN",), "₸": ("KZT",), "₾": ("GEL",), "₼": ("AZN",),
    "zł": ("PLN",), "Kč": ("CZK",), "лв": ("BGN",), "Ft": ("HUF",), "lei": ("RON",),
    "kr": ("SEK", "NOK", "DKK", "ISK"), "R$": ("BRL",), "руб": ("RUB",),
}
_CODE = re.compile(r"(?<![A-Z])([A-Z]{3})(?![A-Z])")
_NUMBER = re.compile(r"\d")


@lru_cache(maxsize=1)
def currency_territories() -> dict[str, list[str]]:
    """Currency code → territories where it is tender now (CLDR via babel)."""
    from babel.core import get_global

    out: dict[str, list[str]] = {}
    for terr, entries in get_global("territory_currencies").items():
        if not (len(terr) == 2 and terr.isalpha()):
            continue
        for code, _start, end, tender in entries:
            if end is None and tender:
                out.setdefault(code, []).append(terr)
    return out


def currency_clues(text: str) -> list[Clue]:
    """Currency symbols (next to a number, or unique ones alone) and ISO codes next to a
    number."""
    terr = currency_territories()
    out = []
    for sym, codes in _SYMBOLS.items():
        for m in re.finditer(re.escape(sym), text):
            near = text[max(0, m.start() - 8):m.end() + 8]
            if len(sym) > 1 and sym.isalpha():
                # word-like symbols (kr, lei, Ft) only right beside a number
                if not re.search(rf"\d\s?{re.escape(sym)}\b|\b{re.escape(sym)}\.?\s?\d", near):
                    continue
            elif not _NUMBER.search(near) and len(codes) > 1:
                continue
            weights: dict[str, float] = {}
            for code in codes:
                for t in terr.get(code, []):
                    weights[t] = 1.0 if code == codes[0] else max(weights.get(t, 0.0), 0.5)
            if weights:
                out.append(Clue("currency", sym, weights, 0.6, {"codes": list(codes)}))
            break
    for m in _CODE.finditer(text):
        code = m.group(1)
        near = text[max(0, m.start() - 6):m.end() + 6]
        if code in terr and _NUMBER.search(near):
            out.append(Clue("currency", code, {t: 1.0 for t in terr[code]}, 0.5,
                            {"codes": [code]}))
    return out


# Only formats distinctive enough that a random token rarely matches.
_POSTCODES: list[tuple[str, re.Pattern, float]] = [
    ("GB", re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}\b"), 0.3),
    ("CA", re.compile(r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z]\s\d[ABCEGHJ-NPRSTV-Z]\d\b"), 0.3),
    ("NL", re.compile(r"\b[1-9]\d{3}\s?(?!SA|SD|SS)[A-Z]{2}\b"), 0.15),
    ("JP", re.compile(r"〒\s?\d{3}-\d{4}"), 0.5),
    ("BR", re.compile(r"\b\d{5}-\d{3}\b"), 0.15),
]


def postcode_clues(text: str) -> list[Clue]:
    out = []
    for cc, pat, conf in _POSTCODES:
        for m in pat.finditer(text):
            out.append(Clue("postcode", m.group(0), {cc: 1.0}, conf, {}))
    return out


def all_clues(text: str, regions: list[str] | None = None) -> list[Clue]:
    return (phone_clues(text, regions) + domain_clues(text) + currency_clues(text)
            + postcode_clues(text))
