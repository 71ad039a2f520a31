"""Stage changes of any record: the table ``state_changes`` takes over from ``stage_changes``.

``state_changes`` is the table derived from crmkit's declared aggregate ``StateChange``
(``crmkit.state_changes``): the record whose stage changed as (aggregate, id), the stage
set, from, to, when, rule, reason and actor. Every customer stage change is copied into it
with its id, version and timestamps (record ``customers``, stage set ``lifecycle``, no
actor), then ``stage_changes`` is dropped. The downgrade copies the customers' life-cycle
changes back and drops ``state_changes`` (changes of other records have no place there).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from crmkit_sqlalchemy._types import Text, UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COPIED = "id, from_stage, to_stage, occurred_at, rule, reason, created_at, updated_at, version"


def upgrade() -> None:
    op.create_table(
        "state_changes",
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("record_aggregate", Text, nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("stage_set", Text, nullable=False),
        sa.Column("from_stage", Text, nullable=True),
        sa.Column("to_stage", Text, nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("rule", Text, nullable=False),
        sa.Column("reason", Text, nullable=True),
        sa.Column("actor", Text, nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("external_id", Text, nullable=True),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_state_changes"),
        sa.UniqueConstraint("tenant", "external_id", name="uq_state_changes_tenant_external_id"),
    )
    op.create_index(
        "ix_state_changes_tenant_record_aggregate_record_id_occurred_at",
        "state_changes",
        ["tenant", "record_aggregate", "record_id", "occurred_at"],
    )
    op.create_index("ix_state_changes_tenant_occurred_at_id", "state_changes", ["tenant", "occurred_at", "id"])
    op.execute(
        f"INSERT INTO state_changes (tenant, record_aggregate, record_id, stage_set, actor, external_id, {_COPIED}) "
        f"SELECT tenant, 'customers', customer_id, 'lifecycle', NULL, NULL, {_COPIED} FROM stage_changes"
    )
    op.drop_table("stage_changes")


def downgrade() -> None:
    op.create_table(
        "stage_changes",
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("from_stage", Text, nullable=True),
        sa.Column("to_stage", Text, nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("rule", Text, nullable=False),
        sa.Column("reason", Text, nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id", name="pk_stage_changes"),
    )
    op.create_index(
        "ix_stage_changes_tenant_customer_id_occurred_at_id",
        "stage_changes",
        ["tenant", "customer_id", "occurred_at", "id"],
    )
    op.execute(
        f"INSERT INTO stage_changes (tenant, customer_id, {_COPIED}) "
        f"SELECT tenant, record_id, {_COPIED} FROM state_changes "
        "WHERE record_aggregate = 'customers' AND stage_set = 'lifecycle'"
    )
    op.drop_table("state_changes")
