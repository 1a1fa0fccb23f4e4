"""GTFS import: read a whole feed, validate it, then replace the network in one transaction.

``flask transit import-gtfs FEED [--distance-unit m|km]`` reads ``stops.txt``,
``routes.txt``, ``trips.txt`` and ``stop_times.txt`` (with ``shape_dist_traveled``), and
``transfers.txt`` when present, from a zip or a folder. Validation runs over the entire feed
before the first write, so a bad feed leaves the current network untouched; every error names
the file and line. Edge distances are the differences of consecutive stops'
``shape_dist_traveled`` (rounded to whole metres first), keeping the minimum over trips.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from decimal import ROUND_HALF_UP
from decimal import Decimal
from decimal import InvalidOperation
from pathlib import Path
from typing import Any
from uuid import uuid4

import click
from flask import Flask
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import delete
from sqlalchemy import insert

from citizen_card.public import DomainError
from citizen_card.public import db
from services.transit.fares import FareRules
from services.transit.fares import FareRulesError
from services.transit.fares import load_rules
from services.transit.network import BUS
from services.transit.network import NETWORK_ROW_ID
from services.transit.network import RAIL
from services.transit.network import TransitEdge
from services.transit.network import TransitNetwork
from services.transit.network import TransitRoute
from services.transit.network import TransitStop
from services.transit.network import TransitTransfer

REQUIRED_FILES = ("stops.txt", "routes.txt", "trips.txt", "stop_times.txt")
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "stops.txt": ("stop_id", "stop_name", "stop_lat", "stop_lon"),
    "routes.txt": ("route_id", "route_type"),
    "trips.txt": ("route_id", "trip_id"),
    "stop_times.txt": ("trip_id", "stop_id", "stop_sequence", "shape_dist_traveled"),
    "transfers.txt": ("from_stop_id", "to_stop_id"),
}
UNIT_FACTORS = {"m": 1, "km": 1000}
ID_MAX = 64
NAME_MAX = 200
INSERT_CHUNK = 5000
MICRO = Decimal(10) ** 6

# GTFS route_type: basic (0-12) and the extended (Google) types, by what a fare treats them as.
_RAIL_BASIC = {0, 1, 2, 5, 7, 12}
_BUS_BASIC = {3, 11}


def route_mode(route_type: int) -> str | None:
    """ "rail", "bus", or None for modes this service does not price (ferries, aerial…)."""
    if route_type in _RAIL_BASIC or 100 <= route_type <= 199 or 400 <= route_type <= 499:
        return RAIL
    if route_type in (900, 901, 902, 903, 904, 905, 906):  # tram services
        return RAIL
    if route_type in _BUS_BASIC or 200 <= route_type <= 299 or 700 <= route_type <= 800:
        return BUS
    return None


class GtfsError(ValueError):
    """The feed is unusable; ``file`` and ``line`` say where (line 1 is the header)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = file or ""
        if line is not None:
            where += f" line {line}"
        super().__init__(f"{where}: {message}" if where else message)


Progress = Callable[[str], None]


