"""Contact points as identity keys: e-mail addresses and phone numbers in one comparable form.

``email_key("  Ana@Example.RO ")`` is ``"ana@example.ro"``: trimmed, case-folded as a
whole address, the domain in its IDNA (ASCII) form, so ``josé@bücher.de`` and
``JOSÉ@xn--bcher-kva.de`` are one key. ``phone_key("0721 234 567", region="RO")`` is
``"+40721234567"``: E.164, read with the calling code and trunk prefix of the region for
national numbers. The table below covers the regions crmkit knows; a number written with
``+`` or ``00`` needs no region.
"""

from __future__ import annotations

import re
import unicodedata

from crmkit._errors import ValidationError

__all__ = ["CALLING_CODES", "email_key", "phone_key"]

#: Region (ISO 3166-1 alpha-2) -> (country calling code, national trunk prefix dropped from national numbers).
CALLING_CODES: dict[str, tuple[str, str]] = {
    "US": ("1", "1"),
    "CA": ("1", "1"),
    "GB": ("44", "0"),
    "IE": ("353", "0"),
    "FR": ("33", "0"),
    "DE": ("49", "0"),
    "AT": ("43", "0"),
    "CH": ("41", "0"),
    "NL": ("31", "0"),
    "BE": ("32", "0"),
    "LU": ("352", ""),
    "ES": ("34", ""),
    "PT": ("351", ""),
    "IT": ("39", ""),
    "GR": ("30", ""),
    "RO": ("40", "0"),
    "MD": ("373", "0"),
    "BG": ("359", "0"),
    "HU": ("36", "06"),
    "PL": ("48", ""),
    "CZ": ("420", ""),
    "SK": ("421", "0"),
    "SI": ("386", "0"),
    "HR": ("385", "0"),
    "RS": ("381", "0"),
    "UA": ("380", "0"),
    "SE": ("46", "0"),
    "NO": ("47", ""),
    "DK": ("45", ""),
    "FI": ("358", "0"),
    "EE": ("372", ""),
    "LV": ("371", ""),
    "LT": ("370", "8"),
    "TR": ("90", "0"),
    "IR": ("98", "0"),
    "IL": ("972", "0"),
    "AE": ("971", "0"),
    "SA": ("966", "0"),
    "EG": ("20", "0"),
    "IN": ("91", "0"),
    "PK": ("92", "0"),
    "CN": ("86", "0"),
    "JP": ("81", "0"),
    "KR": ("82", "0"),
    "AU": ("61", "0"),
    "NZ": ("64", "0"),
    "BR": ("55", "0"),
    "MX": ("52", ""),
    "AR": ("54", "0"),
    "CL": ("56", ""),
    "CO": ("57", ""),
    "ZA": ("27", "0"),
    "NG": ("234", "0"),
    "KE": ("254", "0"),
    "RU": ("7", "8"),
}
_PUNCTUATION = re.compile(r"[\s().\-/]+")
_GMAIL = frozenset({"gmail.com", "googlemail.com"})


def email_key(address: str, *, provider_rules: bool = False) -> str:
    """The comparable form of an e-mail address (ValidationError naming ``email`` if it is not one).

    With ``provider_rules``, Gmail addresses also lose dots and ``+suffix`` in the local
    part (``A.Na+crm@gmail.com`` is ``ana@gmail.com``), as Gmail delivers them alike.
    """
    if not isinstance(address, str):
        raise ValidationError("email", "must be text", address)
    text = unicodedata.normalize("NFC", address).strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in text):
        raise ValidationError("email", "is not an e-mail address", address)
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValidationError("email", "has a domain that is not a valid internationalised name", address) from None
    local = local.casefold()
    if provider_rules and domain in _GMAIL:
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def phone_key(number: str, *, region: str | None = None) -> str:
    """The E.164 form of a phone number (``+40721234567``); ValidationError naming ``phone`` otherwise.

    An international number (``+40 721 234 567``, ``0040 721 234 567``) needs no region;
    a national one (``0721 234 567``) is read with ``region``'s calling code and trunk prefix.
    """
    if not isinstance(number, str):
        raise ValidationError("phone", "must be text", number)
    text = _PUNCTUATION.sub("", unicodedata.normalize("NFKC", number).strip())
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00"):
        digits = text[2:]
    else:
        if region is None:
            raise ValidationError("region", "a national number needs a region such as RO", number)
        if region not in CALLING_CODES:
            raise ValidationError(
                "region", f"is not a region crmkit knows ({', '.join(sorted(CALLING_CODES))})", region
            )
        code, trunk = CALLING_CODES[region]
        digits = text
        if code == "1" and len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        elif trunk and digits.startswith(trunk):
            digits = digits[len(trunk) :]
        digits = code + digits
    if not digits.isdigit() or not 7 <= len(digits) <= 15 or digits.startswith("0"):
        raise ValidationError("phone", "is not a phone number (E.164 has 7 to 15 digits)", number)
    return "+" + digits
