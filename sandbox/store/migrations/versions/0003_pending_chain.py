"""Charges at admission, events pending their link into the chain, replicas with heartbeats.

A query's charge is now made when it is admitted (never refunded), so the ``*_reserved`` counters
fold into ``*_spent``; queries still running are the ones recorded as ``reserved``. Policies get a
``revision`` (optimistic admission), queries the ``holder`` replica, and two tables appear:
``audit_pending`` (events committed with their change, awaiting the sealer) and ``replicas``.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_AMOUNTS = "epsilon_spent >= 0 AND epsilon_reserved >= 0 AND delta_spent >= 0 AND delta_reserved >= 0"
_AMOUNTS = "epsilon_spent >= 0 AND delta_spent >= 0"
_COUNTED = ("ledgers", "ledger_accounts", "policies")


def upgrade() -> None:
    """Apply."""
    for table in _COUNTED:
        op.execute(
            f"UPDATE {table} SET epsilon_spent = epsilon_spent + epsilon_reserved, "
            "delta_spent = delta_spent + delta_reserved"
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"ck_{table}_amounts_nonnegative"), type_="check")
            if table == "policies":
                batch_op.drop_constraint(batch_op.f("ck_policies_epsilon_within_grant"), type_="check")
                batch_op.drop_constraint(batch_op.f("ck_policies_delta_within_grant"), type_="check")
            batch_op.drop_column("epsilon_reserved")
            batch_op.drop_column("delta_reserved")
            batch_op.create_check_constraint(batch_op.f(f"ck_{table}_amounts_nonnegative"), _AMOUNTS)
            if table == "policies":
                batch_op.create_check_constraint(
                    batch_op.f("ck_policies_epsilon_within_grant"), "epsilon_spent <= epsilon_granted"
                )
                batch_op.create_check_constraint(
                    batch_op.f("ck_policies_delta_within_grant"), "delta_spent <= delta_granted"
                )
                batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_queries_running",
            ["policy_id"],
            unique=False,
            sqlite_where=sa.text("status = 'reserved'"),
            postgresql_where=sa.text("status = 'reserved'"),
        )
    op.create_table(
        "audit_pending",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("time", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=80), nullable=True),
        sa.Column("organisation", sa.String(length=128), nullable=True),
        sa.Column("dataset", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_pending")),
    )
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )


def downgrade() -> None:
    """Revert (queries still running count as reserved again)."""
    op.drop_table("replicas")
    op.drop_table("audit_pending")
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.drop_index("ix_queries_running")
        batch_op.drop_column("holder")
    for table in _COUNTED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"ck_{table}_amounts_nonnegative"), type_="check")
            if table == "policies":
                batch_op.drop_constraint(batch_op.f("ck_policies_epsilon_within_grant"), type_="check")
                batch_op.drop_constraint(batch_op.f("ck_policies_delta_within_grant"), type_="check")
                batch_op.drop_column("revision")
            batch_op.add_column(
                sa.Column("epsilon_reserved", sa.BigInteger(), server_default="0", nullable=False)
            )
            batch_op.add_column(
                sa.Column("delta_reserved", sa.BigInteger(), server_default="0", nullable=False)
            )
            batch_op.create_check_constraint(batch_op.f(f"ck_{table}_amounts_nonnegative"), _OLD_AMOUNTS)
            if table == "policies":
                batch_op.create_check_constraint(
                    batch_op.f("ck_policies_epsilon_within_grant"),
                    "epsilon_spent + epsilon_reserved <= epsilon_granted",
                )
                batch_op.create_check_constraint(
                    batch_op.f("ck_policies_delta_within_grant"),
                    "delta_spent + delta_reserved <= delta_granted",
                )
