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


def known_scopes(app: Flask) -> set[str]:
    """Every scope a client may be registered for: the core's and the enabled services'."""
    return set(app.config["OAUTH2_SCOPES_SUPPORTED"])
