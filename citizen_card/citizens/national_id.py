"""The 18-character citizen identity number (公民身份号码) of GB 11643-1999.

Layout: 6-digit region code (GB/T 2260), 8-digit birth date ``YYYYMMDD``, 3-digit order code
whose last digit gives the sex (odd: male, even: female), and a check character computed with
ISO 7064 MOD 11-2. This module is pure: no Flask, no database. Its messages never repeat the
number they reject, because error messages end up in logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import ClassVar

# China has one time zone and no daylight saving time, so a fixed offset is exact and needs no
# tz database. "Today" is China's today: someone born just after midnight in Beijing must not
# be "born in the future" because UTC is still on the day before.
CHINA_TZ = timezone(timedelta(hours=8), "CST")

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)
EARLIEST_BIRTH_DATE = date(1900, 1, 1)

# First two digits of GB/T 2260: the provinces, plus 71 Taiwan, 81 Hong Kong, 82 Macao.
# 83 is not in GB/T 2260 but prefixes the numbers on residence permits for Taiwan residents
# (港澳台居民居住证, 2018: 810000 / 820000 / 830000), which follow GB 11643 and are accepted
# wherever the resident ID card is.
PROVINCE_CODES = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71", "81", "82", "83",
    }
)  # fmt: skip

# ASCII only: str.isdigit() and \d also accept other scripts' digits such as "١".
_SHAPE = re.compile(r"[0-9]{17}[0-9X]")


class NationalIdError(ValueError):
    """The text is not a valid GB 11643 number; ``check`` names the rule that failed."""

    check: ClassVar[str] = "format"


class NationalIdFormatError(NationalIdError):
    """Wrong length, or characters other than 17 digits and a final digit or X."""

    check = "format"


class NationalIdRegionError(NationalIdError):
    """The first two digits are not a province code."""

    check = "region"


class NationalIdBirthDateError(NationalIdError):
    """Digits 7-14 are not a real date, or one in the future or before 1900."""

    check = "birth_date"


class NationalIdCheckDigitError(NationalIdError):
    """The 18th character does not match the MOD 11-2 check of the first 17."""

    check = "check_digit"


@dataclass(frozen=True)
class NationalId:
    """A validated number and what it says about its holder."""

    number: str  # normalised: 18 characters, upper-case X
    region_code: str
    birth_date: date
    order_code: str
    sex: str  # "M" or "F"

    @property
    def province_code(self) -> str:
        """The first two digits of the region code."""
        return self.region_code[:2]


def normalize_national_id(value: str) -> str:
    """Drop every whitespace character and upper-case a final ``x``; nothing else changes."""
    return "".join(value.split()).upper()


def check_char(first17: str) -> str:
    """The GB 11643 check character for 17 digits."""
    if len(first17) != 17 or not _SHAPE.fullmatch(first17 + "0"):
        raise ValueError("check_char needs exactly 17 ASCII digits")
    total = sum(int(digit) * weight for digit, weight in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def china_today() -> date:
    """Today's date in China."""
    return datetime.now(UTC).astimezone(CHINA_TZ).date()


def parse_national_id(value: str, *, today: date | None = None) -> NationalId:
    """Validate and parse a number; raise the NationalIdError subclass of the first failure.

    Checks run in this order: length and characters, province code, birth date, check digit.
    The date is checked before the check digit so a mistyped date is reported as such.
    """
    number = normalize_national_id(value)
    if len(number) == 15 and number.isascii() and number.isdigit():
        raise NationalIdFormatError(
            "15-digit first-generation ID numbers are no longer valid; give the 18-character number"
        )
    if len(number) != 18:
        raise NationalIdFormatError(f"a national ID has 18 characters, not {len(number)}")
    if not _SHAPE.fullmatch(number):
        raise NationalIdFormatError("a national ID is 17 digits followed by a digit or X")
    if number[:2] not in PROVINCE_CODES:
        raise NationalIdRegionError(
            "the national ID's first two digits are not a province code (GB/T 2260)"
        )
    birth_date = _birth_date(number[6:14], today or china_today())
    if check_char(number[:17]) != number[17]:
        # Never say what the check character should be: that would turn this endpoint into a
        # generator of valid-looking numbers.
        raise NationalIdCheckDigitError(
            "the national ID fails the GB 11643 check digit (18th character): it is mistyped"
        )
    return NationalId(
        number=number,
        region_code=number[:6],
        birth_date=birth_date,
        order_code=number[14:17],
        sex="M" if int(number[16]) % 2 else "F",
    )


def _birth_date(digits: str, today: date) -> date:
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise NationalIdBirthDateError(
            "the national ID's birth date (characters 7-14) is not a real date"
        ) from None
    if born > today:
        raise NationalIdBirthDateError("the national ID's birth date is in the future")
    if born < EARLIEST_BIRTH_DATE:
        raise NationalIdBirthDateError("the national ID's birth date is before 1900")
    return born


def make_national_id(region: str, birth_date: date, sequence: int, sex: str) -> str:
    """Build a valid number, for tests and demo data.

    ``sequence`` (0-499) picks the order code; its last digit is made odd for ``"M"`` and even
    for ``"F"``, so every one of the 1,000 order codes is reachable exactly once.
    """
    if len(region) != 6 or not region.isascii() or not region.isdigit():
        raise ValueError("region must be a 6-digit code")
    if sex not in ("M", "F"):
        raise ValueError("sex must be 'M' or 'F'")
    if not 0 <= sequence <= 499:
        raise ValueError("sequence must be between 0 and 499")
    order = sequence * 2 + (1 if sex == "M" else 0)
    first17 = f"{region}{birth_date:%Y%m%d}{order:03d}"
    return first17 + check_char(first17)
