"""The scope catalogue: the core's scopes, the services' scopes, and what each role may hold."""

from __future__ import annotations

from flask import Flask

# scope -> (English, Chinese) description, shown on the consent page and in metadata.
CORE_SCOPES: dict[str, tuple[str, str]] = {
    "openid": ("Sign you in", "登录身份确认"),
    "profile": ("Your name", "您的姓名"),
    "phone": ("Your phone number", "您的手机号码"),
    "citizens:read": ("Look up residents (masked)", "查询居民信息（脱敏）"),
    "citizens:write": ("Register and update residents", "登记和更新居民信息"),
    "citizens:pii": ("See full personal data", "查看完整个人信息"),
    "cards:read": ("See card status", "查看卡片状态"),
    "cards:issue": ("Issue cards at a station", "在服务站制发卡"),
    "cards:suspend": ("Report cards lost", "挂失卡片"),
    "card_auth:login": ("Sign residents in by card and PIN", "刷卡加密码登录"),
    "card_auth:verify": ("Check cards at a terminal", "在终端验证卡片"),
    "wallet:read": ("See your balance and statement", "查看余额和账单"),
    "wallet:topup": ("Top up wallets", "为账户充值"),
    "audit:read": ("Read the audit trail", "查看审计日志"),
    "accounts:manage": ("Set residents' passwords at a station", "在服务站设置居民密码"),
    "admin:clients": ("Manage partner and terminal clients", "管理合作方和终端"),
    "me:consents": ("Manage your consents", "管理您的授权"),
    "oauth:introspect": ("Introspect any token (resource servers)", "校验任意令牌（资源服务器）"),
}

# What station staff may act on, by role; each role includes the ones before it.
ROLE_SCOPES: dict[str, frozenset[str]] = {}
ROLE_SCOPES["clerk"] = frozenset(
    {
        "citizens:read",
        "citizens:write",
        "citizens:pii",
        "cards:read",
        "cards:issue",
        "cards:suspend",
        "accounts:manage",
        "wallet:read",
    }
)
ROLE_SCOPES["supervisor"] = ROLE_SCOPES["clerk"] | {"audit:read"}
ROLE_SCOPES["admin"] = ROLE_SCOPES["supervisor"] | {"admin:clients"}


# Core scopes a resident may delegate to an app; every other core scope is a privilege of staff,
# partners or terminals and never enters a resident's token, whatever the client may hold.
# Service scopes are delegable: a service's scopes describe the resident's own data there.
RESIDENT_SCOPES: frozenset[str] = frozenset(
    # cards:suspend: a resident reports their own card lost (the route allows only their own).
    {"openid", "profile", "phone", "me:consents", "cards:read", "cards:suspend", "wallet:read"}
)
# Scopes that say who a person is rather than what they may do; staff may hold them too.
IDENTITY_SCOPES: frozenset[str] = frozenset({"openid", "profile"})


def known_scopes(app: Flask) -> set[str]:
    """Every scope a client may be registered for: the core's and the enabled services'."""
    return set(app.config["OAUTH2_SCOPES_SUPPORTED"])


def service_scopes(app: Flask) -> dict[str, str]:
    """Every enabled service's scopes with their descriptions."""
    from citizen_card.plugins import enabled_services

    return {
        scope: text
        for service in enabled_services(app).values()
        for scope, text in service.scopes.items()
    }


def describe_scope(app: Flask, scope: str, *, english: bool) -> str:
    """A scope's description for people (consent page): the core's (en, zh), or the service's."""
    if scope in CORE_SCOPES:
        en, zh = CORE_SCOPES[scope]
        return en if english else zh
    return service_scopes(app).get(scope, scope)


def person_scopes(app: Flask, kind: str, role: str | None) -> frozenset[str]:
    """The most a person's token may carry: residents' delegable scopes, or staff's role's."""
    if kind == "resident":
        return RESIDENT_SCOPES | frozenset(service_scopes(app))
    if kind == "staff" and role in ROLE_SCOPES:
        return ROLE_SCOPES[role] | IDENTITY_SCOPES
    return frozenset()
