"""DHCP and DNS: subnet enable_dhcp and its scheduled host, port ip_config and dns_name,
VPC dns_domain, and the per-VPC index of DNS names

Revision ID: 0009
Revises: 0010
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("enable_dhcp", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(sa.Column("dhcp_host", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_subnets_dhcp_host", ["dhcp_host"], unique=False)
    with op.batch_alter_table("ports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ip_config", sa.String(length=8), nullable=False, server_default="static")
        )
        batch_op.add_column(sa.Column("dns_name", sa.String(length=63), nullable=True))
    with op.batch_alter_table("vpcs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dns_domain", sa.String(length=255), nullable=False, server_default="")
        )
    # Existing VPCs get the default domain a new one would get: "<id prefix>.vpc.internal"
    # (their names need not be DNS labels; the id always is one).
    vpcs = sa.table("vpcs", sa.column("id", sa.String()), sa.column("dns_domain", sa.String()))
    prefix = sa.func.substr(vpcs.c.id, 1, 8)
    op.execute(
        vpcs.update().values(dns_domain=sa.literal("vpc-") + prefix + sa.literal(".vpc.internal"))
    )
    # The defaults above filled existing rows; new rows get theirs from the application.
    for table, column, kind in (
        ("subnets", "enable_dhcp", sa.Boolean()),
        ("ports", "ip_config", sa.String(length=8)),
        ("vpcs", "dns_domain", sa.String(length=255)),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=kind, server_default=None)
    op.create_table(
        "dns_names",
        sa.Column("port_id", sa.String(length=36), nullable=False),
        sa.Column("vpc_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(["port_id"], ["ports.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["vpc_id"], ["vpcs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("port_id"),
        sa.UniqueConstraint("vpc_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("dns_names")
    with op.batch_alter_table("vpcs", schema=None) as batch_op:
        batch_op.drop_column("dns_domain")
    with op.batch_alter_table("ports", schema=None) as batch_op:
        batch_op.drop_column("dns_name")
        batch_op.drop_column("ip_config")
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.drop_index("ix_subnets_dhcp_host")
        batch_op.drop_column("dhcp_host")
        batch_op.drop_column("enable_dhcp")
