"""The transit network: its tables, and the in-memory graph that fare distances come from.

Tables (one active network; ``flask transit import-gtfs`` replaces it as a whole):

- ``transit_network``: the single row describing the imported feed, with a random
  ``token`` that changes on every import. Workers key their cached graph by it.
- ``transit_stop``: GTFS stops, stations (``location_type`` 1) and their platforms.
- ``transit_route``: lines; ``mode`` is rail or bus, ``flat_fare`` marks lines with one
  fare whatever the distance (the Airport Express), as the fare rules file says at import.
- ``transit_edge``: consecutive stops of a route and the distance between them in whole
  metres (the minimum over the feed's trips).
- ``transit_transfer``: pairs of stops one may change between inside the paid area
  (platforms of one ``parent_station``, or ``transfers.txt``), 0 m for fare purposes.

The graph (``Network``) is built once per worker per import and answers shortest paths
with Dijkstra, cached per origin, so pricing a ride runs no query beyond reading the token.
Distance-based rail journeys may change lines freely, but never onto or off a flat-fare
line: those lines are separate graphs, so no transfer can lead into them.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean
from sqlalchemy import CheckConstraint
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import SmallInteger
from sqlalchemy import String
from sqlalchemy import select
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import Session
from sqlalchemy.orm import mapped_column

from citizen_card.public import Base
from citizen_card.public import DomainError
from citizen_card.public import db

NETWORK_ROW_ID = 1
RAIL = "rail"
BUS = "bus"


class TransitNetwork(Base):
    """The one active network: which feed it came from and a token that changes per import."""

    __tablename__ = "transit_network"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer)
    # Random per import (not the version): a rolled-back import must not leave a worker
    # holding a graph under a version number that a later, different import reuses.
    token: Mapped[str] = mapped_column(String(32))
    feed_name: Mapped[str] = mapped_column(String(255))
    feed_sha256: Mapped[str] = mapped_column(String(64))
    distance_unit: Mapped[str] = mapped_column(String(2))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stop_count: Mapped[int] = mapped_column(Integer)
    route_count: Mapped[int] = mapped_column(Integer)
    edge_count: Mapped[int] = mapped_column(Integer)
    transfer_count: Mapped[int] = mapped_column(Integer)


class TransitStop(Base):
    """A GTFS stop, station or entrance; coordinates in integer micro-degrees (no floats)."""

    __tablename__ = "transit_stop"

    stop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    lat_e6: Mapped[int | None] = mapped_column(Integer)
    lon_e6: Mapped[int | None] = mapped_column(Integer)
    location_type: Mapped[int] = mapped_column(SmallInteger, default=0)
    parent_station_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("transit_stop.stop_id")
    )

    @property
    def lat(self) -> Decimal | None:
        """Latitude in degrees, exactly as imported (6 decimals)."""
        return None if self.lat_e6 is None else Decimal(self.lat_e6).scaleb(-6)

    @property
    def lon(self) -> Decimal | None:
        """Longitude in degrees, exactly as imported (6 decimals)."""
        return None if self.lon_e6 is None else Decimal(self.lon_e6).scaleb(-6)


class TransitRoute(Base):
    """A line: rail or bus, and whether the fare rules give it one flat fare."""

    __tablename__ = "transit_route"

    route_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    short_name: Mapped[str] = mapped_column(String(64), default="")
    long_name: Mapped[str] = mapped_column(String(200), default="")
    route_type: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(8))
    flat_fare: Mapped[bool] = mapped_column(Boolean, default=False)


class TransitEdge(Base):
    """Two consecutive stops of a route and the (shortest measured) distance between them."""

    __tablename__ = "transit_edge"
    __table_args__ = (CheckConstraint("distance_m > 0", name="distance_positive"),)

    from_stop_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("transit_stop.stop_id"), primary_key=True
    )
    to_stop_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("transit_stop.stop_id"), primary_key=True
    )
    route_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("transit_route.route_id"), primary_key=True
    )
    distance_m: Mapped[int] = mapped_column(Integer)


class TransitTransfer(Base):
    """Two stops one may change between without leaving the paid area.

    Each pair is stored once, in Python's (code point) order; a transfer works both ways.
    The order is not a CHECK constraint: PostgreSQL would compare by the column's collation.
    """

    __tablename__ = "transit_transfer"
    __table_args__ = (CheckConstraint("from_stop_id <> to_stop_id", name="distinct_stops"),)

    from_stop_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("transit_stop.stop_id"), primary_key=True
    )
    to_stop_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("transit_stop.stop_id"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(16))  # "parent_station" or "transfers.txt"


class UnknownStop(DomainError):
    """The stop id is not in the imported network."""

    status = 404
    code = "UNKNOWN_STOP"
    title = "Unknown stop"
    title_zh = "未知站点"
    service = "transit"


class NoFarePath(DomainError):
    """The two stops are not joined by one journey that a single fare covers."""

    status = 422
    code = "NO_FARE_PATH"
    title = "No single-fare journey between these stops"
    title_zh = "两站之间没有可按单程计费的线路"
    service = "transit"


class NetworkNotLoaded(DomainError):
    """No network has been imported yet (run ``flask transit import-gtfs``)."""

    status = 503
    code = "NETWORK_NOT_LOADED"
    title = "The transit network is not loaded"
    title_zh = "尚未导入线网数据"
    service = "transit"


@dataclass(frozen=True)
class StopInfo:
    """A stop as the graph knows it."""

    stop_id: str
    name: str
    location_type: int
    parent_id: str | None


@dataclass(frozen=True)
class RouteInfo:
    """A route as the graph knows it."""

    route_id: str
    short_name: str
    long_name: str
    mode: str
    flat_fare: bool


@dataclass(frozen=True)
class Journey:
    """A journey one fare covers: distance-based rail, one flat-fare line, or one bus route."""

    kind: str  # "rail", "flat" or "bus"
    route_id: str | None
    distance_m: int
    path: tuple[str, ...]


@dataclass
class Graph:
    """Weighted adjacency in integer metres, with Dijkstra results cached per origin set."""

    directed: bool
    adjacency: dict[str, dict[str, int]] = field(default_factory=dict)
    # Filled lazily; a race only computes the same entry twice (dict writes are atomic).
    _shortest: dict[tuple[str, ...], tuple[dict[str, int], dict[str, str]]] = field(
        default_factory=dict, repr=False
    )

    def add(self, a: str, b: str, distance_m: int) -> None:
        """Add an edge, keeping the shorter of two parallel ones."""
        pairs = [(a, b)] if self.directed else [(a, b), (b, a)]
        for x, y in pairs:
            row = self.adjacency.setdefault(x, {})
            if y not in row or distance_m < row[y]:
                row[y] = distance_m
            self.adjacency.setdefault(y, {})

    def __contains__(self, node: object) -> bool:
        return node in self.adjacency

    def shortest(self, sources: tuple[str, ...]) -> tuple[dict[str, int], dict[str, str]]:
        """Distances and predecessors from the nearest of ``sources`` to every reachable node."""
        cached = self._shortest.get(sources)
        if cached is not None:
            return cached
        dist: dict[str, int] = {}
        prev: dict[str, str] = {}
        heap: list[tuple[int, str]] = [(0, s) for s in sources]
        heapq.heapify(heap)
        best = {s: 0 for s in sources}
        while heap:
            d, node = heapq.heappop(heap)
            if node in dist:
                continue
            dist[node] = d
            for nxt, w in self.adjacency.get(node, {}).items():
                nd = d + w
                if nxt not in dist and nd < best.get(nxt, nd + 1):
                    best[nxt] = nd
                    prev[nxt] = node
                    heapq.heappush(heap, (nd, nxt))
        self._shortest[sources] = (dist, prev)
        return dist, prev

    def route_to(self, sources: tuple[str, ...], targets: Iterable[str]) -> tuple[int, str] | None:
        """(distance, target) of the nearest of ``targets``, or None when none is reachable."""
        dist, _prev = self.shortest(sources)
        found = [(dist[t], t) for t in targets if t in dist]
        return min(found) if found else None

    def path(self, sources: tuple[str, ...], target: str) -> tuple[str, ...]:
        """The stops from the nearest source to ``target`` (reachable, see route_to)."""
        _dist, prev = self.shortest(sources)
        nodes = [target]
        while nodes[-1] not in sources:
            nodes.append(prev[nodes[-1]])
        return tuple(reversed(nodes))


class Network:
    """The imported network as graphs: one rail graph, one per flat line, one per bus route.

    Rail and flat-fare graphs are undirected (a fare is the same both ways; an edge seen in
    either direction serves both, at its shortest); bus graphs follow the route's direction,
    since a bus fare is the distance actually ridden.
    """

    def __init__(
        self,
        *,
        token: str,
        version: int,
        stops: Iterable[StopInfo],
        routes: Iterable[RouteInfo],
        edges: Iterable[tuple[str, str, str, int]],
        transfers: Iterable[tuple[str, str]],
    ) -> None:
        self.token = token
        self.version = version
        self.stops = {s.stop_id: s for s in stops}
        self.routes = {r.route_id: r for r in routes}
        self.children: dict[str, list[str]] = {}
        for stop in self.stops.values():
            if stop.parent_id is not None:
                self.children.setdefault(stop.parent_id, []).append(stop.stop_id)
        self.rail = Graph(directed=False)
        self.flat: dict[str, Graph] = {}
        self.bus: dict[str, Graph] = {}
        for a, b, route_id, distance_m in edges:
            route = self.routes[route_id]
            if route.mode == BUS:
                graph = self.bus.setdefault(route_id, Graph(directed=True))
            elif route.flat_fare:
                graph = self.flat.setdefault(route_id, Graph(directed=False))
            else:
                graph = self.rail
            graph.add(a, b, distance_m)
        # Only between platforms already on distance-based rail: a transfer towards a stop
        # served only by a flat-fare line (or a bus) would make it reachable for free.
        for a, b in transfers:
            for x, y in self._transfer_pairs(a, b):
                if x != y and x in self.rail and y in self.rail:
                    self.rail.add(x, y, 0)

    def _transfer_pairs(self, a: str, b: str) -> list[tuple[str, str]]:
        # transfers.txt may name stations: they stand for all their platforms.
        return [(x, y) for x in self._platforms(a) for y in self._platforms(b)]

    def _platforms(self, stop_id: str) -> list[str]:
        return self.children.get(stop_id) or [stop_id]

    def stop(self, stop_id: str) -> StopInfo:
        """The stop, or UnknownStop."""
        stop = self.stops.get(stop_id)
        if stop is None:
            raise UnknownStop(f"no stop {stop_id!r} in the network", stop_id=stop_id)
        return stop

    def station_of(self, stop_id: str) -> str:
        """The station a platform belongs to (itself when it has no parent station)."""
        stop = self.stop(stop_id)
        if stop.location_type != 1 and stop.parent_id is not None:
            return stop.parent_id
        return stop.stop_id

    def same_station(self, a: str, b: str) -> bool:
        """True for one stop twice, a station and its platform, or two platforms of one station."""
        return self.station_of(a) == self.station_of(b)

    def _members(self, stop_id: str, graph: Graph) -> tuple[str, ...]:
        return tuple(sorted(p for p in self._platforms(stop_id) if p in graph))

    def _graphs(self) -> list[tuple[str, str | None, Graph]]:
        ordered: list[tuple[str, str | None, Graph]] = [("rail", None, self.rail)]
        ordered += [("flat", rid, g) for rid, g in sorted(self.flat.items())]
        ordered += [("bus", rid, g) for rid, g in sorted(self.bus.items())]
        return ordered

    def journey(self, from_id: str, to_id: str) -> Journey:
        """The journey a fare is computed on: rail first, then a flat line, then one bus route.

        Rail: the shortest path over distance-based lines and their transfers. A flat-fare
        line or a bus route must carry the rider from origin to destination by itself (a
        bus: the shortest such route). NoFarePath when nothing joins the two stops.
        """
        self.stop(from_id)
        self.stop(to_id)
        found: list[Journey] = []
        for kind, route_id, graph in self._graphs():
            sources = self._members(from_id, graph)
            targets = self._members(to_id, graph)
            if not sources or not targets:
                continue
            hit = graph.route_to(sources, targets)
            if hit is None:
                continue
            distance, target = hit
            journey = Journey(kind, route_id, distance, graph.path(sources, target))
            if kind != "bus":
                return journey
            found.append(journey)
        if found:
            return min(found, key=lambda j: (j.distance_m, j.route_id or ""))
        raise NoFarePath(
            f"no single-fare journey from {from_id} to {to_id}: a flat-fare line, a bus and "
            "the distance-based rail network are separate fares",
            from_stop_id=from_id,
            to_stop_id=to_id,
        )

    def rail_distance(self, from_id: str, to_id: str) -> int:
        """The shortest distance-based rail distance in metres (NoFarePath if none)."""
        journey = self.journey(from_id, to_id)
        if journey.kind != "rail":
            raise NoFarePath(f"{from_id} and {to_id} are not joined by distance-based rail")
        return journey.distance_m

    def farthest_journeys(self, stop_id: str) -> list[Journey]:
        """For each graph the stop is on, the journey to the farthest stop reachable from it."""
        self.stop(stop_id)
        journeys: list[Journey] = []
        for kind, route_id, graph in self._graphs():
            sources = self._members(stop_id, graph)
            if not sources:
                continue
            dist, _prev = graph.shortest(sources)
            distance, target = max((d, t) for t, d in dist.items())
            if distance > 0:
                journeys.append(Journey(kind, route_id, distance, graph.path(sources, target)))
        return journeys


def load_network(session: Session) -> Network | None:
    """Read the active network from the database into a graph (None if none imported)."""
    meta = session.get(TransitNetwork, NETWORK_ROW_ID)
    if meta is None:
        return None
    stops = [
        StopInfo(s.stop_id, s.name, s.location_type, s.parent_station_id)
        for s in session.scalars(select(TransitStop).order_by(TransitStop.stop_id))
    ]
    routes = [
        RouteInfo(r.route_id, r.short_name, r.long_name, r.mode, r.flat_fare)
        for r in session.scalars(select(TransitRoute).order_by(TransitRoute.route_id))
    ]
    edges = [
        (e.from_stop_id, e.to_stop_id, e.route_id, e.distance_m)
        for e in session.scalars(
            select(TransitEdge).order_by(
                TransitEdge.route_id, TransitEdge.from_stop_id, TransitEdge.to_stop_id
            )
        )
    ]
    transfers = [
        (t.from_stop_id, t.to_stop_id)
        for t in session.scalars(
            select(TransitTransfer).order_by(
                TransitTransfer.from_stop_id, TransitTransfer.to_stop_id
            )
        )
    ]
    return Network(
        token=meta.token,
        version=meta.version,
        stops=stops,
        routes=routes,
        edges=edges,
        transfers=transfers,
    )


_cache_lock = threading.Lock()
_cache: dict[str, Network] = {}
_CACHE_SIZE = 2
_last: list[Network] = []


def cached_network() -> Network | None:
    """The network this process loaded last, without asking the database whether it is current.

    Hot paths read the token with their other rows and take the
    careful path if it differs.
    """
    return _last[0] if _last else None


def current_network() -> Network:
    """The active network's graph, built once per process per import (needs an app context).

    Costs one primary-key read of the token per call; the graph itself is rebuilt only when
    an import has changed the token.
    """
    token = db.session.scalar(
        select(TransitNetwork.token).where(TransitNetwork.id == NETWORK_ROW_ID)
    )
    if token is None:
        raise NetworkNotLoaded("import a GTFS feed first: flask transit import-gtfs FEED.zip")
    network = _cache.get(token)
    if network is not None:
        _last[:] = [network]
        return network
    with _cache_lock:
        network = _cache.get(token)
        if network is None:
            network = load_network(db.session())
            if network is None:
                raise NetworkNotLoaded("the network was removed while loading it")
            # Cached under the token actually loaded: an import may have committed between
            # the two reads, and the graph must match its own token.
            while len(_cache) >= _CACHE_SIZE:
                del _cache[next(iter(_cache))]
            _cache[network.token] = network
    _last[:] = [network]
    return network
