"""The double-entry ledger: every movement of money, in integer fen, balanced by construction."""
