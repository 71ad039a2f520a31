"""The first schema: customers, relationships, interactions, transactions, stage changes.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from crmkit_sqlalchemy._types import Json, Money, Text, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _keys() -> list[sa.Column[object]]:
    return [
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
    ]


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "customers",
        *_keys(),
        sa.Column("kind", Text, nullable=False),
        sa.Column("name", Text, nullable=False),
        sa.Column("stage", Text, nullable=False),
        sa.Column("owner", Text, nullable=True),
        sa.Column("external_id", Text, nullable=True),
        sa.Column("tags", Json, nullable=False),
        sa.Column("emails", Json, nullable=False),
        sa.Column("phones", Json, nullable=False),
        sa.Column("addresses", Json, nullable=False),
        sa.Column("handles", Json, nullable=False),
        sa.Column("attributes", Json, nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_customers"),
        sa.UniqueConstraint("tenant", "external_id", name="uq_customers_tenant_external_id"),
    )
    op.create_index("ix_customers_tenant_stage", "customers", ["tenant", "stage"])

    op.create_table(
        "relationships",
        *_keys(),
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("kind", Text, nullable=False),
        sa.Column("role", Text, nullable=True),
        sa.Column("since", sa.Date(), nullable=True),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("attributes", Json, nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_relationships"),
    )
    op.create_index("ix_relationships_tenant_source_id_kind", "relationships", ["tenant", "source_id", "kind"])
    op.create_index("ix_relationships_tenant_target_id_kind", "relationships", ["tenant", "target_id", "kind"])

    op.create_table(
        "interactions",
        *_keys(),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("channel", Text, nullable=False),
        sa.Column("direction", Text, nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("subject", Text, nullable=True),
        sa.Column("summary", Text, nullable=True),
        sa.Column("outcome", Text, nullable=True),
        sa.Column("participants", Json, nullable=False),
        sa.Column("attributes", Json, nullable=False),
        sa.Column("external_id", Text, nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_interactions"),
        sa.UniqueConstraint("tenant", "external_id", name="uq_interactions_tenant_external_id"),
    )
    op.create_index(
        "ix_interactions_tenant_customer_id_occurred_at_id",
        "interactions",
        ["tenant", "customer_id", "occurred_at", "id"],
    )
    op.create_index("ix_interactions_tenant_occurred_at_id", "interactions", ["tenant", "occurred_at", "id"])

    op.create_table(
        "transactions",
        *_keys(),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("currency", Text, nullable=False),
        sa.Column("kind", Text, nullable=False),
        sa.Column("line_items", Json, nullable=False),
        sa.Column("attributes", Json, nullable=False),
        sa.Column("external_id", Text, nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_transactions"),
        sa.UniqueConstraint("tenant", "external_id", name="uq_transactions_tenant_external_id"),
    )
    op.create_index(
        "ix_transactions_tenant_customer_id_occurred_at_id",
        "transactions",
        ["tenant", "customer_id", "occurred_at", "id"],
    )
    op.create_index("ix_transactions_tenant_occurred_at_id", "transactions", ["tenant", "occurred_at", "id"])

    op.create_table(
        "stage_changes",
        *_keys(),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("from_stage", Text, nullable=True),
        sa.Column("to_stage", Text, nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("rule", Text, nullable=False),
        sa.Column("reason", Text, nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_stage_changes"),
    )
    op.create_index(
        "ix_stage_changes_tenant_customer_id_occurred_at_id",
        "stage_changes",
        ["tenant", "customer_id", "occurred_at", "id"],
    )


def downgrade() -> None:
    for table in ("stage_changes", "transactions", "interactions", "relationships", "customers"):
        op.drop_table(table)
