"""Customers keep their folded name, so that name search and type-ahead are served by an index.

``name_folded`` holds ``crmkit.search.fold(name)``: case folded, accents and punctuation
removed, Arabic and Persian letter variants unified. ``F("name").matches(...)`` and
``F("name").startswith(..., fold=True)`` search it, the latter through the index on
(tenant, name_folded, id), which also gives a page of a prefix's matches in id order
without reading the rows. Existing customers are folded here, in Python, by the same
function the stores use, a thousand at a time. The downgrade drops the column.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from crmkit_sqlalchemy._types import Text

from crmkit.search import fold

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.add_column("customers", sa.Column("name_folded", Text, nullable=True))
    connection = op.get_bind()
    table = sa.table(
        "customers",
        sa.column("tenant", sa.String()),
        sa.column("id", sa.Uuid()),
        sa.column("name", Text),
        sa.column("name_folded", Text),
    )
    update = (
        table.update()
        .where(table.c.tenant == sa.bindparam("p_tenant"), table.c.id == sa.bindparam("p_id"))
        .values(name_folded=sa.bindparam("p_folded"))
    )
    read = sa.select(table.c.tenant, table.c.id, table.c.name).order_by(table.c.tenant, table.c.id).limit(_BATCH)
    after: tuple[str, object] | None = None
    while True:  # through the primary key, a thousand at a time
        page = read if after is None else read.where(sa.tuple_(table.c.tenant, table.c.id) > sa.tuple_(*after))
        rows = connection.execute(page).all()
        if not rows:
            break
        connection.execute(update, [{"p_tenant": t, "p_id": i, "p_folded": fold(n)} for t, i, n in rows])
        after = (rows[-1][0], rows[-1][1])
    with op.batch_alter_table("customers") as batch:  # SQLite alters a column by copying the table
        batch.alter_column("name_folded", existing_type=Text, nullable=False)
    op.create_index("ix_customers_tenant_name_folded_id", "customers", ["tenant", "name_folded", "id"])


def downgrade() -> None:
    op.drop_index("ix_customers_tenant_name_folded_id", table_name="customers")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("name_folded")
