"""Text as people type it: the one folding function every store searches with.

``fold`` turns a text into its searchable form: Unicode compatibility forms unified,
case folded, accents and other combining marks removed, Romanian s/t with comma or
cedilla as s/t, Persian and Arabic letter variants (yeh, kaf, heh, alef forms) as one,
punctuation as a space, runs of spaces as one. ``"POPESCU, Ștefan"`` and
``"popescu stefan"`` fold alike. Stores keep the folded form of every field declared
``schema.text(search=True)`` beside the field (a shadow column or document field, with
an index), computed here in Python, so every backend searches exactly the same text.

``F("name").matches(query)`` holds when every word of the folded query is a word of the
folded field, in any order; ``F("name").startswith(prefix, fold=True)`` when the folded
field starts with the folded prefix (type-ahead).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["fold", "prefix_end", "words"]

#: Letters NFKD leaves alone that people type without: Arabic-script variants written
#: differently in Persian and Arabic text, Romanian comma-below letters, and a few Latin
#: letters with no decomposition.
_SCRIPT_VARIANTS = str.maketrans(
    {
        "\u064a": "\u06cc",  # Arabic yeh -> Farsi yeh
        "\u0649": "\u06cc",  # alef maksura -> Farsi yeh
        "\u0643": "\u06a9",  # Arabic kaf -> keheh
        "\u0629": "\u0647",  # teh marbuta -> heh
        "\u0623": "\u0627",  # alef with hamza above -> alef
        "\u0625": "\u0627",  # alef with hamza below -> alef
        "\u0622": "\u0627",  # alef with madda -> alef
        "\u200c": " ",  # zero-width non-joiner: a word boundary inside a compound name
        "\u200d": "",  # zero-width joiner
        "\u0219": "s",  # Romanian s-comma (the cedilla forms go through NFKD below)
        "\u021b": "t",
        "\u00df": "ss",
        "\u0131": "i",  # dotless i
        "\u0142": "l",  # Polish l with stroke has no decomposition
        "\u00f8": "o",
        "\u00e6": "ae",
        "\u0153": "oe",
        "\u0111": "d",
    }
)
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def fold(value: str) -> str:
    """The searchable form of a text: NFKC, case-folded, accents and script variants removed.

    ``"  Ștefan-Ionuț "`` and ``"STEFAN IONUT"`` fold to ``"stefan ionut"``; Persian names
    written with Arabic yeh or kaf, or with a zero-width non-joiner, fold like their
    Persian spelling. Punctuation becomes a space, runs of spaces one space.
    """
    if value.isascii():  # most e-mail addresses, many names: nothing to normalise, no marks, no variants
        return " ".join(_NOT_WORD.sub(" ", value.lower()).split())
    text = unicodedata.normalize("NFKC", value).casefold().translate(_SCRIPT_VARIANTS)
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(_NOT_WORD.sub(" ", text).split())


def words(value: str) -> tuple[str, ...]:
    """The distinct words of a text's folded form, sorted."""
    return tuple(sorted(set(fold(value).split())))


def prefix_end(prefix: str) -> str | None:
    """The least text greater than every text starting with ``prefix`` (code-point order), or None.

    Stores search a prefix as the range ``prefix <= value < prefix_end(prefix)``, which a
    B-tree index serves; None when no such text exists (the prefix is all U+10FFFF).
    """
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    code = ord(stripped[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:  # no store holds a lone surrogate: skip to the next character
        code = 0xE000
    return stripped[:-1] + chr(code)
