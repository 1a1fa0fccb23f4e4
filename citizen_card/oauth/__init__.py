"""Unified authentication: OAuth 2 / OpenID Connect server, tokens, clients, accounts."""
