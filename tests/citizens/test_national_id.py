"""GB 11643-1999 national ID numbers: parsing, every refusal, derived facts, the generator."""

from __future__ import annotations

from datetime import date
from datetime import timedelta

import pytest

from citizen_card.citizens.national_id import NationalIdBirthDateError
from citizen_card.citizens.national_id import NationalIdCheckDigitError
from citizen_card.citizens.national_id import NationalIdError
from citizen_card.citizens.national_id import NationalIdFormatError
from citizen_card.citizens.national_id import NationalIdRegionError
from citizen_card.citizens.national_id import check_char
from citizen_card.citizens.national_id import china_today
from citizen_card.citizens.national_id import make_national_id
from citizen_card.citizens.national_id import parse_national_id

# The two worked examples printed in GB 11643-1999 itself (computed by hand there, not by us).
STANDARD_FEMALE = "11010519491231002X"  # Beijing Chaoyang, 1949-12-31, order 002: female
STANDARD_1880 = "440524188001010014"  # Shantou, 1880-01-01, order 001: male


def test_standard_example_with_x_check_digit():
    parsed = parse_national_id(STANDARD_FEMALE)
    assert parsed.number == STANDARD_FEMALE
    assert parsed.region_code == "110105"
    assert parsed.province_code == "11"
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.order_code == "002"
    assert parsed.sex == "F"


@pytest.mark.parametrize(
    "typed", ["11010519491231002x", " 110105 19491231 002x ", "110105\t19491231002X\n"]
)
def test_lowercase_x_and_whitespace_are_normalised(typed):
    assert parse_national_id(typed).number == STANDARD_FEMALE


def test_digit_check_character_and_male():
    number = "11010519900307001" + check_char("11010519900307001")
    parsed = parse_national_id(number)
    assert parsed.sex == "M" and parsed.birth_date == date(1990, 3, 7)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "18 characters, not 0"),
        ("1101051949123100", "18 characters, not 16"),
        ("11010519491231002X1", "18 characters, not 19"),
        ("110105491231002", "15-digit first-generation"),
        ("11010519491231002A", "17 digits followed by a digit or X"),
        ("1101051949123100X2", "17 digits followed by a digit or X"),
        # Fullwidth and Arabic-Indic digits: isdigit() says yes, GB 11643 says no.
        ("１１０１０５１９４９１２３１００２X", "17 digits followed by a digit or X"),
        ("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", "17 digits followed by a digit or X"),
    ],
)
def test_format_errors(value, fragment):
    with pytest.raises(NationalIdFormatError) as exc:
        parse_national_id(value)
    assert fragment in str(exc.value)
    assert exc.value.check == "format"


def _valid_except(first17: str) -> str:
    """A number whose check digit is right, so only the rule under test can fail."""
    return first17 + check_char(first17)


@pytest.mark.parametrize("province", ["00", "10", "19", "66", "72", "99"])
def test_unknown_province_is_refused(province):
    with pytest.raises(NationalIdRegionError, match="province code") as exc:
        parse_national_id(_valid_except(f"{province}010519900307001"))
    assert exc.value.check == "region"


@pytest.mark.parametrize("province", ["11", "65", "71", "81", "82", "83"])
def test_known_provinces_and_hk_macao_taiwan_are_accepted(province):
    assert parse_national_id(_valid_except(f"{province}000019900307001")).province_code == province


@pytest.mark.parametrize("birth", ["19490230", "19491301", "19490000", "20230229"])
def test_impossible_birth_date_is_refused(birth):
    with pytest.raises(NationalIdBirthDateError, match="not a real date") as exc:
        parse_national_id(_valid_except(f"110105{birth}002"))
    assert exc.value.check == "birth_date"


def test_leap_day_is_a_real_date():
    assert parse_national_id(_valid_except("11010520240229002")).birth_date == date(2024, 2, 29)


def test_future_birth_date_is_refused_and_today_is_fine():
    today = date(2026, 11, 25)
    tomorrow = today + timedelta(days=1)
    with pytest.raises(NationalIdBirthDateError, match="in the future"):
        parse_national_id(_valid_except(f"110105{tomorrow:%Y%m%d}002"), today=today)
    born_today = _valid_except(f"110105{today:%Y%m%d}002")
    assert parse_national_id(born_today, today=today).birth_date == today


