"""Lifetime ledgers, per-organisation accounts, disabled users and the CLI's verified ``via``.

Each dataset's counters and cap move to a ledger of the same id (its name); each organisation's
lifetime account is the sum of its policies' counters on the dataset, past and present.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AMOUNTS = "epsilon_spent >= 0 AND epsilon_reserved >= 0 AND delta_spent >= 0 AND delta_reserved >= 0"
_COUNTERS = ("epsilon_spent", "epsilon_reserved", "delta_spent", "delta_reserved")


def _counters() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTERS]


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "ledgers",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("epsilon_cap", sa.BigInteger(), nullable=True),
        sa.Column("delta_cap", sa.BigInteger(), nullable=True),
        sa.Column("organisation_epsilon_cap", sa.BigInteger(), nullable=True),
        sa.Column("organisation_delta_cap", sa.BigInteger(), nullable=True),
        *_counters(),
        sa.CheckConstraint(_AMOUNTS, name=op.f("ck_ledgers_amounts_nonnegative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledgers")),
    )
    op.create_table(
        "ledger_accounts",
        sa.Column("ledger_id", sa.String(length=80), nullable=False),
        sa.Column("organisation", sa.String(length=128), nullable=False),
        sa.Column("epsilon_cap", sa.BigInteger(), nullable=True),
        sa.Column("delta_cap", sa.BigInteger(), nullable=True),
        *_counters(),
        sa.CheckConstraint(_AMOUNTS, name=op.f("ck_ledger_accounts_amounts_nonnegative")),
        sa.ForeignKeyConstraint(
            ["ledger_id"], ["ledgers.id"], name=op.f("fk_ledger_accounts_ledger_id_ledgers")
        ),
        sa.PrimaryKeyConstraint("ledger_id", "organisation", name=op.f("pk_ledger_accounts")),
    )
    op.create_table(
        "ledger_contents",
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("ledger_id", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(
            ["ledger_id"], ["ledgers.id"], name=op.f("fk_ledger_contents_ledger_id_ledgers")
        ),
        sa.PrimaryKeyConstraint("content_sha256", name=op.f("pk_ledger_contents")),
    )
    op.execute(
        "INSERT INTO ledgers (id, epsilon_cap, delta_cap, epsilon_spent, epsilon_reserved, delta_spent, "
        "delta_reserved) SELECT name, epsilon_cap, delta_cap, epsilon_spent, epsilon_reserved, delta_spent, "
        "delta_reserved FROM datasets"
    )
    op.execute(
        "INSERT INTO ledger_accounts (ledger_id, organisation, epsilon_spent, epsilon_reserved, delta_spent, "
        "delta_reserved) SELECT dataset, organisation, SUM(epsilon_spent), SUM(epsilon_reserved), "
        "SUM(delta_spent), SUM(delta_reserved) FROM policies GROUP BY dataset, organisation"
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ledger_id", sa.String(length=80), nullable=True))
        batch_op.add_column(
            sa.Column("new_version_budget", sa.String(length=8), server_default="carry", nullable=False)
        )
    op.execute("UPDATE datasets SET ledger_id = name")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.alter_column("ledger_id", existing_type=sa.String(length=80), nullable=False)
        batch_op.create_index(batch_op.f("ix_datasets_ledger_id"), ["ledger_id"], unique=False)
        batch_op.drop_constraint(batch_op.f("ck_datasets_amounts_nonnegative"), type_="check")
        for name in ("epsilon_cap", "delta_cap", *_COUNTERS):
            batch_op.drop_column(name)
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ledger_id", sa.String(length=80), nullable=True))
    op.execute("UPDATE queries SET ledger_id = dataset WHERE policy_id IS NOT NULL")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("via", sa.String(length=80), nullable=True))


def downgrade() -> None:
    """Revert (dataset-wide counters come back from the ledgers; accounts are dropped)."""
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("via")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.drop_column("ledger_id")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epsilon_cap", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("delta_cap", sa.BigInteger(), nullable=True))
        for name in _COUNTERS:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), server_default="0", nullable=False))
    op.execute(
        "UPDATE datasets SET "
        + ", ".join(
            f"{name} = (SELECT {name} FROM ledgers WHERE ledgers.id = datasets.ledger_id)"
            for name in ("epsilon_cap", "delta_cap", *_COUNTERS)
        )
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_check_constraint(batch_op.f("ck_datasets_amounts_nonnegative"), _AMOUNTS)
        batch_op.drop_index(batch_op.f("ix_datasets_ledger_id"))
        batch_op.drop_column("new_version_budget")
        batch_op.drop_column("ledger_id")
    op.drop_table("ledger_contents")
    op.drop_table("ledger_accounts")
    op.drop_table("ledgers")
