"""Language codes: Whisper's languages, their names, and the other codes files use.

A stream's ``language`` tag is an ISO 639-1 code (``en``, ``de``; Whisper's
own ``haw``, ``yue`` and ``jw`` too). Containers tag their audio tracks with
ISO 639-2 codes (Matroska and MP4 write ``eng``, ``deu`` or ``ger``), and the
OpenAI API names a language in full (``english``). This table, the hundred
languages Whisper knows, lets each be matched with the others.
"""

from __future__ import annotations

from typing import Final

__all__ = ["LANGUAGES", "language_name", "normalise_language", "same_language"]

LANGUAGES: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "af": ("afrikaans", ("afr",)),
    "am": ("amharic", ("amh",)),
    "ar": ("arabic", ("ara",)),
    "as": ("assamese", ("asm",)),
    "az": ("azerbaijani", ("aze",)),
    "ba": ("bashkir", ("bak",)),
    "be": ("belarusian", ("bel",)),
    "bg": ("bulgarian", ("bul",)),
    "bn": ("bengali", ("ben",)),
    "bo": ("tibetan", ("bod", "tib")),
    "br": ("breton", ("bre",)),
    "bs": ("bosnian", ("bos",)),
    "ca": ("catalan", ("cat",)),
    "cs": ("czech", ("ces", "cze")),
    "cy": ("welsh", ("cym", "wel")),
    "da": ("danish", ("dan",)),
    "de": ("german", ("deu", "ger")),
    "el": ("greek", ("ell", "gre")),
    "en": ("english", ("eng",)),
    "es": ("spanish", ("spa",)),
    "et": ("estonian", ("est",)),
    "eu": ("basque", ("eus", "baq")),
    "fa": ("persian", ("fas", "per")),
    "fi": ("finnish", ("fin",)),
    "fo": ("faroese", ("fao",)),
    "fr": ("french", ("fra", "fre")),
    "gl": ("galician", ("glg",)),
    "gu": ("gujarati", ("guj",)),
    "ha": ("hausa", ("hau",)),
    "haw": ("hawaiian", ("haw",)),
    "he": ("hebrew", ("heb",)),
    "hi": ("hindi", ("hin",)),
    "hr": ("croatian", ("hrv",)),
    "ht": ("haitian creole", ("hat",)),
    "hu": ("hungarian", ("hun",)),
    "hy": ("armenian", ("hye", "arm")),
    "id": ("indonesian", ("ind",)),
    "is": ("icelandic", ("isl", "ice")),
    "it": ("italian", ("ita",)),
    "ja": ("japanese", ("jpn",)),
    "jw": ("javanese", ("jav",)),
    "ka": ("georgian", ("kat", "geo")),
    "kk": ("kazakh", ("kaz",)),
    "km": ("khmer", ("khm",)),
    "kn": ("kannada", ("kan",)),
    "ko": ("korean", ("kor",)),
    "la": ("latin", ("lat",)),
    "lb": ("luxembourgish", ("ltz",)),
    "ln": ("lingala", ("lin",)),
    "lo": ("lao", ("lao",)),
    "lt": ("lithuanian", ("lit",)),
    "lv": ("latvian", ("lav",)),
    "mg": ("malagasy", ("mlg",)),
    "mi": ("maori", ("mri", "mao")),
    "mk": ("macedonian", ("mkd", "mac")),
    "ml": ("malayalam", ("mal",)),
    "mn": ("mongolian", ("mon",)),
    "mr": ("marathi", ("mar",)),
    "ms": ("malay", ("msa", "may")),
    "mt": ("maltese", ("mlt",)),
    "my": ("myanmar", ("mya", "bur")),
    "ne": ("nepali", ("nep",)),
    "nl": ("dutch", ("nld", "dut")),
    "nn": ("nynorsk", ("nno",)),
    "no": ("norwegian", ("nor",)),
    "oc": ("occitan", ("oci",)),
    "pa": ("punjabi", ("pan",)),
    "pl": ("polish", ("pol",)),
    "ps": ("pashto", ("pus",)),
    "pt": ("portuguese", ("por",)),
    "ro": ("romanian", ("ron", "rum")),
    "ru": ("russian", ("rus",)),
    "sa": ("sanskrit", ("san",)),
    "sd": ("sindhi", ("snd",)),
    "si": ("sinhala", ("sin",)),
    "sk": ("slovak", ("slk", "slo")),
    "sl": ("slovenian", ("slv",)),
    "sn": ("shona", ("sna",)),
    "so": ("somali", ("som",)),
    "sq": ("albanian", ("sqi", "alb")),
    "sr": ("serbian", ("srp",)),
    "su": ("sundanese", ("sun",)),
    "sv": ("swedish", ("swe",)),
    "sw": ("swahili", ("swa",)),
    "ta": ("tamil", ("tam",)),
    "te": ("telugu", ("tel",)),
    "tg": ("tajik", ("tgk",)),
    "th": ("thai", ("tha",)),
    "tk": ("turkmen", ("tuk",)),
    "tl": ("tagalog", ("tgl",)),
    "tr": ("turkish", ("tur",)),
    "tt": ("tatar", ("tat",)),
    "uk": ("ukrainian", ("ukr",)),
    "ur": ("urdu", ("urd",)),
    "uz": ("uzbek", ("uzb",)),
    "vi": ("vietnamese", ("vie",)),
    "yi": ("yiddish", ("yid",)),
    "yo": ("yoruba", ("yor",)),
    "zh": ("chinese", ("zho", "chi")),
    "yue": ("cantonese", ("yue",)),
}
"""ISO 639-1 (Whisper's) code -> (English name, ISO 639-2 codes: terminology, bibliographic)."""

_ALIASES: Final = {"jv": "jw"}  # ISO's Javanese code; Whisper writes jw
_BY_OTHER: Final = {
    other: code for code, (name, others) in LANGUAGES.items() for other in (*others, name)
}


def normalise_language(value: str | None) -> str | None:
    """The Whisper code for ``value`` (an ISO 639-1/639-2 code or an English name, any case),
    ``value`` itself lower-cased when it is none of those, or None for None/empty."""
    if not value:
        return None
    text = value.strip().lower().replace("_", " ")
    if text in LANGUAGES:
        return text
    return _ALIASES.get(text) or _BY_OTHER.get(text) or text


def same_language(a: str | None, b: str | None) -> bool:
    """True when ``a`` and ``b`` name the same language (``de``, ``deu``, ``ger``, ``german``)."""
    na, nb = normalise_language(a), normalise_language(b)
    return na is not None and na == nb


def language_name(code: str) -> str | None:
    """The English name of a language code (``en`` -> ``english``), or None if unknown."""
    known = LANGUAGES.get(normalise_language(code) or "")
    return known[0] if known else None
