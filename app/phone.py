"""Fax numbers in international (E.164) form, for the campaign loader and the fax backend.

Kept in the core so that ``clamor campaign check`` refuses a number without
its country code without importing a plugin.
"""

import dataclasses
import re

# E.164 country codes are prefix-free: these are the one- and two-digit ones;
# every other code has three digits. Enough to split off {national} without
# a phone-number database.
_ONE_DIGIT = {"1", "7"}
_TWO_DIGITS = set(
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
    "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98".split()
)
_SEPARATORS = re.compile(r"[\s\-./()\u00a0]")


class FaxNumberError(ValueError):
    """A fax number that cannot be written in international (E.164) form."""


@dataclasses.dataclass(frozen=True)
class FaxNumber:
    #: Country code without "+", e.g. "7".
    country_code: str
    #: The national significant number, e.g. "7172123456".
    national: str

    @property
    def digits(self) -> str:
        return self.country_code + self.national

    @property
    def e164(self) -> str:
        return "+" + self.digits

    def format(self, template: str) -> str:
        return template.format(e164=self.e164, digits=self.digits, national=self.national)


def parse_fax_number(text: str) -> FaxNumber:
    """Parse an international number ("+7 7172 12-34-56", "0044 (0)20 …") into a :class:`FaxNumber`.

    Raises :class:`FaxNumberError` for a number without its country code or of
    a length E.164 does not allow (7 to 15 digits once spaces, dashes, dots
    and parentheses are removed).
    """
    raw = text.strip().replace("(0)", "")
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+"):
        raise FaxNumberError(f"fax number {text!r} needs its country code, e.g. +7 7172 …")
    digits = _SEPARATORS.sub("", raw[1:])
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise FaxNumberError(f"fax number {text!r} is not an international number (7 to 15 digits)")
    if digits[:1] in _ONE_DIGIT:
        size = 1
    elif digits[:2] in _TWO_DIGITS:
        size = 2
    else:
        size = 3
    return FaxNumber(country_code=digits[:size], national=digits[size:])