class FeedSource:
    """The files of a feed, from a zip (members at its root) or a folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        if path.is_dir():
            self.names = {p.name for p in path.iterdir() if p.is_file()}
        else:
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise GtfsError(f"not a GTFS zip or folder ({exc})", file=path.name) from exc
            self.names = {n for n in self._zip.namelist() if "/" not in n.rstrip("/")}

    def close(self) -> None:
        """Close the zip, if any."""
        if self._zip is not None:
            self._zip.close()

    def sha256(self) -> str:
        """A fingerprint of the feed: the zip's bytes, or the folder's files in name order."""
        digest = hashlib.sha256()
        if self._zip is None:
            for name in sorted(self.names):
                digest.update(name.encode() + b"\0" + (self.path / name).read_bytes())
        else:
            digest.update(self.path.read_bytes())
        return digest.hexdigest()

    def _open(self, name: str) -> io.TextIOBase:
        # utf-8-sig: many GTFS exports start with a byte order mark.
        if self._zip is None:
            return open(self.path / name, encoding="utf-8-sig", newline="")
        return io.TextIOWrapper(self._zip.open(name), encoding="utf-8-sig", newline="")

    def rows(self, name: str) -> Iterator[tuple[int, dict[str, str]]]:
        """(line number, row with stripped values) for each data row; checks the header."""
        with self._open(name) as handle:
            reader = csv.reader(handle)
            try:
                header = [h.strip() for h in next(reader, [])]
                missing = [c for c in REQUIRED_COLUMNS.get(name, ()) if c not in header]
                if missing:
                    raise GtfsError(
                        f"missing required column(s) {', '.join(missing)}", file=name, line=1
                    )
                for values in reader:
                    line = reader.line_num
                    if not values or (len(values) == 1 and not values[0].strip()):
                        continue  # blank line
                    if len(values) > len(header):
                        raise GtfsError(
                            f"{len(values)} fields but the header has {len(header)}",
                            file=name,
                            line=line,
                        )
                    row = {h: v.strip() for h, v in zip(header, values, strict=False)}
                    yield line, row
            except UnicodeDecodeError as exc:
                raise GtfsError(
                    f"not UTF-8 text ({exc.reason})", file=name, line=reader.line_num + 1
                ) from exc
            except csv.Error as exc:
                raise GtfsError(f"malformed CSV: {exc}", file=name, line=reader.line_num) from exc


@dataclass
class StopRow:
    """A parsed stops.txt row."""

    stop_id: str
    name: str
    lat_e6: int | None
    lon_e6: int | None
    location_type: int
    parent_station_id: str | None
    line: int


@dataclass
class RouteRow:
    """A parsed routes.txt row."""

    route_id: str
    short_name: str
    long_name: str
    route_type: int
    mode: str


@dataclass
class Feed:
    """A validated feed, ready to write."""

    stops: dict[str, StopRow]
    routes: dict[str, RouteRow]
    edges: dict[tuple[str, str, str], int]
    transfers: dict[tuple[str, str], str]
    trip_count: int = 0
    stop_time_count: int = 0
    sha256: str = ""


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote."""

    version: int
    token: str
    stops: int
    routes: int
    trips: int
    stop_times: int
    edges: int
    transfers: int
    flat_fare_routes: tuple[str, ...]
    unknown_flat_fare_routes: tuple[str, ...] = field(default_factory=tuple)


