"""The core's append-only, hash-chained audit trail."""
