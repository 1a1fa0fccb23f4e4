"""The transit service's tables (network tables live in network.py, trips and taps in taps.py)."""

from __future__ import annotations

from services.transit.network import TransitEdge
from services.transit.network import TransitNetwork
from services.transit.network import TransitRoute
from services.transit.network import TransitStop
from services.transit.network import TransitTransfer
from services.transit.taps import TransitConcession
from services.transit.taps import TransitMonthSpend
from services.transit.taps import TransitTap
from services.transit.taps import TransitTrip

__all__ = [
    "TransitConcession",
    "TransitEdge",
    "TransitMonthSpend",
    "TransitNetwork",
    "TransitRoute",
    "TransitStop",
    "TransitTap",
    "TransitTransfer",
    "TransitTrip",
]
