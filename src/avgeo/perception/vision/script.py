"""Writing system of recognised text (from Unicode) and which countries write in it
(CLDR territory–language shares via babel)."""

from __future__ import annotations

import unicodedata
from collections import Counter
from functools import lru_cache

#: Our script names → ISO 15924 codes that CLDR uses for languages written in them.
SCRIPT_ISO: dict[str, tuple[str, ...]] = {
    "Latin": ("Latn",),
    "Cyrillic": ("Cyrl",),
    "Greek": ("Grek",),
    "Arabic": ("Arab",),
    "Hebrew": ("Hebr",),
    "Devanagari": ("Deva",),
    "Bengali": ("Beng",),
    "Thai": ("Thai",),
    "Hangul": ("Kore", "Hang"),
    "Japanese": ("Jpan", "Hira", "Kana"),
    "Han": ("Hans", "Hant", "Hani"),
    "Han-Simplified": ("Hans",),
    "Han-Traditional": ("Hant",),
    "Georgian": ("Geor",),
    "Armenian": ("Armn",),
    "Ethiopic": ("Ethi",),
    "Tamil": ("Taml",),
    "Khmer": ("Khmr",),
    "Lao": ("Laoo",),
    "Myanmar": ("Mymr",),
}

# Unicode character-name prefixes → script. Names are stable across Unicode versions and
# avoid a hand-kept table of code-point ranges.
_NAME_PREFIX: tuple[tuple[str, str], ...] = (
    ("LATIN", "Latin"),
    ("CYRILLIC", "Cyrillic"),
    ("GREEK", "Greek"),
    ("ARABIC", "Arabic"),
    ("HEBREW", "Hebrew"),
    ("DEVANAGARI", "Devanagari"),
    ("BENGALI", "Bengali"),
    ("THAI", "Thai"),
    ("HANGUL", "Hangul"),
    ("HIRAGANA", "Japanese"),
    ("KATAKANA", "Japanese"),
    ("CJK UNIFIED IDEOGRAPH", "Han"),
    ("CJK COMPATIBILITY IDEOGRAPH", "Han"),
    ("GEORGIAN", "Georgian"),
    ("ARMENIAN", "Armenian"),
    ("ETHIOPIC", "Ethiopic"),
    ("TAMIL", "Tamil"),
    ("KHMER", "Khmer"),
    ("LAO", "Lao"),
    ("MYANMAR", "Myanmar"),
)


@lru_cache(maxsize=65536)
def char_script(ch: str) -> str | None:
    """Script of one character, or None for digits, punctuation, symbols and unknowns."""
    if not ch.isalpha() and unicodedata.category(ch) not in ("Mn", "Mc", "Lm", "Lo"):
        return None
    if ch in "\u30fc\u30fb":  # prolonged sound mark / middle dot: only used with kana
        return "Japanese"
    name = unicodedata.name(ch, "")
    for prefix, script in _NAME_PREFIX:
        if name.startswith(prefix):
            return script
    return None


def script_counts(text: str) -> Counter[str]:
    """Number of letters per script in `text`."""
    return Counter(s for s in map(char_script, text) if s is not None)


def han_variant(text: str) -> str | None:
    """'Han-Simplified' / 'Han-Traditional' when the Han characters lean one way, else None.

    A character encodable in GB2312 but not Big5 is a simplified form, the reverse a
    traditional one; characters shared by both say nothing. (Japanese shinjitai also
    simplify some characters, so call this only for text without kana.)
    """
    simp = trad = 0
    for ch in text:
        if char_script(ch) != "Han":
            continue
        in_gb = _encodable(ch, "gb2312")
        in_big5 = _encodable(ch, "big5")
        simp += in_gb and not in_big5
        trad += in_big5 and not in_gb
    if simp == trad:
        return None
    return "Han-Simplified" if simp > trad else "Han-Traditional"


def _encodable(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def dominant_scripts(text: str, min_share: float = 0.15) -> list[tuple[str, int]]:
    """Scripts holding at least `min_share` of the letters, most letters first. Han next
    to kana is Japanese; Han alone is refined to simplified/traditional when it can be."""
    counts = script_counts(text)
    if counts.get("Japanese") and counts.get("Han"):
        counts["Japanese"] += counts.pop("Han")
    total = sum(counts.values())
    if total == 0:
        return []
    out = [(s, n) for s, n in counts.most_common() if n / total >= min_share]
    if "Han" in counts:
        variant = han_variant(text)
        if variant:
            out = [(variant if s == "Han" else s, n) for s, n in out]
    return out


@lru_cache(maxsize=1)
def _lang_script_table() -> dict[str, dict[str, float]]:
    """territory → {ISO 15924 script → share of people using a language written in it}."""
    from babel.core import get_global

    tl = get_global("territory_languages")
    likely = get_global("likely_subtags")
    out: dict[str, dict[str, float]] = {}
    for terr, langs in tl.items():
        if not (len(terr) == 2 and terr.isalpha()):
            continue  # numeric UN regions like 001
        miss: dict[str, float] = {}
        for lang, info in langs.items():
            pct = float(info.get("population_percent") or 0.0)
            if pct <= 0:
                continue
            script = language_script(lang, terr, likely)
            if script is None:
                continue
            # Share using at least one language in this script, languages taken as
            # independent (CLDR shares overlap: people speak several).
            miss[script] = miss.get(script, 1.0) * (1.0 - min(pct, 100.0) / 100.0)
        out[terr] = {s: 1.0 - m for s, m in miss.items()}
    return out


def language_script(lang: str, territory: str | None = None, likely: dict | None = None
                    ) -> str | None:
    """ISO 15924 script a CLDR language tag ('sr', 'zh_Hant', 'uz_Arab') is written in,
    in `territory` when given (zh in TW is Hant, in CN Hans)."""
    parts = lang.split("_")
    if len(parts) > 1 and len(parts[1]) == 4:
        return parts[1]
    if likely is None:
        from babel.core import get_global

        likely = get_global("likely_subtags")
    for key in ([f"{lang}_{territory}"] if territory else []) + [lang]:
        full = likely.get(key)
        if full:
            for p in full.split("_")[1:]:
                if len(p) == 4:
                    return p
    return None


def script_country_weights(script: str, min_share: float = 1e-4) -> dict[str, float]:
    """P(text in this script | country), from CLDR's territory–language shares.

    These are likelihoods (shares), not speaker counts: the population prior is the
    reasoner's job, and multiplying it in here would count it once per atom.
    """
    isos = SCRIPT_ISO.get(script, ())
    table = _lang_script_table()
    out: dict[str, float] = {}
    for terr, shares in table.items():
        w = max((shares.get(iso, 0.0) for iso in isos), default=0.0)
        if w >= min_share:
            out[terr] = w
    if script == "Latin":
        # Latin letters appear on signs everywhere (brands, transliteration, numbers with
        # units), so seeing some is weak evidence; keep a broad floor for every country.
        for terr in table:
            out[terr] = max(out.get(terr, 0.0), 0.3)
    return out
