"""Fixtures of the transit tests: the sample Beijing feed (as a zip), the rules, the network."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from services.transit.fares import DEFAULT_RULES_FILE
from services.transit.fares import FareRules
from services.transit.fares import load_rules
from services.transit.gtfs import import_feed
from services.transit.network import Network
from services.transit.network import current_network

SAMPLE_DIR = (
    Path(__file__).resolve().parents[2] / "services" / "transit" / "data" / "beijing-sample"
)
# A moment when the 2014 rules are in force (Beijing: 2026-03-02 09:00).
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def zip_feed(folder: Path, dest: Path) -> Path:
    """Zip a feed folder's .txt files at the archive's root, as GTFS wants."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.glob("*.txt")):
            archive.write(path, arcname=path.name)
    return dest


@pytest.fixture(scope="session")
def sample_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed sample feed, zipped once per run."""
    return zip_feed(SAMPLE_DIR, tmp_path_factory.mktemp("gtfs") / "beijing-sample.zip")


@pytest.fixture()
def feed_dir(tmp_path: Path) -> Path:
    """A private copy of the sample feed's folder, for tests that break it."""
    target = tmp_path / "feed"
    shutil.copytree(SAMPLE_DIR, target)
    return target


def edit_line(folder: Path, name: str, line: int, change: Callable[[list[str]], list[str]]) -> None:
    """Rewrite one line (1 = header) of a feed file, given and returning its CSV fields."""
    path = folder / name
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = ",".join(change(lines[line - 1].split(",")))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def find_line(folder: Path, name: str, *fields: str) -> int:
    """The line number (1-based) of the first line holding all these CSV fields."""
    for number, text in enumerate((folder / name).read_text(encoding="utf-8").splitlines(), 1):
        values = text.split(",")
        if all(f in values for f in fields):
            return number
    raise AssertionError(f"no line in {name} with {fields}")


@pytest.fixture(scope="session")
def rules() -> FareRules:
    """The shipped fare rules."""
    return load_rules(DEFAULT_RULES_FILE)


@pytest.fixture()
def network(app_ctx: Flask, sample_zip: Path, rules: FareRules) -> Iterator[Network]:
    """The sample feed imported into the (rolled-back) test database, as a graph."""
    import_feed(sample_zip, rules=rules, now=NOW)
    yield current_network()


def rules_document(**changes: Any) -> dict[str, Any]:
    """The shipped rules as a dict, for tests that write variants of it."""
    data: dict[str, Any] = json.loads(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    data.update(changes)
    return data


def write_rules(tmp_path: Path, data: Any, name: str = "rules.json") -> Path:
    """Write a rules document to a file and return its path."""
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path
