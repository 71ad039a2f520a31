"""Alembic environment of crmkit-sqlalchemy's migrations.

crmkit runs the migrations itself (``crmkit_sqlalchemy.upgrade``), handing over an open
connection in ``config.attributes["connection"]``; a maintainer may also point the
``alembic`` command at this folder with ``sqlalchemy.url`` set.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from crmkit_sqlalchemy._schema import VERSION_TABLE, metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
