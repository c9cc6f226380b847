"""Redact personal data from text before it reaches an LLM or analytics.

Each kind is a precompiled candidate pattern plus, where a format has one, a checksum or
range validator, so ordinary numbers (order numbers, prices, dates, postcodes) survive.
"""

import datetime
import functools
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["Redaction", "redact"]


@dataclass(frozen=True)
class Redaction:
    """The redacted text and how many spans of each kind were replaced."""

    text: str
    counts: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# Boundaries are ASCII-only on purpose: Chinese characters count as \w, and
# "我的手机是13812345678谢谢" has no word boundary around the number.
_NOT_AFTER_ALNUM = r"(?<![0-9A-Za-z])"
_NOT_BEFORE_ALNUM = r"(?![0-9A-Za-z])"

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    + _NOT_BEFORE_ALNUM
)

# Country code, 2 check digits, then up to 30 alphanumerics, optionally in groups of 4.
_IBAN = re.compile(
    _NOT_AFTER_ALNUM
    + r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
    + _NOT_BEFORE_ALNUM,
    re.IGNORECASE,
)

_CN_ID = re.compile(_NOT_AFTER_ALNUM + r"[1-9][0-9]{16}[0-9Xx]" + _NOT_BEFORE_ALNUM)

# A "+" in front makes it an international phone number, not a card.
_CARD = re.compile(
    r"(?<![0-9A-Za-z+])"
    r"(?:[0-9]{13,19}|[0-9]{4}(?P<sep>[ -])[0-9]{4,6}(?:(?P=sep)[0-9]{1,5}){1,3})"
    + _NOT_BEFORE_ALNUM
)

# A loose candidate (hex groups and colons, maybe a dotted IPv4 tail); ipaddress decides.
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z.])(?:[0-9A-Fa-f]{1,4})?(?::[0-9A-Fa-f]{0,4}){2,8}(?:\.[0-9]{1,3}){0,3}"
    r"(?![0-9A-Za-z:]|\.[0-9])"
)

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = re.compile(
    r"(?<![0-9A-Za-z.])" + _OCTET + r"(?:\." + _OCTET + r"){3}" + r"(?![0-9A-Za-z]|\.[0-9])"
)

_PHONE = re.compile(
    r"(?<![0-9A-Za-z+])(?:"
    # International: +country code, then groups split by spaces, dashes, dots or (…).
    r"\+[0-9]{1,3}(?:[ .-]?(?:\([0-9]{1,5}\)|[0-9]{1,5})){1,6}"
    # Chinese mobile, optionally +86 / 86 / 0086 prefixed, optionally split 3-4-4.
    r"|(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}"
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-1234.
    r"|(?:1[ .-])?(?:\([0-9]{3}\) ?|[0-9]{3}[-.])[0-9]{3}[-.][0-9]{4}"
    r")" + _NOT_BEFORE_ALNUM
)

_CN_MOBILE_WITH_86 = re.compile(r"861[3-9][0-9]{9}")
_NON_DIGITS = re.compile(r"[^0-9]")
_HAS_DIGIT = re.compile(r"[0-9]")
_CN_ID_WEIGHTS = tuple(2 ** (17 - i) % 11 for i in range(17))
_CN_ID_CHECK = "10X98765432"

# A check takes a candidate match and returns its replacement, or None to leave it alone.
Check = Callable[[str], str | None]


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mod97_ok(iban: str) -> bool:
    if not 15 <= len(iban) <= 34:
        return False
    # ISO 13616: move the first four characters to the end; letters count as 10..35.
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _check_email(candidate: str) -> str | None:
    return "[EMAIL]"


def _check_iban(candidate: str) -> str | None:
    groups = candidate.upper().split(" ")
    # The case-insensitive pattern may swallow a following word as a group: try shorter.
    for end in range(len(groups), 0, -1):
        if _mod97_ok("".join(groups[:end])):
            rest = candidate.split(" ")[end:]
            return " ".join(["[IBAN]", *rest])
    return None


def _check_cn_id(candidate: str) -> str | None:
    try:
        birth = datetime.date(int(candidate[6:10]), int(candidate[10:12]), int(candidate[12:14]))
    except ValueError:
        return None
    if birth.year < 1900 or birth > datetime.date.today():  # noqa: DTZ011 - a local birth date
        return None
    checksum = sum(
        int(char) * weight for char, weight in zip(candidate[:17], _CN_ID_WEIGHTS, strict=True)
    )
    return "[CN_ID]" if _CN_ID_CHECK[checksum % 11] == candidate[17].upper() else None


def _check_card(candidate: str) -> str | None:
    digits = _NON_DIGITS.sub("", candidate)
    if _CN_MOBILE_WITH_86.fullmatch(digits):
        return None  # 13-digit cards are rare; "8613812345678" is a phone (it passes Luhn)
    valid = 13 <= len(digits) <= 19 and digits.strip("0") and _luhn_ok(digits)
    return "[CARD]" if valid else None


def _check_ipv6(candidate: str) -> str | None:
    if not _HAS_DIGIT.search(candidate):
        return None  # "std::vector", "face::": hex-only words are almost never addresses
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    return "[IP]"


def _check_ipv4(candidate: str) -> str | None:
    return "[IP]"  # the pattern already limits each octet to 0-255


def _check_phone(candidate: str) -> str | None:
    if candidate.startswith("+"):
        digit_count = len(_NON_DIGITS.sub("", candidate))
        return "[PHONE]" if 7 <= digit_count <= 15 else None
    return "[PHONE]"  # the Chinese and North American shapes are exact already


# (kind, pattern, check, a substring the text must contain for the pass to run). Order
# matters: checksummed numbers go before phones so a card is not half-eaten as a phone,
# and IPv6 before IPv4 so "::ffff:10.0.0.1" goes as one address.
_PASSES: tuple[tuple[str, re.Pattern[str], Check, str], ...] = (
    ("EMAIL", _EMAIL, _check_email, "@"),
    ("IBAN", _IBAN, _check_iban, ""),
    ("CN_ID", _CN_ID, _check_cn_id, ""),
    ("CARD", _CARD, _check_card, ""),
    ("IP", _IPV6, _check_ipv6, ":"),
    ("IP", _IPV4, _check_ipv4, "."),
    ("PHONE", _PHONE, _check_phone, ""),
)


# Every turn redacts the conversation's earlier turns again for its prompt; their
# redactions are kept (a Redaction cannot be changed, so callers may share one).
REDACTIONS_KEPT = 4096


@functools.lru_cache(maxsize=REDACTIONS_KEPT)
def redact(text: str) -> Redaction:
    """Replace e-mails, cards, IBANs, CN IDs, IPs and phone numbers with [KIND] placeholders."""
    counts: dict[str, int] = {}
    # Every kind but e-mail needs a decimal digit: most messages skip most passes.
    has_digit = _HAS_DIGIT.search(text) is not None
    for kind, pattern, check, required in _PASSES:
        if (required and required not in text) or (not has_digit and kind != "EMAIL"):
            continue
        replaced = 0

        def substitute(match: re.Match[str], check: Check = check) -> str:
            nonlocal replaced
            replacement = check(match.group())
            if replacement is None:
                return match.group()
            replaced += 1
            return replacement

        text = pattern.sub(substitute, text)
        if replaced:
            counts[kind] = counts.get(kind, 0) + replaced
    return Redaction(text=text, counts=MappingProxyType(counts))
