"""Alembic environment: runs on the app's own engine, one owner at a time for autogenerate.

``-x service=<name>`` limits autogenerate/check to one owner's tables (``core`` is the
default); ``-x service=all`` includes every owner.
"""

import logging

from alembic import context
from flask import current_app

from citizen_card.migrations import include_object_for

config = context.config
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db
selected = context.get_x_argument(as_dictionary=True).get("service", "core")


def process_revision_directives(ctx, revision, directives):
    # Never write an empty migration.
    if getattr(config.cmd_opts, "autogenerate", False):
        script = directives[0]
        if script.upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")


def run_migrations_online():
    """Run migrations on a connection from db.engine (not get_engine(), which warns)."""
    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args["include_object"] = include_object_for(selected)
    with target_db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_db.metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=target_db.engine.url.render_as_string(hide_password=False),
        target_metadata=target_db.metadata,
        literal_binds=True,
        include_object=include_object_for(selected),
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
