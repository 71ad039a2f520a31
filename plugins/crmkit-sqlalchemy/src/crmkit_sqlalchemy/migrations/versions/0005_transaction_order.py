"""Transactions may name the order they paid: ``transactions.order_id``.

A payment or refund recorded for an order (``crm.sales.record_payment``) keeps the order's
id, so an order's paid amount is a sum in the store and the revenue of orders reaches
purchase summaries and value models as every other purchase does. The column may be
NULL (most money is for no order, and every transaction stored before this revision is
left as it was); the index on (tenant, order_id) serves an order's payments and the
clearing of the link when an order is deleted. The downgrade drops both; the links are lost.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("transactions", sa.Column("order_id", sa.Uuid(), nullable=True))
    op.create_index("ix_transactions_tenant_order_id", "transactions", ["tenant", "order_id"])


def downgrade() -> None:
    op.drop_index("ix_transactions_tenant_order_id", table_name="transactions")
    with op.batch_alter_table("transactions") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("order_id")
