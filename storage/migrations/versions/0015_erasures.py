"""erasures: a person's erasure as a durable task, then its proof

Revision ID: 0015
Revises: 0014

`erasures` (storage/erasures.py, storage/erasing.py) holds each erasure: the
keyed hash of the address, who asked and when, the step it is at and how far
(`phase`, `cursor`: a crash resumes there), a lease for the process working it,
and once done the counts and the references affected. The address and names
looked for (`terms`) are set only while it runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("terms", JSON, nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("phase", sa.String(length=24), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("inbox_upto", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("references", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )
    op.create_index(op.f("ix_erasures_address_hash"), "erasures", ["address_hash"],
                    unique=False)
    op.create_index(op.f("ix_erasures_state_lease_until"), "erasures",
                    ["state", "lease_until"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_erasures_state_lease_until"), table_name="erasures")
    op.drop_index(op.f("ix_erasures_address_hash"), table_name="erasures")
    op.drop_table("erasures")