def test_before_1900_is_refused_even_with_a_correct_check_digit():
    # The standard's own 1880 example is well-formed: only our 1900 floor refuses it.
    assert check_char(STANDARD_1880[:17]) == STANDARD_1880[17]
    with pytest.raises(NationalIdBirthDateError, match="before 1900"):
        parse_national_id(STANDARD_1880)
    assert parse_national_id(_valid_except("11010519000101002")).birth_date == date(1900, 1, 1)


@pytest.mark.parametrize("wrong", ["0", "1", "2", "9"])
def test_wrong_check_digit_is_refused_without_revealing_the_right_one(wrong):
    with pytest.raises(NationalIdCheckDigitError) as exc:
        parse_national_id(STANDARD_FEMALE[:17] + wrong)
    message = str(exc.value)
    assert "GB 11643 check digit" in message
    assert exc.value.check == "check_digit"
    # The same words whatever the correct character is: nothing to learn from the message.
    other = "11010519900307001"
    bad_other = other + ("1" if check_char(other) != "1" else "2")
    with pytest.raises(NationalIdCheckDigitError) as other_exc:
        parse_national_id(bad_other)
    assert str(other_exc.value) == message


def test_a_mistyped_date_is_reported_as_a_date_not_as_a_check_digit():
    # 19491231 -> 19491331 breaks both the date and the check digit; the date is the news.
    with pytest.raises(NationalIdBirthDateError):
        parse_national_id("11010519491331002X")


def test_messages_never_repeat_the_number():
    for bad in ("11010519491231002A", "99010519491231002X", "11010519491331002X"):
        with pytest.raises(NationalIdError) as exc:
            parse_national_id(bad)
        assert bad[:14] not in str(exc.value)


def test_every_single_digit_typo_is_caught():
    # MOD 11-2 detects every single-character substitution: the point of the check digit.
    number = STANDARD_FEMALE
    for position in range(17):
        for digit in "0123456789":
            if digit == number[position]:
                continue
            typo = number[:position] + digit + number[position + 1 :]
            with pytest.raises(NationalIdError):
                parse_national_id(typo)


@pytest.mark.parametrize(("sex", "parity"), [("M", 1), ("F", 0)])
def test_make_national_id_is_valid_and_carries_sex(sex, parity):
    seen = set()
    for sequence in (0, 1, 250, 499):
        number = make_national_id("110108", date(2001, 2, 3), sequence, sex)
        parsed = parse_national_id(number)
        assert parsed.sex == sex and int(parsed.order_code) % 2 == parity
        assert parsed.region_code == "110108" and parsed.birth_date == date(2001, 2, 3)
        seen.add(parsed.order_code)
    assert len(seen) == 4


def test_make_national_id_can_produce_an_x():
    numbers = [make_national_id("110105", date(1949, 12, 31), s, "F") for s in range(500)]
    assert STANDARD_FEMALE in numbers  # order 002 = sequence 1, female
    assert all(parse_national_id(n).number == n for n in numbers)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("11010", date(2000, 1, 1), 1, "M"), "6-digit"),
        (("110105", date(2000, 1, 1), 500, "M"), "between 0 and 499"),
        (("110105", date(2000, 1, 1), -1, "F"), "between 0 and 499"),
        (("110105", date(2000, 1, 1), 1, "X"), "'M' or 'F'"),
    ],
)
def test_make_national_id_refuses_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        make_national_id(*args)


def test_check_char_needs_17_ascii_digits():
    with pytest.raises(ValueError):
        check_char("1101051949123100")
    with pytest.raises(ValueError):
        check_char("1101051949123100X")


def test_china_today_is_utc_plus_8():
    from datetime import UTC
    from datetime import datetime

    before = (datetime.now(UTC) + timedelta(hours=8)).date()
    today = china_today()
    after = (datetime.now(UTC) + timedelta(hours=8)).date()
    assert today in (before, after)
