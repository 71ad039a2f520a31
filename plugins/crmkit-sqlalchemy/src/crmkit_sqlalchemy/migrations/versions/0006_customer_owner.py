"""Customers are found by owner through an index: ``ix_customers_tenant_owner``.

Record-level access (``crmkit.access.OwnerPolicy``) ANDs ``owner IN (...)`` into every read
of customers and, through them, of everything that hangs off them; without an index each
such read scanned the tenant's customers. The index is on (tenant, owner); nothing stored
changes. The downgrade drops it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_customers_tenant_owner", "customers", ["tenant", "owner"])


def downgrade() -> None:
    op.drop_index("ix_customers_tenant_owner", table_name="customers")
