"""GTFS import: the sample feed, validation errors (file and line, nothing written), re-import,
kilometre feeds, and the ``flask transit`` commands."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func
from sqlalchemy import select

from citizen_card.public import db
from services.transit.fares import FareRules
from services.transit.gtfs import GtfsError
from services.transit.gtfs import import_feed
from services.transit.gtfs import read_feed
from services.transit.gtfs import route_mode
from services.transit.network import TransitEdge
from services.transit.network import TransitNetwork
from services.transit.network import TransitRoute
from services.transit.network import TransitStop
from services.transit.network import TransitTransfer
from tests.transit.conftest import NOW
from tests.transit.conftest import edit_line
from tests.transit.conftest import find_line
from tests.transit.conftest import rules_document
from tests.transit.conftest import write_rules
from tests.transit.conftest import zip_feed


def counts() -> dict[str, int]:
    """Rows per network table."""
    return {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model)) or 0
        for model in (TransitStop, TransitRoute, TransitEdge, TransitTransfer, TransitNetwork)
    }


def edges() -> dict[tuple[str, str, str], int]:
    """Every stored edge and its distance."""
    return {
        (e.from_stop_id, e.to_stop_id, e.route_id): e.distance_m
        for e in db.session.scalars(select(TransitEdge))
    }


SAMPLE_COUNTS = {
    "transit_stop": 88,
    "transit_route": 6,
    "transit_edge": 150,
    "transit_transfer": 5,
    "transit_network": 1,
}


def test_import_the_sample_zip(app_ctx: Flask, sample_zip: Path, rules: FareRules) -> None:
    report = import_feed(sample_zip, rules=rules, now=NOW)
    assert (report.version, report.stops, report.routes, report.trips, report.stop_times) == (
        1,
        88,
        6,
        11,
        182,
    )
    assert (report.edges, report.transfers, report.flat_fare_routes) == (150, 5, ("AE",))
    assert counts() == SAMPLE_COUNTS
    routes = {r.route_id: r for r in db.session.scalars(select(TransitRoute))}
    assert (routes["AE"].mode, routes["AE"].flat_fare) == ("rail", True)
    assert (routes["L1"].mode, routes["L1"].flat_fare) == ("rail", False)
    assert (routes["B1"].mode, routes["B1"].short_name) == ("bus", "1路")
    stop = db.session.get(TransitStop, "L1-JIANGUOMEN")
    assert stop is not None
    assert (stop.name, stop.parent_station_id, stop.location_type) == ("建国门", "BJ-JIANGUOMEN", 0)
    assert (stop.lat, stop.lon) == (Decimal("39.908700"), Decimal("116.435300"))
    stored = edges()
    # Trip L1-E-0610 measured 2,615 m for this hop; the minimum over trips is kept.
    assert stored[("L1-PINGGUOYUAN", "L1-GUCHENG", "L1")] == 2600
    assert stored[("L1-GUCHENG", "L1-PINGGUOYUAN", "L1")] == 2600
    assert stored[("AE-SANYUANQIAO", "AE-T3", "AE")] == 18322
    assert ("B-SIHUI", "B-BAWANGFEN", "B1") in stored
    assert ("B-CHAOYANGMEN", "B-DONGZHIMENBEI", "B44") not in stored  # one-way ring route
    transfers = {
        (t.from_stop_id, t.to_stop_id): t.source
        for t in db.session.scalars(select(TransitTransfer))
    }
    assert transfers == {
        ("AE-DONGZHIMEN", "L2-DONGZHIMEN"): "parent_station",
        ("AE-SANYUANQIAO", "L10-SANYUANQIAO"): "parent_station",
        ("L1-FUXINGMEN", "L2-FUXINGMEN"): "parent_station",
        ("L1-JIANGUOMEN", "L2-JIANGUOMEN"): "parent_station",
        ("L1-GUOMAO", "L10-GUOMAO"): "transfers.txt",
    }
    meta = db.session.get(TransitNetwork, 1)
    assert meta is not None
    assert (meta.feed_name, meta.distance_unit, meta.edge_count) == ("beijing-sample.zip", "m", 150)
    assert len(meta.feed_sha256) == 64


def test_a_folder_imports_like_its_zip(app_ctx: Flask, feed_dir: Path, rules: FareRules) -> None:
    report = import_feed(feed_dir, rules=rules, now=NOW)
    assert (report.stops, report.edges, report.transfers) == (88, 150, 5)


def test_reimport_replaces_the_network(
    app_ctx: Flask, sample_zip: Path, feed_dir: Path, rules: FareRules
) -> None:
    first = import_feed(sample_zip, rules=rules, now=NOW)
    before = edges()
    again = import_feed(sample_zip, rules=rules, now=NOW)
    assert (again.version, counts(), edges()) == (2, SAMPLE_COUNTS, before)
    assert again.token != first.token
    # A smaller feed: the 44 bus is gone, and so are its edges.
    _drop_route(feed_dir, "B44")
    third = import_feed(feed_dir, rules=rules, now=NOW)
    assert third.version == 3
    assert db.session.get(TransitRoute, "B44") is None
    assert not [k for k in edges() if k[2] == "B44"]
    assert counts()["transit_edge"] == 150 - 7


def _drop_route(folder: Path, route_id: str) -> None:
    """Remove a route, its trips and their stop times from a feed folder."""
    keep = {
        "routes.txt": lambda f: f[0] != route_id,
        "trips.txt": lambda f: f[0] != route_id,
        "stop_times.txt": lambda f: not f[0].startswith(f"{route_id}-"),
    }
    for name, wanted in keep.items():
        path = folder / name
        header, *rows = path.read_text(encoding="utf-8").splitlines()
        kept = [row for row in rows if wanted(row.split(","))]
        path.write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")


def _to_km(folder: Path) -> None:
    path = folder / "stop_times.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split(",")
        fields[-1] = str(Decimal(fields[-1]) / 1000)  # e.g. 2600 -> 2.6
        out.append(",".join(fields))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def test_a_kilometre_feed_gives_the_same_metres(
    app_ctx: Flask, sample_zip: Path, feed_dir: Path, rules: FareRules, tmp_path: Path
) -> None:
    import_feed(sample_zip, rules=rules, now=NOW)
    in_metres = edges()
    _to_km(feed_dir)
    assert "2.6" in (feed_dir / "stop_times.txt").read_text(encoding="utf-8")
    report = import_feed(
        zip_feed(feed_dir, tmp_path / "km.zip"), rules=rules, distance_unit="km", now=NOW
    )
    assert edges() == in_metres
    meta = db.session.get(TransitNetwork, 1)
    assert meta is not None and (meta.distance_unit, meta.version, report.edges) == ("km", 2, 150)


def test_kilometres_round_to_the_metre(feed_dir: Path) -> None:
    line = find_line(feed_dir, "stop_times.txt", "L1-E-0600", "L1-GUCHENG")
    edit_line(feed_dir, "stop_times.txt", line, lambda f: [*f[:-1], "2600.5"])
    feed = read_feed(feed_dir)
    assert feed.edges[("L1-PINGGUOYUAN", "L1-GUCHENG", "L1")] == 2601  # 2600.5 rounds half up
    assert feed.edges[("L1-GUCHENG", "L1-BAJIAOYOULEYUAN", "L1")] == 1926  # 4527 - 2601


def test_an_unknown_unit_is_refused(feed_dir: Path) -> None:
    with pytest.raises(GtfsError, match="distance unit must be m or km"):
        read_feed(feed_dir, distance_unit="mi")


def test_progress_is_reported(feed_dir: Path) -> None:
    messages: list[str] = []
    read_feed(feed_dir, progress=messages.append, progress_every=50)
    assert [m for m in messages if m.startswith("stop_times.txt")] == [
        "stop_times.txt: 50 rows",
        "stop_times.txt: 100 rows",
        "stop_times.txt: 150 rows",
        "stop_times.txt: 182 rows, 11 trips",
    ]


@pytest.mark.parametrize(
    ("route_type", "mode"),
    [(0, "rail"), (1, "rail"), (2, "rail"), (12, "rail"), (109, "rail"), (401, "rail"),
     (900, "rail"), (3, "bus"), (11, "bus"), (700, "bus"), (800, "bus"), (4, None), (6, None),
     (1000, None)],
)  # fmt: skip
def test_route_modes(route_type: int, mode: str | None) -> None:
    assert route_mode(route_type) == mode


# --- validation: each error names file and line; nothing is written -------------------------

Breaker = Callable[[Path], tuple[str, int | None]]


def _remove(name: str) -> Breaker:
    def apply(folder: Path) -> tuple[str, int | None]:
        (folder / name).unlink()
        return f"missing required file(s) {name}", None

    return apply


def _drop_column(name: str, column: str) -> Breaker:
    def apply(folder: Path) -> tuple[str, int | None]:
        path = folder / name
        lines = path.read_text(encoding="utf-8").splitlines()
        index = lines[0].split(",").index(column)
        rows = [",".join(v for i, v in enumerate(line.split(",")) if i != index) for line in lines]
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        return f"{name} line 1: missing required column(s) {column}", 1

    return apply


def _edit(name: str, where: tuple[str, ...], index: int, value: str, message: str) -> Breaker:
    def apply(folder: Path) -> tuple[str, int | None]:
        line = find_line(folder, name, *where)
        edit_line(folder, name, line, lambda f: [*f[:index], value, *f[index + 1 :]])
        return f"{name} line {line}: {message}", line

    return apply


def _append(name: str, row: str, message: str) -> Breaker:
    def apply(folder: Path) -> tuple[str, int | None]:
        path = folder / name
        text = path.read_text(encoding="utf-8")
        path.write_text(text + row + "\n", encoding="utf-8")
        line = len(text.splitlines()) + 1
        return f"{name} line {line}: {message}", line

    return apply


BREAKERS: dict[str, Breaker] = {
    "no stop_times.txt": _remove("stop_times.txt"),
    "no stops.txt": _remove("stops.txt"),
    "no shape_dist_traveled": _drop_column("stop_times.txt", "shape_dist_traveled"),
    "no stop_lat": _drop_column("stops.txt", "stop_lat"),
    "no route_type": _drop_column("routes.txt", "route_type"),
    "distance goes backwards": _edit(
        "stop_times.txt",
        ("L1-E-0600", "L1-BAJIAOYOULEYUAN"),
        5,
        "2000",
        "shape_dist_traveled is not increasing on trip 'L1-E-0600': 2000 at stop_sequence 3 "
        "after 2600 at stop_sequence 2 (line 3)",
    ),
    "distance stands still": _edit(
        "stop_times.txt",
        ("L2-INNER-0600", "L2-CHEGONGZHUANG"),
        5,
        "0",
        "shape_dist_traveled is not increasing on trip 'L2-INNER-0600'",
    ),
    "empty distance": _edit(
        "stop_times.txt",
        ("B1-E-0530", "B-XIDAN"),
        5,
        "",
        "shape_dist_traveled is empty (trip 'B1-E-0530')",
    ),
    "distance not a number": _edit(
        "stop_times.txt",
        ("B1-E-0530", "B-XIDAN"),
        5,
        "12km",
        "shape_dist_traveled must be a number",
    ),
    "unknown stop id": _edit(
        "stop_times.txt",
        ("L10-N-0600", "L10-HUJIALOU"),
        3,
        "L10-NOWHERE",
        "unknown stop_id 'L10-NOWHERE'",
    ),
    "stop time at a station": _edit(
        "stop_times.txt",
        ("L2-OUTER-0600", "L2-FUXINGMEN"),
        3,
        "BJ-FUXINGMEN",
        "stop_id 'BJ-FUXINGMEN' is not a stop or platform (location_type 1)",
    ),
    "unknown trip id": _edit(
        "stop_times.txt", ("AE-0630", "AE-T3"), 0, "AE-0631", "unknown trip_id 'AE-0631'"
    ),
    "repeated sequence": _edit(
        "stop_times.txt",
        ("AE-0630", "AE-T3"),
        4,
        "2",
        "stop_sequence 2 repeats on trip 'AE-0630'",
    ),
    "unknown route id": _edit("trips.txt", ("L10-S-0600",), 0, "L11", "unknown route_id 'L11'"),
    "duplicate trip": _append(
        "trips.txt",
        "L1,DAILY,L1-E-0600,四惠东,0",
        "duplicate trip_id 'L1-E-0600' (first on line 2)",
    ),
    "duplicate stop": _append(
        "stops.txt", "L1-XIDAN,西单,39.907400,116.374100,0,", "duplicate stop_id 'L1-XIDAN'"
    ),
    "unknown parent": _edit(
        "stops.txt",
        ("L2-JIANGUOMEN",),
        5,
        "BJ-NOWHERE",
        "parent_station 'BJ-NOWHERE' of stop 'L2-JIANGUOMEN' is not a stop",
    ),
    "latitude not a number": _edit(
        "stops.txt", ("L1-XIDAN",), 2, "north", "stop_lat must be a number"
    ),
    "latitude out of range": _edit(
        "stops.txt", ("L1-XIDAN",), 2, "139.9", "stop_lat 139.9 is outside -90..90"
    ),
    "ferry": _edit(
        "routes.txt", ("B44",), 4, "4", "route 'B44': route_type 4 is neither rail nor bus"
    ),
    "route without a name": _append(
        "routes.txt", "B99,BJBUS,,,3", "route 'B99' needs route_short_name"
    ),
    "transfer to nowhere": _append(
        "transfers.txt", "L1-XIDAN,L4-XIDAN,2,120", "unknown to_stop_id 'L4-XIDAN'"
    ),
    "too many fields": _append(
        "trips.txt", "L1,DAILY,L1-X,x,0,extra", "6 fields but the header has 5"
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKERS))
def test_bad_feeds_are_refused_and_nothing_is_written(
    app_ctx: Flask, sample_zip: Path, feed_dir: Path, rules: FareRules, tmp_path: Path, case: str
) -> None:
    first = import_feed(sample_zip, rules=rules, now=NOW)
    before = (counts(), edges())
    message, line = BREAKERS[case](feed_dir)
    broken = zip_feed(feed_dir, tmp_path / "broken.zip")
    with pytest.raises(GtfsError) as caught:
        import_feed(broken, rules=rules, now=NOW)
    assert message in str(caught.value)
    assert caught.value.line == line
    assert (counts(), edges()) == before
    meta = db.session.get(TransitNetwork, 1)
    assert meta is not None and (meta.version, meta.token) == (1, first.token)


def test_not_a_zip(tmp_path: Path, rules: FareRules) -> None:
    junk = tmp_path / "feed.zip"
    junk.write_bytes(b"PK? no, not really")
    with pytest.raises(GtfsError, match="feed.zip: not a GTFS zip or folder"):
        read_feed(junk)


def test_not_utf8(feed_dir: Path) -> None:
    path = feed_dir / "stops.txt"
    path.write_bytes(path.read_bytes().replace("西单".encode(), "西单".encode("gb18030")))
    with pytest.raises(GtfsError, match=r"stops.txt line \d+: not UTF-8 text"):
        read_feed(feed_dir)


def test_a_byte_order_mark_is_accepted(feed_dir: Path) -> None:
    path = feed_dir / "stops.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(read_feed(feed_dir).stops) == 88


def test_a_forbidden_transfer_removes_the_station_link(feed_dir: Path) -> None:
    with (feed_dir / "transfers.txt").open("a", encoding="utf-8") as fh:
        fh.write("L2-JIANGUOMEN,L1-JIANGUOMEN,3,\n")
    transfers = read_feed(feed_dir).transfers
    assert ("L1-JIANGUOMEN", "L2-JIANGUOMEN") not in transfers
    assert ("L1-FUXINGMEN", "L2-FUXINGMEN") in transfers


def test_transfers_are_optional(feed_dir: Path) -> None:
    (feed_dir / "transfers.txt").unlink()
    transfers = read_feed(feed_dir).transfers
    assert ("L1-GUOMAO", "L10-GUOMAO") not in transfers
    assert len(transfers) == 4


def test_a_bus_route_cannot_be_flat_fare(app_ctx: Flask, sample_zip: Path, tmp_path: Path) -> None:
    from services.transit.fares import load_rules

    data = rules_document()
    data["rule_sets"][1]["rail"]["flat_fare_routes"]["B1"] = {"fare_fen": 100}
    rules = load_rules(write_rules(tmp_path, data))
    with pytest.raises(GtfsError, match="give route 'B1' a flat fare, but it is a bus route"):
        import_feed(sample_zip, rules=rules, now=NOW)
    assert counts()["transit_network"] == 0


def test_flat_fare_flag_comes_from_the_rules(
    app_ctx: Flask, sample_zip: Path, tmp_path: Path
) -> None:
    from services.transit.fares import load_rules

    data = rules_document()
    data["rule_sets"][1]["rail"]["flat_fare_routes"] = {
        "L10": {"fare_fen": 500},
        "S1": {"fare_fen": 300},
    }
    rules = load_rules(write_rules(tmp_path, data))
    report = import_feed(sample_zip, rules=rules, now=NOW)
    assert (report.flat_fare_routes, report.unknown_flat_fare_routes) == (("L10",), ("S1",))
    flags = {r.route_id: r.flat_fare for r in db.session.scalars(select(TransitRoute))}
    assert flags["L10"] is True and flags["AE"] is False


# --- the commands -----------------------------------------------------------------------------


def _cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def test_cli_import(app: Flask, sample_zip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "TRANSIT_IMPORT_PROGRESS_EVERY", 100)
    result = _cli(app, "transit", "import-gtfs", str(sample_zip))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("imported beijing-sample.zip: network version 1; 88 stops")
    assert "flat-fare routes: AE" in result.stdout
    assert "stop_times.txt: 100 rows\n" in result.stderr
    assert "wrote 150 rows to transit_edge" in result.stderr
    with app.app_context():
        assert counts() == SAMPLE_COUNTS


def test_cli_import_in_kilometres(app: Flask, feed_dir: Path) -> None:
    _to_km(feed_dir)
    result = _cli(app, "transit", "import-gtfs", str(feed_dir), "--distance-unit", "km")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert edges()[("L1-PINGGUOYUAN", "L1-GUCHENG", "L1")] == 2600


def test_cli_import_error(app: Flask, feed_dir: Path) -> None:
    message, _line = BREAKERS["distance goes backwards"](feed_dir)
    result = _cli(app, "transit", "import-gtfs", str(feed_dir))
    assert result.exit_code == 1
    assert f"Error: {message}" in result.stderr
    assert "Traceback" not in result.output
    with app.app_context():
        assert counts()["transit_network"] == 0


def test_cli_check_rules(app: Flask, tmp_path: Path) -> None:
    ok = _cli(app, "transit", "check-rules")
    assert ok.exit_code == 0, ok.output
    assert "2014-12-28  beijing-2014-12-28  (flat-fare routes: AE)" in ok.stdout
    bad = write_rules(tmp_path, {"rule_sets": "none"})
    result = _cli(app, "transit", "check-rules", str(bad))
    assert result.exit_code == 1
    assert "rule_sets: must be a non-empty list" in result.stderr


def test_cli_import_with_bad_rules(app: Flask, sample_zip: Path, tmp_path: Path) -> None:
    bad = write_rules(tmp_path, {"rule_sets": []})
    result = _cli(app, "transit", "import-gtfs", str(sample_zip), "--rules", str(bad))
    assert result.exit_code == 1
    assert "rule_sets: must be a non-empty list" in result.stderr
