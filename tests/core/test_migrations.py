"""Models and migrations agree; every branch has one head; migrations run both ways."""

from __future__ import annotations

import flask_migrate
import pytest
from alembic.script import ScriptDirectory

from citizen_card.extensions import db


def _run(app, *args):
    return app.test_cli_runner().invoke(args=["db", *args])


@pytest.mark.no_isolation
def test_models_and_migrations_agree(committed_app):
    result = _run(committed_app, "-x", "service=all", "check")
    assert result.exit_code == 0, result.output


@pytest.mark.no_isolation
def test_check_detects_drift(committed_app):
    with committed_app.app_context():
        flask_migrate.downgrade(revision="hello_service@-1")
    result = _run(committed_app, "-x", "service=all", "check")
    assert result.exit_code != 0
    with committed_app.app_context():
        flask_migrate.upgrade(revision="heads")
    assert _run(committed_app, "-x", "service=all", "check").exit_code == 0


@pytest.mark.no_isolation
def test_downgrade_to_base_and_up_again(committed_app):
    with committed_app.app_context():
        flask_migrate.downgrade(revision="base")
        assert db.inspect(db.engine).get_table_names() == ["alembic_version"]
        flask_migrate.upgrade(revision="heads")
        tables = set(db.inspect(db.engine).get_table_names())
    assert {"audit_event", "audit_block", "hello_service_greeting"} <= tables


def test_one_head_per_branch(app):
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config()
        scripts = ScriptDirectory.from_config(config)
        heads_by_branch: dict[str, list[str]] = {}
        for head in scripts.get_heads():
            for label in _branch_of(scripts, head):
                heads_by_branch.setdefault(label, []).append(head)
    assert set(heads_by_branch) == {"core", "hello_service", "transit"}
    assert all(len(heads) == 1 for heads in heads_by_branch.values()), heads_by_branch


def _branch_of(scripts, revision):
    """Branch labels met going down by down_revision only (depends_on is not descent)."""
    labels = set()
    rev = scripts.get_revision(revision)
    while rev is not None:
        labels |= set(rev.branch_labels)
        down = rev.down_revision
        if isinstance(down, tuple):
            down = down[0] if down else None
        rev = scripts.get_revision(down) if down else None
    return labels


def test_service_branches_depend_on_core(app):
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config()
        scripts = ScriptDirectory.from_config(config)
        for base in scripts.get_bases():
            rev = scripts.get_revision(base)
            if "core" not in rev.branch_labels:
                assert rev.dependencies, f"{rev.revision} must depend on a core revision"
