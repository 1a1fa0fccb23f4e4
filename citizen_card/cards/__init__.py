"""Card issuance, lifecycle and authentication: the city's issuer PKI and every tap's check."""
