"""Reference data of the registry: Beijing's districts and the enumerations, with labels.

Codes are the stored values and the API contract; labels are for people and may be reworded.
The enumerations here are the single source for the model's CHECK constraints, the schemas'
choices and the actions' checks, so adding a value means a migration (the CHECK changes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Label:
    """A value's name in Chinese and English."""

    zh: str
    en: str


@dataclass(frozen=True)
class District:
    """A district (区) of the city: its GB/T 2260 code and names."""

    code: str
    zh: str
    en: str


_DISTRICTS = (
    District("110101", "东城区", "Dongcheng"),
    District("110102", "西城区", "Xicheng"),
    District("110105", "朝阳区", "Chaoyang"),
    District("110106", "丰台区", "Fengtai"),
    District("110107", "石景山区", "Shijingshan"),
    District("110108", "海淀区", "Haidian"),
    District("110109", "门头沟区", "Mentougou"),
    District("110111", "房山区", "Fangshan"),
    District("110112", "通州区", "Tongzhou"),
    District("110113", "顺义区", "Shunyi"),
    District("110114", "昌平区", "Changping"),
    District("110115", "大兴区", "Daxing"),
    District("110116", "怀柔区", "Huairou"),
    District("110117", "平谷区", "Pinggu"),
    District("110118", "密云区", "Miyun"),
    District("110119", "延庆区", "Yanqing"),
)
# Read-only views: reference data is shared process-wide and must not be edited at run time.
DISTRICTS: Mapping[str, District] = MappingProxyType({d.code: d for d in _DISTRICTS})

SEXES: Mapping[str, Label] = MappingProxyType(
    {"M": Label("男", "Male"), "F": Label("女", "Female")}
)

RESIDENCE_TYPES: Mapping[str, Label] = MappingProxyType(
    {
        "registered": Label("户籍", "Registered household (hukou)"),
        "resident": Label("常住", "Permanent resident"),
    }
)

INSURANCE_SCHEMES: Mapping[str, Label] = MappingProxyType(
    {
        "employee": Label("城镇职工基本医疗保险", "Urban employee basic medical insurance"),
        "resident": Label(
            "城乡居民基本医疗保险", "Urban and rural resident basic medical insurance"
        ),
        "none": Label("未参保", "Not insured"),
    }
)

EMPLOYMENT_STATUSES: Mapping[str, Label] = MappingProxyType(
    {
        "employed": Label("在职", "Employed"),
        "unemployed": Label("失业", "Unemployed"),
        "retired": Label("退休", "Retired"),
        "student": Label("学生", "Student"),
        "other": Label("其他", "Other"),
    }
)

STATUSES: Mapping[str, Label] = MappingProxyType(
    {
        "active": Label("正常", "Active"),
        "deceased": Label("已故", "Deceased"),
        "moved_away": Label("已迁出", "Moved away"),
    }
)

# The life events a registry record can go through, each named after the status it leads to.
LIFE_EVENTS: Mapping[str, Label] = MappingProxyType(
    {"deceased": STATUSES["deceased"], "moved_away": STATUSES["moved_away"]}
)

# A mainland mobile number. [0-9], not \d (which matches any script's digits), and \Z, not $
# (which also matches before a trailing newline).
MOBILE_PHONE_PATTERN = r"^1[3-9][0-9]{9}\Z"
MOBILE_PHONE = re.compile(MOBILE_PHONE_PATTERN)

NAME_MAX_LENGTH = 64
REASON_MAX_LENGTH = 200
