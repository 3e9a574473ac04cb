"""quota_usage: each tenant's row count per quota'd kind, kept by triggers

Revision ID: 0020
Revises: 0008
Create Date: 2026-11-29

Counting a tenant's rows at every create, under a lock held until the commit, made a
tenant's creates run one at a time (issue 14). The counters here are kept by triggers on
every insert and delete (cascades included), so nothing in the application has to keep
them in step. On Postgres the triggers are deferred constraint triggers: they run inside
COMMIT, which is the only moment the counter row is locked, and they enforce the limit a
create claimed (api.services.quotas sets it for the transaction). On SQLite, whose writers
run one at a time, they are plain triggers and the application compares.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each quota'd kind is counted in the table of its name (models.tenant.DEFAULT_QUOTAS).
KINDS = (
    "vpcs",
    "subnets",
    "ports",
    "routers",
    "security_groups",
    "security_group_rules",
    "floating_ips",
    "network_acls",
    "network_acl_entries",
    "load_balancers",
    "listeners",
    "pools",
    "members",
    "health_monitors",
)

# SQLSTATE of a claim past its limit; api.services.quotas turns it into the 409.
PG_FUNCTION = """
CREATE FUNCTION vpcd_quota_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text := TG_ARGV[0];
    claim text;
    now_used integer;
    added integer;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.tenant_id IS NOT NULL THEN
            UPDATE quota_usage SET used = used - 1
            WHERE tenant_id = OLD.tenant_id AND resource = kind;
        END IF;
        RETURN NULL;
    END IF;
    IF NEW.tenant_id IS NULL THEN
        RETURN NULL;
    END IF;
    -- (a row whose tenant this transaction deleted too has nothing left to count)
    INSERT INTO quota_usage AS q (tenant_id, resource, used)
    SELECT NEW.tenant_id, kind, 1 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = NEW.tenant_id)
    ON CONFLICT (tenant_id, resource) DO UPDATE SET used = q.used + 1
    RETURNING q.used INTO now_used;
    IF now_used IS NULL THEN
        RETURN NULL;
    END IF;
    claim := current_setting('vpcd.quota_' || kind, true);
    IF claim IS NULL OR claim = '' OR split_part(claim, ' ', 1) <> NEW.tenant_id THEN
        RETURN NULL;  -- not claimed: counted, never refused
    END IF;
    -- how many this transaction added so far, to tell the caller what was in use before
    added := coalesce(
        nullif(current_setting('vpcd.quota_added_' || kind, true), ''), '0')::integer + 1;
    PERFORM set_config('vpcd.quota_added_' || kind, added::text, true);
    IF now_used > split_part(claim, ' ', 2)::integer THEN
        RAISE EXCEPTION 'quota for % exceeded', kind USING
            ERRCODE = 'VQ001',
            DETAIL = kind || ' ' || split_part(claim, ' ', 2) || ' '
                || greatest(now_used - added, 0);
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "quota_usage",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_quota_usage_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "resource", name=op.f("pk_quota_usage")),
    )
    for kind in KINDS:
        op.execute(
            f"INSERT INTO quota_usage (tenant_id, resource, used) "
            f"SELECT tenant_id, '{kind}', count(*) FROM {kind} "
            f"WHERE tenant_id IS NOT NULL GROUP BY tenant_id"
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for kind in KINDS:
            op.execute(
                f"CREATE CONSTRAINT TRIGGER quota_{kind} AFTER INSERT OR DELETE ON {kind} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                f"EXECUTE FUNCTION vpcd_quota_count('{kind}')"
            )
        return
    for kind in KINDS:
        op.execute(
            f"CREATE TRIGGER quota_{kind}_insert AFTER INSERT ON {kind} "
            "FOR EACH ROW WHEN NEW.tenant_id IS NOT NULL BEGIN "
            "INSERT INTO quota_usage (tenant_id, resource, used) "
            f"VALUES (NEW.tenant_id, '{kind}', 1) "
            "ON CONFLICT (tenant_id, resource) DO UPDATE SET used = used + 1; END"
        )
        op.execute(
            f"CREATE TRIGGER quota_{kind}_delete AFTER DELETE ON {kind} "
            "FOR EACH ROW WHEN OLD.tenant_id IS NOT NULL BEGIN "
            "UPDATE quota_usage SET used = used - 1 "
            f"WHERE tenant_id = OLD.tenant_id AND resource = '{kind}'; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for kind in KINDS:
            op.execute(f"DROP TRIGGER quota_{kind} ON {kind}")
        op.execute("DROP FUNCTION vpcd_quota_count()")
    else:
        for kind in KINDS:
            op.execute(f"DROP TRIGGER quota_{kind}_insert")
            op.execute(f"DROP TRIGGER quota_{kind}_delete")
    op.drop_table("quota_usage")
