"""Relationships get an external id and a natural key, so that importing them twice stores them once.

``external_id`` (nullable, unique per tenant, as on the other aggregates) and a unique index
over (tenant, source_id, target_id, kind, COALESCE(since, '0001-01-01')): an undated edge
is keyed under 0001-01-01, a date no Relationship takes, so two undated edges clash too.
A database holding duplicate edges must have them removed before this runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from crmkit_sqlalchemy._types import Text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("relationships") as batch:  # SQLite alters a table by copying it
        batch.add_column(sa.Column("external_id", Text, nullable=True))
        batch.create_unique_constraint("uq_relationships_tenant_external_id", ["tenant", "external_id"])
    op.create_index(
        "uq_relationships_natural_key",
        "relationships",
        ["tenant", "source_id", "target_id", "kind", sa.text("coalesce(since, '0001-01-01')")],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_relationships_natural_key", table_name="relationships")
    with op.batch_alter_table("relationships") as batch:
        batch.drop_constraint("uq_relationships_tenant_external_id", type_="unique")
        batch.drop_column("external_id")
