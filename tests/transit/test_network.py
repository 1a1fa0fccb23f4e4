"""Shortest fare distances on the sample network, transfers, flat-fare isolation, the cache
and the penalty (maximum) fare."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from services.transit.fares import FareRules
from services.transit.fares import max_fare_from
from services.transit.fares import quote
from services.transit.gtfs import import_feed
from services.transit.network import Network
from services.transit.network import NetworkNotLoaded
from services.transit.network import NoFarePath
from services.transit.network import RouteInfo
from services.transit.network import StopInfo
from services.transit.network import UnknownStop
from services.transit.network import current_network
from tests.transit.conftest import NOW
from tests.transit.conftest import edit_line
from tests.transit.conftest import find_line

# Real sample stop pairs whose fare distances sit on the tier boundaries (see
# docs/transit-fares.md, "The sample feed").
BOUNDARY_PAIRS = [
    ("L1-TIANANMENXI", "L1-GUOMAO", 6000, 300),
    ("L1-NANLISHILU", "L1-DONGDAN", 6010, 400),
    ("L1-BAJIAOYOULEYUAN", "L1-NANLISHILU", 12000, 400),
    ("L1-PINGGUOYUAN", "L2-QIANMEN", 22000, 500),  # Line 1, change at 复兴门, Line 2 south
    ("L1-PINGGUOYUAN", "L10-SANYUANQIAO", 32000, 600),  # change at 国贸 (transfers.txt)
    ("L1-PINGGUOYUAN", "L10-FENZHONGSI", 32100, 700),
]


@pytest.mark.parametrize(("a", "b", "metres", "fen"), BOUNDARY_PAIRS)
def test_boundary_pairs(network: Network, a: str, b: str, metres: int, fen: int) -> None:
    assert network.rail_distance(a, b) == metres
    assert network.rail_distance(b, a) == metres  # rail fares are symmetric
    assert quote(a, b, at=NOW, network=network).fare_fen == fen


@pytest.mark.parametrize(
    ("a", "b", "metres"),
    [
        ("L1-PINGGUOYUAN", "L1-GUCHENG", 2600),  # the shorter of two trips' measurements
        ("L1-FUXINGMEN", "L1-JIANGUOMEN", 6740),  # Line 1 beats Line 2's south side (8,575 m)
        ("L1-FUXINGMEN", "L2-QIANMEN", 4973),  # change to Line 2 at 复兴门
        ("L2-XIZHIMEN", "L2-DONGZHIMEN", 7924),  # round the north of the loop
        # Via Line 1 and 复兴门: shorter than either side of the Line 2 loop (12,113 m east).
        ("L2-JIANGUOMEN", "L2-XIZHIMEN", 10441),
        ("L1-GUOMAO", "L10-GUOMAO", 0),  # linked by transfers.txt only
    ],
)
def test_shortest_paths(network: Network, a: str, b: str, metres: int) -> None:
    assert network.rail_distance(a, b) == metres


def test_no_free_transfer_onto_the_airport_express(network: Network) -> None:
    # 东直门 → 三元桥 is 3,022 m on the Airport Express, but that line is a separate fare:
    # the distance-based journey goes round by Line 2, Line 1 and Line 10.
    journey = network.journey("L2-DONGZHIMEN", "L10-SANYUANQIAO")
    assert (journey.kind, journey.distance_m) == ("rail", 12422)
    assert journey.path[:4] == (
        "L2-DONGZHIMEN",
        "L2-DONGSISHITIAO",
        "L2-CHAOYANGMEN",
        "L2-JIANGUOMEN",
    )
    assert "L1-GUOMAO" in journey.path and "L10-GUOMAO" in journey.path
    assert not [s for s in journey.path if s.startswith("AE-")]
    # Stations stand for their platforms; the Airport Express platforms are still left out.
    assert network.journey("BJ-DONGZHIMEN", "BJ-SANYUANQIAO") == journey
    with pytest.raises(NoFarePath):
        network.journey("L2-DONGZHIMEN", "AE-T3")
    with pytest.raises(NoFarePath):
        network.journey("AE-T2", "L1-GUOMAO")


def test_airport_express_journeys(network: Network) -> None:
    journey = network.journey("AE-DONGZHIMEN", "AE-T3")
    assert (journey.kind, journey.route_id, journey.distance_m) == ("flat", "AE", 21344)
    assert journey.path == ("AE-DONGZHIMEN", "AE-SANYUANQIAO", "AE-T3")
    q = quote("BJ-SANYUANQIAO", "AE-T2", at=NOW, network=network)
    assert (q.kind, q.fare_fen, q.breakdown.counts_toward_month_fen) == ("flat", 2500, 0)


def test_bus_journeys_follow_the_route_direction(network: Network) -> None:
    east = network.journey("B-LAOSHAN", "B-DONGDAN")
    assert (east.kind, east.route_id, east.distance_m) == ("bus", "B1", 15000)
    assert network.journey("B-DONGDAN", "B-LAOSHAN").distance_m == 15000  # B1 runs both ways
    ring = network.journey("B-XIZHIMENBEI", "B-CHAOYANGMEN")
    assert (ring.route_id, ring.distance_m) == ("B44", 9900)
    with pytest.raises(NoFarePath):
        network.journey("B-CHAOYANGMEN", "B-XIZHIMENBEI")  # the 44 (inner ring) runs one way
    with pytest.raises(NoFarePath):
        network.journey("B-LAOSHAN", "B-XIZHIMENBEI")  # two buses are two fares


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("L1-JIANGUOMEN", "L2-JIANGUOMEN", True),
        ("BJ-JIANGUOMEN", "L2-JIANGUOMEN", True),
        ("BJ-JIANGUOMEN", "BJ-JIANGUOMEN", True),
        ("L1-GUOMAO", "L10-GUOMAO", False),  # no parent_station in the feed
        ("L1-XIDAN", "B-XIDAN", False),
    ],
)
def test_same_station(network: Network, a: str, b: str, same: bool) -> None:
    assert network.same_station(a, b) is same


def test_unknown_stops(network: Network) -> None:
    with pytest.raises(UnknownStop) as caught:
        network.journey("L1-XIDAN", "L4-XIDAN")
    assert caught.value.extensions == {"stop_id": "L4-XIDAN"}


def test_the_graph_is_cached_per_import(network: Network, feed_dir: Path, rules: FareRules) -> None:
    assert current_network() is network
    line = find_line(feed_dir, "stop_times.txt", "L1-E-0600", "L1-GUCHENG")
    edit_line(feed_dir, "stop_times.txt", line, lambda f: [*f[:-1], "2500"])
    import_feed(feed_dir, rules=rules, now=NOW)
    fresh = current_network()
    assert fresh is not network and fresh.token != network.token
    assert fresh.version == network.version + 1
    assert fresh.rail_distance("L1-PINGGUOYUAN", "L1-GUCHENG") == 2500
    assert network.rail_distance("L1-PINGGUOYUAN", "L1-GUCHENG") == 2600  # old graph unchanged
    assert current_network() is fresh


def test_no_network_yet(app_ctx: Flask) -> None:
    with pytest.raises(NetworkNotLoaded):
        current_network()


@pytest.mark.parametrize(
    ("stop_id", "kind", "metres", "fen"),
    [
        ("L1-PINGGUOYUAN", "rail", 34762, 700),  # to 芍药居 via 国贸
        ("BJ-JIANGUOMEN", "rail", 23767, 600),  # station: farthest from either platform
        ("L10-SHAOYAOJU", "rail", 34762, 700),
        ("AE-T3", "flat", 21344, 2500),  # the flat fare, whatever the distance
        ("BJ-DONGZHIMEN", "flat", 23760, 2500),  # the dearer of Line 2 and the Airport Express
        ("B-LAOSHAN", "bus", 21600, 500),  # full (cash) fare to the end of the route
        ("B-SIHUI", "bus", 21600, 500),
    ],
)
def test_max_fare_from(
    network: Network, rules: FareRules, stop_id: str, kind: str, metres: int, fen: int
) -> None:
    penalty = max_fare_from(stop_id, at=NOW, network=network, rules=rules)
    assert (penalty.kind, penalty.distance_m, penalty.penalty_fen, penalty.total_fen) == (
        kind,
        metres,
        fen,
        fen,
    )
    assert (penalty.base_fen, penalty.discount_fen, penalty.counts_toward_month_fen) == (0, 0, 0)


def test_max_fare_from_uses_the_app_defaults(network: Network) -> None:
    assert max_fare_from("L1-PINGGUOYUAN", at=NOW).penalty_fen == 700


def test_quote_with_a_monthly_spend(network: Network) -> None:
    q = quote("L1-TIANANMENXI", "L1-GUOMAO", at=NOW, month_spent_fen=15000)
    assert (q.fare_fen, q.breakdown.discount_fen) == (150, 150)
    assert q.discount is not None and q.discount.remaining_fen == 25000


# --- the graph on its own ---------------------------------------------------------------------


def _tiny(transfers: list[tuple[str, str]]) -> Network:
    stops = [
        StopInfo("S", "Station", 1, None),
        StopInfo("A1", "A on line A", 0, "S"),
        StopInfo("F1", "F on flat line", 0, "S"),
        StopInfo("A2", "A2", 0, None),
        StopInfo("F2", "F2", 0, None),
        StopInfo("X", "Shared stop", 0, None),
        StopInfo("Y", "Y", 0, None),
    ]
    routes = [
        RouteInfo("A", "A", "", "rail", False),
        RouteInfo("F", "F", "", "rail", True),
    ]
    edges = [
        ("A1", "A2", "A", 5000),
        ("A2", "A1", "A", 4000),  # the other direction measured shorter: min wins both ways
        ("F1", "F2", "F", 100),
        ("A2", "X", "A", 1000),
        ("X", "Y", "F", 10),  # X is on both lines; Y only on the flat one
    ]
    return Network(
        token="t", version=1, stops=stops, routes=routes, edges=edges, transfers=transfers
    )


def test_graph_min_edges_and_stations() -> None:
    net = _tiny([("A1", "F1")])
    assert net.rail_distance("A1", "A2") == 4000
    assert net.rail_distance("A2", "A1") == 4000
    assert net.rail_distance("S", "A2") == 4000  # the station resolves to its rail platform
    # The transfer A1-F1 is ignored: F1 is only on the flat line.
    assert net.journey("S", "F2").kind == "flat"
    with pytest.raises(NoFarePath):
        net.journey("A2", "F2")
    # A stop shared by both lines reaches the flat-only stop only as a flat journey.
    assert net.journey("X", "Y").kind == "flat"
    with pytest.raises(NoFarePath):
        net.journey("A1", "Y")


@pytest.mark.parametrize(
    ("to", "metres", "cash_fen", "card_fen"),
    [
        ("B-NANLISHILU", 10000, 200, 100),
        ("B-FUXINGMENNEI", 10800, 300, 150),
        ("B-DONGDAN", 15000, 300, 150),
        ("B-BEIJINGZHANKOU", 16100, 400, 200),
        ("B-BAWANGFEN", 20000, 400, 200),
        ("B-SIHUI", 21600, 500, 250),
    ],
)
def test_bus_boundary_pairs(
    network: Network, to: str, metres: int, cash_fen: int, card_fen: int
) -> None:
    q = quote("B-LAOSHAN", to, at=NOW, network=network)
    assert (q.kind, q.route_id, q.distance_m) == ("bus", "B1", metres)
    assert (q.breakdown.base_fen, q.fare_fen) == (cash_fen, card_fen)
