"""The tables: SQLAlchemy Core metadata, one table per hand-tuned crmkit aggregate.

Every primary key, unique key and index starts with ``tenant``, so that all of one
tenant's rows can live on one node when the database is distributed by tenant (Citus).
The Alembic migrations shipped in ``crmkit_sqlalchemy/migrations`` build exactly this
schema, and the tables of crmkit's own declared aggregates (``state_changes``, derived by
``_derived``); a test checks that they never drift apart.
"""

from __future__ import annotations

import sqlalchemy as sa

from crmkit_sqlalchemy._types import Json, Money, Text, UtcDateTime

__all__ = ["SHADOW", "TABLES", "VERSION_TABLE", "metadata", "shadow_column"]

#: ``Column.info`` key of a column that holds the folded form of a searchable text field
#: (``schema.text(search=True)``): the field's name. Written from the field, never read back.
SHADOW = "crmkit_shadow"


def shadow_column(name: str) -> str:
    """The column holding the folded form of searchable text field ``name``."""
    return f"{name}_folded"


#: Alembic's revision table, named apart from any the application may keep in the same database.
VERSION_TABLE = "crmkit_alembic_version"

metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)

_TENANT_LENGTH = 100


def _common() -> list[sa.Column[object]]:
    return [
        sa.Column("tenant", sa.String(_TENANT_LENGTH), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
    ]


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    ]


def _json(name: str) -> sa.Column[object]:
    return sa.Column(name, Json, nullable=False)


customers = sa.Table(
    "customers",
    metadata,
    *_common(),
    sa.Column("kind", Text, nullable=False),
    sa.Column("name", Text, nullable=False),
    sa.Column("stage", Text, nullable=False),
    sa.Column("owner", Text, nullable=True),
    sa.Column("external_id", Text, nullable=True),
    _json("tags"),
    _json("emails"),
    _json("phones"),
    _json("addresses"),
    _json("handles"),
    _json("attributes"),
    *_stamps(),
    # the folded name (crmkit.search.fold), for matches() and type-ahead startswith(fold=True)
    sa.Column("name_folded", Text, nullable=False, info={SHADOW: "name"}),
    sa.PrimaryKeyConstraint("tenant", "id"),
    sa.UniqueConstraint("tenant", "external_id"),
    sa.Index(None, "tenant", "stage"),
    sa.Index(None, "tenant", "name_folded", "id"),
    # record-level access reads customers by owner (crmkit.access.OwnerPolicy): added by revision 0006
    sa.Index(None, "tenant", "owner"),
)

relationships = sa.Table(
    "relationships",
    metadata,
    *_common(),
    sa.Column("source_id", sa.Uuid(), nullable=False),
    sa.Column("target_id", sa.Uuid(), nullable=False),
    sa.Column("kind", Text, nullable=False),
    sa.Column("role", Text, nullable=True),
    sa.Column("since", sa.Date(), nullable=True),
    sa.Column("until", sa.Date(), nullable=True),
    _json("attributes"),
    *_stamps(),
    sa.Column("external_id", Text, nullable=True),
    sa.PrimaryKeyConstraint("tenant", "id"),
    sa.UniqueConstraint("tenant", "external_id"),
    sa.Index(None, "tenant", "source_id", "kind"),
    sa.Index(None, "tenant", "target_id", "kind"),
)

#: An undated relationship's ``since`` in its natural key (a date Relationship refuses), so
#: that two undated edges clash: SQL NULLs never would, and SQLite has no NULLS NOT DISTINCT.
UNDATED = "0001-01-01"

#: The natural key (tenant, source_id, target_id, kind, since): one edge per key, undated included.
sa.Index(
    "uq_relationships_natural_key",
    relationships.c.tenant,
    relationships.c.source_id,
    relationships.c.target_id,
    relationships.c.kind,
    sa.func.coalesce(relationships.c.since, sa.literal_column(f"'{UNDATED}'")),
    unique=True,
)

interactions = sa.Table(
    "interactions",
    metadata,
    *_common(),
    sa.Column("customer_id", sa.Uuid(), nullable=False),
    sa.Column("channel", Text, nullable=False),
    sa.Column("direction", Text, nullable=False),
    sa.Column("occurred_at", UtcDateTime(), nullable=False),
    sa.Column("subject", Text, nullable=True),
    sa.Column("summary", Text, nullable=True),
    sa.Column("outcome", Text, nullable=True),
    _json("participants"),
    _json("attributes"),
    sa.Column("external_id", Text, nullable=True),
    *_stamps(),
    sa.PrimaryKeyConstraint("tenant", "id"),
    sa.UniqueConstraint("tenant", "external_id"),
    sa.Index(None, "tenant", "customer_id", "occurred_at", "id"),
    sa.Index(None, "tenant", "occurred_at", "id"),
)

transactions = sa.Table(
    "transactions",
    metadata,
    *_common(),
    sa.Column("customer_id", sa.Uuid(), nullable=False),
    sa.Column("occurred_at", UtcDateTime(), nullable=False),
    sa.Column("amount", Money(), nullable=False),
    sa.Column("currency", Text, nullable=False),
    sa.Column("kind", Text, nullable=False),
    _json("line_items"),
    _json("attributes"),
    sa.Column("external_id", Text, nullable=True),
    *_stamps(),
    # the order paid (crmkit.sales), when the money was for one: added by revision 0005
    sa.Column("order_id", sa.Uuid(), nullable=True),
    sa.PrimaryKeyConstraint("tenant", "id"),
    sa.UniqueConstraint("tenant", "external_id"),
    sa.Index(None, "tenant", "customer_id", "occurred_at", "id"),
    sa.Index(None, "tenant", "occurred_at", "id"),
    sa.Index(None, "tenant", "order_id"),
)

#: Table per entity name (``crmkit.entities.ENTITIES`` keys).
TABLES: dict[str, sa.Table] = {t.name: t for t in (customers, relationships, interactions, transactions)}