def _integer(value: str, what: str, file: str, line: int, *, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise GtfsError(f"{what} must be an integer, got {value!r}", file=file, line=line) from None
    if number < minimum:
        raise GtfsError(f"{what} must be at least {minimum}, got {number}", file=file, line=line)
    return number


def _decimal(value: str, what: str, file: str, line: int) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise GtfsError(f"{what} must be a number, got {value!r}", file=file, line=line) from None
    if not number.is_finite():
        raise GtfsError(f"{what} must be a finite number, got {value!r}", file=file, line=line)
    return number


def _ident(value: str, what: str, file: str, line: int) -> str:
    if not value:
        raise GtfsError(f"{what} is empty", file=file, line=line)
    if len(value) > ID_MAX:
        raise GtfsError(
            f"{what} {value!r} is longer than {ID_MAX} characters", file=file, line=line
        )
    return value


def _degrees_e6(value: str, what: str, limit: int, file: str, line: int) -> int:
    degrees = _decimal(value, what, file, line)
    if not -limit <= degrees <= limit:
        raise GtfsError(f"{what} {value} is outside -{limit}..{limit}", file=file, line=line)
    return int((degrees * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _read_stops(source: FeedSource) -> dict[str, StopRow]:
    name = "stops.txt"
    stops: dict[str, StopRow] = {}
    for line, row in source.rows(name):
        stop_id = _ident(row.get("stop_id", ""), "stop_id", name, line)
        if stop_id in stops:
            raise GtfsError(
                f"duplicate stop_id {stop_id!r} (first on line {stops[stop_id].line})",
                file=name,
                line=line,
            )
        raw_type = row.get("location_type", "")
        location_type = _integer(raw_type, "location_type", name, line) if raw_type else 0
        if location_type > 4:
            raise GtfsError(
                f"location_type must be 0 to 4, got {location_type}", file=name, line=line
            )
        stop_name = row.get("stop_name", "")
        lat_raw, lon_raw = row.get("stop_lat", ""), row.get("stop_lon", "")
        # GTFS requires a name and a position for stops, stations and entrances (types 0-2).
        if location_type <= 2:
            if not stop_name:
                raise GtfsError(f"stop {stop_id!r} has no stop_name", file=name, line=line)
            if not lat_raw or not lon_raw:
                raise GtfsError(f"stop {stop_id!r} has no stop_lat/stop_lon", file=name, line=line)
        if len(stop_name) > NAME_MAX:
            raise GtfsError(f"stop_name is longer than {NAME_MAX} characters", file=name, line=line)
        parent = row.get("parent_station", "") or None
        if parent == stop_id:
            raise GtfsError(f"stop {stop_id!r} is its own parent_station", file=name, line=line)
        stops[stop_id] = StopRow(
            stop_id=stop_id,
            name=stop_name,
            lat_e6=_degrees_e6(lat_raw, "stop_lat", 90, name, line) if lat_raw else None,
            lon_e6=_degrees_e6(lon_raw, "stop_lon", 180, name, line) if lon_raw else None,
            location_type=location_type,
            parent_station_id=parent,
            line=line,
        )
    for stop in stops.values():
        if stop.parent_station_id is not None and stop.parent_station_id not in stops:
            raise GtfsError(
                f"parent_station {stop.parent_station_id!r} of stop {stop.stop_id!r} is not a stop",
                file=name,
                line=stop.line,
            )
    for stop in stops.values():
        _depth(stop, stops)  # refuses parent cycles
    return stops


def _depth(stop: StopRow, stops: dict[str, StopRow]) -> int:
    seen = {stop.stop_id}
    depth, current = 0, stop
    while current.parent_station_id is not None:
        current = stops[current.parent_station_id]
        if current.stop_id in seen:
            raise GtfsError(
                f"parent_station chain of {stop.stop_id!r} loops back to {current.stop_id!r}",
                file="stops.txt",
                line=stop.line,
            )
        seen.add(current.stop_id)
        depth += 1
    return depth


def _read_routes(source: FeedSource) -> dict[str, RouteRow]:
    name = "routes.txt"
    routes: dict[str, RouteRow] = {}
    lines: dict[str, int] = {}
    for line, row in source.rows(name):
        route_id = _ident(row.get("route_id", ""), "route_id", name, line)
        if route_id in routes:
            raise GtfsError(
                f"duplicate route_id {route_id!r} (first on line {lines[route_id]})",
                file=name,
                line=line,
            )
        short, long = row.get("route_short_name", ""), row.get("route_long_name", "")
        if not short and not long:
            raise GtfsError(
                f"route {route_id!r} needs route_short_name or route_long_name",
                file=name,
                line=line,
            )
        if len(short) > ID_MAX or len(long) > NAME_MAX:
            raise GtfsError("route name too long", file=name, line=line)
        route_type = _integer(row.get("route_type", ""), "route_type", name, line)
        mode = route_mode(route_type)
        if mode is None:
            raise GtfsError(
                f"route {route_id!r}: route_type {route_type} is neither rail nor bus; "
                "this service prices only those",
                file=name,
                line=line,
            )
        routes[route_id] = RouteRow(route_id, short, long, route_type, mode)
        lines[route_id] = line
    return routes


def _read_trips(source: FeedSource, routes: dict[str, RouteRow]) -> dict[str, str]:
    name = "trips.txt"
    trips: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line, row in source.rows(name):
        trip_id = _ident(row.get("trip_id", ""), "trip_id", name, line)
        route_id = row.get("route_id", "")
        if route_id not in routes:
            raise GtfsError(f"unknown route_id {route_id!r}", file=name, line=line)
        if trip_id in trips:
            raise GtfsError(
                f"duplicate trip_id {trip_id!r} (first on line {lines[trip_id]})",
                file=name,
                line=line,
            )
        trips[trip_id] = route_id
        lines[trip_id] = line
    return trips


def _read_stop_times(
    source: FeedSource,
    stops: dict[str, StopRow],
    trips: dict[str, str],
    factor: int,
    progress: Progress | None,
    every: int,
) -> tuple[dict[tuple[str, str, str], int], int, int]:
    name = "stop_times.txt"
    by_trip: dict[str, list[tuple[int, str, Decimal, int]]] = {}
    count = 0
    for line, row in source.rows(name):
        trip_id = row.get("trip_id", "")
        if trip_id not in trips:
            raise GtfsError(f"unknown trip_id {trip_id!r}", file=name, line=line)
        stop_id = row.get("stop_id", "")
        stop = stops.get(stop_id)
        if stop is None:
            raise GtfsError(f"unknown stop_id {stop_id!r}", file=name, line=line)
        if stop.location_type != 0:
            raise GtfsError(
                f"stop_id {stop_id!r} is not a stop or platform (location_type "
                f"{stop.location_type}); trips stop at platforms",
                file=name,
                line=line,
            )
        sequence = _integer(row.get("stop_sequence", ""), "stop_sequence", name, line)
        raw_distance = row.get("shape_dist_traveled", "")
        if not raw_distance:
            raise GtfsError(
                f"shape_dist_traveled is empty (trip {trip_id!r}); fares need it on every stop",
                file=name,
                line=line,
            )
        distance = _decimal(raw_distance, "shape_dist_traveled", name, line)
        if distance < 0:
            raise GtfsError(f"shape_dist_traveled {raw_distance} is negative", file=name, line=line)
        by_trip.setdefault(trip_id, []).append((sequence, stop_id, distance, line))
        count += 1
        if progress is not None and count % every == 0:
            progress(f"{name}: {count:,} rows")
    if progress is not None:
        progress(f"{name}: {count:,} rows, {len(by_trip):,} trips")

    edges: dict[tuple[str, str, str], int] = {}
    for trip_id, times in by_trip.items():
        route_id = trips[trip_id]
        times.sort()
        if len(times) < 2:
            raise GtfsError(f"trip {trip_id!r} has a single stop", file=name, line=times[0][3])
        previous = times[0]
        previous_m = _metres(previous[2], factor)
        for current in times[1:]:
            sequence, stop_id, distance, line = current
            if sequence == previous[0]:
                raise GtfsError(
                    f"stop_sequence {sequence} repeats on trip {trip_id!r} "
                    f"(also line {previous[3]})",
                    file=name,
                    line=line,
                )
            if distance <= previous[2]:
                raise GtfsError(
                    f"shape_dist_traveled is not increasing on trip {trip_id!r}: {distance} at "
                    f"stop_sequence {sequence} after {previous[2]} at stop_sequence "
                    f"{previous[0]} (line {previous[3]})",
                    file=name,
                    line=line,
                )
            if stop_id == previous[1]:
                raise GtfsError(
                    f"stop {stop_id!r} follows itself on trip {trip_id!r}", file=name, line=line
                )
            current_m = _metres(distance, factor)
            metres = current_m - previous_m
            if metres <= 0:
                raise GtfsError(
                    f"stops {previous[1]!r} and {stop_id!r} are less than 1 m apart on trip "
                    f"{trip_id!r}",
                    file=name,
                    line=line,
                )
            key = (previous[1], stop_id, route_id)
            if key not in edges or metres < edges[key]:
                edges[key] = metres
            previous, previous_m = current, current_m
    return edges, len(by_trip), count


def _metres(distance: Decimal, factor: int) -> int:
    # Positions are rounded before subtracting, so a line's edges add up to its rounded length.
    return int((distance * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _read_transfers(source: FeedSource, stops: dict[str, StopRow]) -> dict[tuple[str, str], str]:
    """Transfers between platforms of one station, plus transfers.txt (type 3 forbids one)."""
    transfers: dict[tuple[str, str], str] = {}
    by_parent: dict[str, list[str]] = {}
    for stop in stops.values():
        if stop.location_type == 0 and stop.parent_station_id is not None:
            by_parent.setdefault(stop.parent_station_id, []).append(stop.stop_id)
    for platforms in by_parent.values():
        ordered = sorted(platforms)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                transfers[(a, b)] = "parent_station"
    name = "transfers.txt"
    if name not in source.names:
        return transfers
    forbidden: set[tuple[str, str]] = set()
    for line, row in source.rows(name):
        ends = []
        for column in ("from_stop_id", "to_stop_id"):
            stop_id = row.get(column, "")
            if stop_id not in stops:
                raise GtfsError(f"unknown {column} {stop_id!r}", file=name, line=line)
            ends.append(stop_id)
        raw_type = row.get("transfer_type", "")
        transfer_type = _integer(raw_type, "transfer_type", name, line) if raw_type else 0
        if transfer_type > 5:
            raise GtfsError(
                f"transfer_type must be 0 to 5, got {transfer_type}", file=name, line=line
            )
        a, b = sorted(ends)
        if a == b or transfer_type in (4, 5):
            continue  # same-stop timing rules and in-seat transfers change no fare distance
        if transfer_type == 3:
            forbidden.add((a, b))
        else:
            transfers.setdefault((a, b), name)
    for pair in forbidden:
        transfers.pop(pair, None)
    return transfers


def read_feed(
    path: str | Path,
    *,
    distance_unit: str = "m",
    progress: Progress | None = None,
    progress_every: int = 10000,
) -> Feed:
    """Parse and validate a whole feed (zip or folder) without touching the database."""
    if distance_unit not in UNIT_FACTORS:
        raise GtfsError(f"distance unit must be m or km, got {distance_unit!r}")
    feed_path = Path(path)
    source = FeedSource(feed_path)
    try:
        missing = [f for f in REQUIRED_FILES if f not in source.names]
        if missing:
            raise GtfsError(f"missing required file(s) {', '.join(missing)}", file=feed_path.name)
        stops = _read_stops(source)
        routes = _read_routes(source)
        trips = _read_trips(source, routes)
        if progress is not None:
            progress(f"{len(stops):,} stops, {len(routes):,} routes, {len(trips):,} trips")
        edges, trip_count, stop_time_count = _read_stop_times(
            source, stops, trips, UNIT_FACTORS[distance_unit], progress, max(1, progress_every)
        )
        transfers = _read_transfers(source, stops)
        return Feed(
            stops=stops,
            routes=routes,
            edges=edges,
            transfers=transfers,
            trip_count=trip_count,
            stop_time_count=stop_time_count,
            sha256=source.sha256(),
        )
    finally:
        source.close()


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), INSERT_CHUNK):
        yield rows[start : start + INSERT_CHUNK]


def import_feed(
    path: str | Path,
    *,
    rules: FareRules,
    distance_unit: str = "m",
    progress: Progress | None = None,
    progress_every: int = 10000,
    now: datetime | None = None,
) -> ImportReport:
    """Validate a feed, then replace the network with it in one transaction and commit.

    Flat-fare lines are those the rule set in force today (Beijing date of ``now``) lists in
    ``rail.flat_fare_routes``; re-import after a rules change that adds or removes one.
    """
    feed = read_feed(
        path, distance_unit=distance_unit, progress=progress, progress_every=progress_every
    )
    now = now or datetime.now(UTC)
    flat_ids = set(rules.in_force(now).rail.flat_fare_routes)
    for route_id in sorted(flat_ids & set(feed.routes)):
        if feed.routes[route_id].mode != RAIL:
            raise GtfsError(
                f"the fare rules give route {route_id!r} a flat fare, but it is a bus route",
                file="routes.txt",
            )
    stop_rows = sorted(
        feed.stops.values(), key=lambda s: (_depth(s, feed.stops), s.stop_id)
    )  # parents before children: the parent_station foreign key is checked per row
    session = db.session
    try:
        for model in (TransitEdge, TransitTransfer, TransitStop, TransitRoute):
            session.execute(delete(model))
        routes = [
            {
                "route_id": r.route_id,
                "short_name": r.short_name,
                "long_name": r.long_name,
                "route_type": r.route_type,
                "mode": r.mode,
                "flat_fare": r.route_id in flat_ids,
            }
            for r in feed.routes.values()
        ]
        stops = [
            {
                "stop_id": s.stop_id,
                "name": s.name,
                "lat_e6": s.lat_e6,
                "lon_e6": s.lon_e6,
                "location_type": s.location_type,
                "parent_station_id": s.parent_station_id,
            }
            for s in stop_rows
        ]
        edges = [
            {"from_stop_id": a, "to_stop_id": b, "route_id": r, "distance_m": d}
            for (a, b, r), d in sorted(feed.edges.items())
        ]
        transfers = [
            {"from_stop_id": a, "to_stop_id": b, "source": src}
            for (a, b), src in sorted(feed.transfers.items())
        ]
        for model, rows in (
            (TransitRoute, routes),
            (TransitStop, stops),
            (TransitEdge, edges),
            (TransitTransfer, transfers),
        ):
            for chunk in _chunks(rows):
                session.execute(insert(model), chunk)
            if progress is not None:
                progress(f"wrote {len(rows):,} rows to {model.__tablename__}")
        meta = session.get(TransitNetwork, NETWORK_ROW_ID)
        if meta is None:
            meta = TransitNetwork(id=NETWORK_ROW_ID, version=0)
            session.add(meta)
        meta.version = (meta.version or 0) + 1
        meta.token = uuid4().hex
        meta.feed_name = Path(path).name[:255]
        meta.feed_sha256 = feed.sha256
        meta.distance_unit = distance_unit
        meta.imported_at = now
        meta.stop_count = len(stops)
        meta.route_count = len(routes)
        meta.edge_count = len(edges)
        meta.transfer_count = len(transfers)
        version, token = meta.version, meta.token
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return ImportReport(
        version=version,
        token=token,
        stops=len(stops),
        routes=len(routes),
        trips=feed.trip_count,
        stop_times=feed.stop_time_count,
        edges=len(edges),
        transfers=len(transfers),
        flat_fare_routes=tuple(sorted(flat_ids & set(feed.routes))),
        unknown_flat_fare_routes=tuple(sorted(flat_ids - set(feed.routes))),
    )


transit_cli = AppGroup("transit", help="Transit: import the network, check the fare rules.")


@transit_cli.command("import-gtfs")
@click.argument("feed", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--distance-unit",
    type=click.Choice(sorted(UNIT_FACTORS)),
    default="m",
    show_default=True,
    help="Unit of shape_dist_traveled in the feed.",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Fare rules file deciding flat-fare lines (default: TRANSIT_FARE_RULES_FILE).",
)
def import_gtfs_command(feed: Path, distance_unit: str, rules_file: Path | None) -> None:
    """Replace the network with a GTFS feed (zip or folder); an invalid feed changes nothing."""
    config = current_app.config
    try:
        rules = load_rules(rules_file or config["TRANSIT_FARE_RULES_FILE"])
        report = import_feed(
            feed,
            rules=rules,
            distance_unit=distance_unit,
            progress=lambda message: click.echo(message, err=True),
            progress_every=int(config["TRANSIT_IMPORT_PROGRESS_EVERY"]),
        )
    except (GtfsError, FareRulesError, DomainError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"imported {feed.name}: network version {report.version}; {report.stops} stops, "
        f"{report.routes} routes, {report.trips} trips, {report.stop_times} stop times, "
        f"{report.edges} edges, {report.transfers} transfers; flat-fare routes: "
        f"{', '.join(report.flat_fare_routes) or 'none'}"
    )
    if report.unknown_flat_fare_routes:
        click.echo(
            "note: the fare rules name flat-fare routes not in this feed: "
            + ", ".join(report.unknown_flat_fare_routes),
            err=True,
        )


@transit_cli.command("check-rules")
@click.argument("rules_file", required=False, type=click.Path(path_type=Path))
def check_rules_command(rules_file: Path | None) -> None:
    """Validate a fare rules file (default: TRANSIT_FARE_RULES_FILE) and list its rule sets."""
    path = rules_file or Path(current_app.config["TRANSIT_FARE_RULES_FILE"])
    try:
        rules = load_rules(path)
    except FareRulesError as exc:
        raise click.ClickException(str(exc)) from exc
    for rule_set in rules.rule_sets:
        flats = ", ".join(sorted(rule_set.rail.flat_fare_routes)) or "none"
        click.echo(f"{rule_set.effective_from}  {rule_set.name}  (flat-fare routes: {flats})")
    click.echo(f"{path}: OK, {len(rules.rule_sets)} rule set(s)")


@transit_cli.command("close-day")
@click.option(
    "--date", "day", default=None, help="Service day YYYY-MM-DD (default: yesterday, Beijing)."
)
def close_day_command(day: str | None) -> None:
    """Charge the penalty fare for every trip of that service day with no tap-out."""
    from datetime import date as _date
    from datetime import datetime as _datetime
    from datetime import timedelta as _timedelta

    from citizen_card.public import Actor
    from services.transit.fares import beijing_date
    from services.transit.taps import close_day

    service_day = (
        _date.fromisoformat(day) if day else beijing_date(_datetime.now(UTC)) - _timedelta(days=1)
    )
    charged, due = close_day(service_day, actor=Actor.system("transit-close-day"))
    click.echo(f"service day {service_day}: {charged} penalty fare(s) charged, {due} left due")


SAMPLE_FEED = Path(__file__).parent / "data" / "beijing-sample"


def load_demo_network() -> None:
    """Demo data: import the shipped sample feed once (``flask demo load``)."""
    from citizen_card.public import db
    from services.transit.fares import active_rules
    from services.transit.network import TransitNetwork

    if db.session.query(TransitNetwork.id).first() is not None:
        click.echo("demo transit network: already imported")
        return
    report = import_feed(SAMPLE_FEED, rules=active_rules())
    click.echo(f"demo transit network: sample Beijing feed imported ({report.stops} stops)")


def register_cli(app: Flask) -> None:
    """The service's init_app hook: add ``flask transit …`` (no I/O here)."""
    app.cli.add_command(transit_cli)
    app.extensions.setdefault("citizen_card_demo_loaders", []).append(load_demo_network)
