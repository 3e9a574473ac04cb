"""ports.ip_int: the address as an integer, unique per subnet, for IPAM's gap queries

Revision ID: 0014
Revises: 0011
Create Date: 2026-11-29
"""

import socket
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ip_int", sa.BigInteger(), nullable=True))
    ports = sa.table("ports", sa.column("id", sa.String), sa.column("ip_address", sa.String))
    ip_int = sa.column("ip_int", sa.BigInteger)
    conn = op.get_bind()
    rows = conn.execute(sa.select(ports.c.id, ports.c.ip_address)).all()
    for ident, address in rows:
        value = int.from_bytes(socket.inet_aton(address), "big")
        conn.execute(sa.update(ports).where(ports.c.id == ident).values({ip_int: value}))
    with op.batch_alter_table("ports", schema=None) as batch_op:
        batch_op.alter_column("ip_int", existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_ports_subnet_id_ip_int"), ["subnet_id", "ip_int"]
        )


def downgrade() -> None:
    with op.batch_alter_table("ports", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_ports_subnet_id_ip_int"), type_="unique")
        batch_op.drop_column("ip_int")
