"""City services, one package each, enabled by the SERVICES allow-list (docs/plugins.md)."""
