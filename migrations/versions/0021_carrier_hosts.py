"""carrier_hosts: per subnet and per security group, how many workload ports each host has

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-29

Which hosts carry a subnet or a security group was read from every port of it (a DISTINCT
over up to 10,000 rows) on every port create, so creates slowed as a subnet filled
(issue 14). Triggers on ports and port_security_groups keep one row per (kind, resource,
host) with the number of workload ports (host and netns set) there, removed at 0, so the
carrier lookup reads O(hosts) rows. Triggers keep it whoever writes (ORM, bulk SQL,
cascades). They run at once, not deferred: a membership row must see its port's host as
it is at that moment, and each trigger that reads a port locks it (FOR NO KEY UPDATE),
so a concurrent move of the port and a change of its groups take turns.

A port's delete is counted BEFORE the row goes (its group rows are still there, whether the
ORM deletes them first or the foreign key cascades them); a group row deleted after its
port is gone has been counted already.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_FUNCTIONS = """
CREATE FUNCTION vpcd_carrier_add(k text, rid text, h text, n integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF n > 0 THEN
        INSERT INTO carrier_hosts AS c (kind, resource_id, host, ports) VALUES (k, rid, h, n)
        ON CONFLICT (kind, resource_id, host) DO UPDATE SET ports = c.ports + n;
        RETURN;
    END IF;
    -- the last one goes with its row; a concurrent +1 makes the DELETE match nothing
    DELETE FROM carrier_hosts
    WHERE kind = k AND resource_id = rid AND host = h AND ports <= -n;
    IF NOT FOUND THEN
        UPDATE carrier_hosts SET ports = ports + n
        WHERE kind = k AND resource_id = rid AND host = h;
    END IF;
END
$$;

-- A port row's change, from `o` to `n` (either NULL for an insert or a delete): its
-- subnet's count and those of the groups it is in, net deltas applied in key order, so
-- two moves in opposite directions lock the same rows in the same order (no deadlock).
CREATE FUNCTION vpcd_carrier_move(o ports, n ports) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d record;
BEGIN
    FOR d IN
        SELECT x.k, x.rid, x.h, sum(x.delta)::integer AS delta FROM (
            SELECT p.sign, p.r FROM (VALUES (-1, o), (1, n)) AS p (sign, r)
            WHERE (p.r).host IS NOT NULL AND (p.r).netns IS NOT NULL
        ) AS side
        CROSS JOIN LATERAL (
            SELECT 'subnet' AS k, (side.r).subnet_id AS rid, (side.r).host AS h,
                   side.sign AS delta
            UNION ALL
            SELECT 'security_group', g.security_group_id, (side.r).host, side.sign
            FROM port_security_groups g WHERE g.port_id = (side.r).id
        ) AS x
        GROUP BY x.k, x.rid, x.h HAVING sum(x.delta) <> 0 ORDER BY x.k, x.rid, x.h
    LOOP
        PERFORM vpcd_carrier_add(d.k, d.rid, d.h, d.delta);
    END LOOP;
END
$$;

-- (an inserted port has no group rows yet: they count themselves when they come)
CREATE FUNCTION vpcd_carrier_ports() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM vpcd_carrier_move(NULL, NEW);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM vpcd_carrier_move(OLD, NULL);
        RETURN OLD;
    ELSE
        PERFORM vpcd_carrier_move(OLD, NEW);
    END IF;
    RETURN NULL;
END
$$;

-- the port is locked whatever its host (a predicate on it would skip a row being moved)
CREATE FUNCTION vpcd_carrier_groups() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p ports;
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        SELECT * INTO p FROM ports WHERE id = OLD.port_id FOR NO KEY UPDATE;
        IF FOUND AND p.host IS NOT NULL AND p.netns IS NOT NULL THEN
            PERFORM vpcd_carrier_add('security_group', OLD.security_group_id, p.host, -1);
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT * INTO p FROM ports WHERE id = NEW.port_id FOR NO KEY UPDATE;
        IF FOUND AND p.host IS NOT NULL AND p.netns IS NOT NULL THEN
            PERFORM vpcd_carrier_add('security_group', NEW.security_group_id, p.host, 1);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER carrier_ports_insert AFTER INSERT ON ports FOR EACH ROW
WHEN (NEW.host IS NOT NULL AND NEW.netns IS NOT NULL)
EXECUTE FUNCTION vpcd_carrier_ports();
CREATE TRIGGER carrier_ports_update AFTER UPDATE OF host, netns, subnet_id ON ports
FOR EACH ROW WHEN ((OLD.host, OLD.netns IS NULL, OLD.subnet_id)
                   IS DISTINCT FROM (NEW.host, NEW.netns IS NULL, NEW.subnet_id))
EXECUTE FUNCTION vpcd_carrier_ports();
CREATE TRIGGER carrier_ports_delete BEFORE DELETE ON ports FOR EACH ROW
WHEN (OLD.host IS NOT NULL AND OLD.netns IS NOT NULL)
EXECUTE FUNCTION vpcd_carrier_ports();
CREATE TRIGGER carrier_port_groups AFTER INSERT OR DELETE
OR UPDATE OF port_id, security_group_id ON port_security_groups
FOR EACH ROW EXECUTE FUNCTION vpcd_carrier_groups();
"""

PG_DROP = """
DROP TRIGGER carrier_port_groups ON port_security_groups;
DROP TRIGGER carrier_ports_delete ON ports;
DROP TRIGGER carrier_ports_update ON ports;
DROP TRIGGER carrier_ports_insert ON ports;
DROP FUNCTION vpcd_carrier_groups();
DROP FUNCTION vpcd_carrier_ports();
DROP FUNCTION vpcd_carrier_move(ports, ports);
DROP FUNCTION vpcd_carrier_add(text, text, text, integer);
"""


def _sqlite_add(kind: str, rid: str, host: str, where: str, source: str = "") -> str:
    """+1 for (kind, rid, host) when `where` holds (SQLite trigger body statement)."""
    return (
        f"INSERT INTO carrier_hosts (kind, resource_id, host, ports) "
        f"SELECT '{kind}', {rid}, {host}, 1 {source} WHERE {where} "
        "ON CONFLICT (kind, resource_id, host) DO UPDATE SET ports = ports + 1;"
    )


def _sqlite_sub(kind: str, rid: str, host: str, where: str) -> str:
    """-1 for (kind, rid, host) when `where` holds, the row removed at 0."""
    key = f"kind = '{kind}' AND resource_id = {rid} AND host = {host} AND ({where})"
    return (
        f"DELETE FROM carrier_hosts WHERE {key} AND ports <= 1; "
        f"UPDATE carrier_hosts SET ports = ports - 1 WHERE {key};"
    )


WORKLOAD = "{p}.host IS NOT NULL AND {p}.netns IS NOT NULL"


def _sqlite_port(p: str, sign: int) -> str:
    """A port's own counts (its subnet and its groups) for the row `p` (OLD or NEW)."""
    on = WORKLOAD.format(p=p)
    if sign > 0:
        return _sqlite_add("subnet", f"{p}.subnet_id", f"{p}.host", on) + (
            "INSERT INTO carrier_hosts (kind, resource_id, host, ports) "
            f"SELECT 'security_group', g.security_group_id, {p}.host, 1 "
            f"FROM port_security_groups g WHERE g.port_id = {p}.id AND {on} "
            "ON CONFLICT (kind, resource_id, host) DO UPDATE SET ports = ports + 1;"
        )
    groups = (
        f"kind = 'security_group' AND host = {p}.host AND {on} AND resource_id IN "
        f"(SELECT security_group_id FROM port_security_groups WHERE port_id = {p}.id)"
    )
    return _sqlite_sub("subnet", f"{p}.subnet_id", f"{p}.host", on) + (
        f"DELETE FROM carrier_hosts WHERE {groups} AND ports <= 1; "
        f"UPDATE carrier_hosts SET ports = ports - 1 WHERE {groups};"
    )


def _sqlite_group(g: str, sign: int) -> str:
    """A membership row's count, from its port as it is now (none if the port is gone)."""
    port = f"(SELECT host FROM ports WHERE id = {g}.port_id AND netns IS NOT NULL)"
    if sign > 0:
        return _sqlite_add("security_group", f"{g}.security_group_id", port, f"{port} IS NOT NULL")
    return _sqlite_sub("security_group", f"{g}.security_group_id", port, f"{port} IS NOT NULL")


SQLITE_TRIGGERS = {
    "carrier_ports_insert": "AFTER INSERT ON ports BEGIN "
    + _sqlite_add("subnet", "NEW.subnet_id", "NEW.host", WORKLOAD.format(p="NEW"))
    + " END",
    "carrier_ports_update": "AFTER UPDATE OF host, netns, subnet_id ON ports WHEN "
    "OLD.host IS NOT NEW.host OR (OLD.netns IS NULL) IS NOT (NEW.netns IS NULL) "
    "OR OLD.subnet_id IS NOT NEW.subnet_id BEGIN "
    + _sqlite_port("OLD", -1)
    + _sqlite_port("NEW", 1)
    + " END",
    "carrier_ports_delete": "BEFORE DELETE ON ports BEGIN " + _sqlite_port("OLD", -1) + " END",
    "carrier_port_groups_insert": "AFTER INSERT ON port_security_groups BEGIN "
    + _sqlite_group("NEW", 1)
    + " END",
    "carrier_port_groups_delete": "AFTER DELETE ON port_security_groups BEGIN "
    + _sqlite_group("OLD", -1)
    + " END",
    "carrier_port_groups_update": "AFTER UPDATE OF port_id, security_group_id "
    "ON port_security_groups WHEN OLD.port_id IS NOT NEW.port_id "
    "OR OLD.security_group_id IS NOT NEW.security_group_id BEGIN "
    + _sqlite_group("OLD", -1)
    + _sqlite_group("NEW", 1)
    + " END",
}

BACKFILL = """
INSERT INTO carrier_hosts (kind, resource_id, host, ports)
SELECT 'subnet', subnet_id, host, count(*) FROM ports
WHERE host IS NOT NULL AND netns IS NOT NULL GROUP BY subnet_id, host
UNION ALL
SELECT 'security_group', g.security_group_id, p.host, count(*)
FROM port_security_groups g JOIN ports p ON p.id = g.port_id
WHERE p.host IS NOT NULL AND p.netns IS NOT NULL GROUP BY g.security_group_id, p.host
"""


def upgrade() -> None:
    op.create_table(
        "carrier_hosts",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("ports", sa.Integer(), nullable=False),
        sa.CheckConstraint("ports > 0", name=op.f("ck_carrier_hosts_ports_positive")),
        sa.PrimaryKeyConstraint("kind", "resource_id", "host", name=op.f("pk_carrier_hosts")),
    )
    op.execute(BACKFILL)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTIONS)
        return
    for name, body in SQLITE_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_DROP)
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("carrier_hosts")
