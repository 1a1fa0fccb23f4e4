"""Entry point: ``python -m card_reader``."""

from __future__ import annotations

from card_reader.cli import main

raise SystemExit(main())
