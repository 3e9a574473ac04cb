"""Stack files: parse errors with their lines, the plan's diff matrix, dependency order."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from cli.stack.kinds import ORDER, Ref, key_tag, owner_tag
from cli.stack.live import Live
from cli.stack.parse import Stack, StackErrors, parse
from cli.stack.plan import Pending, diff

BASE = """\
stack: s
vpcs:
  main: {cidr: 10.0.0.0/16}
subnets:
  a: {vpc: main, cidr: 10.0.1.0/24}
"""


def errors(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(StackErrors) as info:
        parse(textwrap.dedent(text))
    return [(e.line, e.message) for e in info.value.errors]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "stack: s\nvpcs: [\n",
            [(3, "not valid YAML: expected the node content, but found '<stream end>'")],
        ),
        ("- a\n", [(1, "a stack file is a mapping with `stack:` first")]),
        (
            "vpcs: {}\n",
            [(1, "stack: give the stack a name matching [A-Za-z0-9][A-Za-z0-9_.-]{0,62}")],
        ),
        ("stack: s\nvpc: {}\n", [(2, "unknown section 'vpc' (did you mean vpcs?)")]),
        (
            "stack: s\nvpcs:\n  main: {cidr: 10.0.0.0/16}\n  main: {cidr: 10.1.0.0/16}\n",
            [(4, "'main' is given twice (first on line 3)")],
        ),
        (
            "stack: s\nvpcs:\n  main:\n    cidr: 10.0.0.1/16\n",
            [
                (
                    4,
                    "vpcs/main: cidr '10.0.0.1/16' is not an IPv4 CIDR in canonical form, "
                    "such as 10.0.0.0/16",
                )
            ],
        ),
        ("stack: s\nvpcs:\n  main: {}\n", [(3, "vpcs/main: cidr is required")]),
        (
            "stack: s\nvpcs:\n  main: {cidr: 10.0.0.0/16, cdir: x}\n",
            [(3, "unknown field of vpcs/main: 'cdir' (did you mean cidr?)")],
        ),
        (
            BASE + "  b: {vpc: main, cidr: 10.0.1.128/25}\n",
            [(6, "subnets/b: cidr 10.0.1.128/25 overlaps subnets/a (10.0.1.0/24)")],
        ),
        (
            BASE.replace("10.0.1.0/24", "10.9.1.0/24"),
            [(5, "subnets/a: cidr 10.9.1.0/24 is not inside vpcs/main's 10.0.0.0/16")],
        ),
        (
            BASE + "ports:\n  p:\n    subnet: a\n    ip_address: 10.0.2.5\n",
            [(9, "ports/p: ip_address 10.0.2.5 is not in subnets/a")],
        ),
        (
            BASE + "ports:\n  p: {subnet: b}\n",
            [(7, "ports/p: subnet 'b' names no subnet of this file (this file has: a)")],
        ),
        (
            BASE + "security_groups:\n  g:\n    vpc: main\n    rules:\n"
            "      - {direction: in, protocol: tcp}\n"
            "      - {direction: ingress, protocol: icmp, port_min: 1}\n"
            "      - {direction: ingress, protocol: tcp, remote_group: h}\n",
            [
                (10, "security_groups/g rules[1]: direction 'in' is not one of ingress, egress"),
                (
                    12,
                    "security_groups/g: remote_group 'h' names no security group of this file "
                    "(this file has: g)",
                ),
            ],
        ),
        (
            BASE + "security_groups:\n  g:\n    vpc: main\n    rules:\n"
            "      - {direction: ingress, protocol: icmp, port_min: 1}\n",
            [(10, "security_groups/g: rule on line 10: ports apply only to tcp and udp")],
        ),
        (
            BASE + "routers:\n  r: {vpc: main, enable_snat: yes-please, interfaces: [a, z]}\n",
            [
                (7, "routers/r: enable_snat must be true or false"),
                (7, "routers/r: subnet 'z' names no subnet of this file (this file has: a)"),
            ],
        ),
    ],
)
def test_mistakes_name_their_line(text: str, expected: list[tuple[int, str]]) -> None:
    assert errors(text) == expected


def test_a_good_file_parses_with_names_and_ownership_tags() -> None:
    stack = parse(BASE + "  b: {vpc: main, cidr: 10.0.2.0/24, name: other, tags: [x]}\n")
    b = stack.wants[("subnets", "b")]
    assert b.fields["name"] == "other" and b.line == 6
    assert b.fields["tags"] == sorted(["x", owner_tag("s"), key_tag("b")])
    assert b.fields["dns_nameservers"] == [] and "gateway_ip" not in b.fields  # API picks it


# --------------------------------------------------------------------------- the plan


def live_of(**kinds: list[dict[str, Any]]) -> Live:
    return Live(items=kinds, externals={"public": "ext-1"})


def resource(key: str, ident: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "revision": 3,
        "name": key,
        "description": "",
        "tags": sorted([owner_tag("s"), key_tag(key)]),
        **fields,
    }


VPC = resource("main", "v1", cidr="10.0.0.0/16")
SUBNET = resource("a", "s1", vpc_id="v1", cidr="10.0.1.0/24", dns_nameservers=[], host_routes=[])


def test_diff_matrix_create_update_delete_no_change() -> None:
    stack = parse(BASE.replace("cidr: 10.0.0.0/16}", "cidr: 10.0.0.0/16, description: d}"))
    # nothing live: everything is created, the subnet's VPC known only after apply
    plan = diff(stack, live_of())
    assert [(s.action, s.address) for s in plan.steps] == [
        ("create", "vpcs/main"),
        ("create", "subnets/a"),
    ]
    vpc_id = next(c for c in plan.steps[1].changes if c.field == "vpc_id")
    assert vpc_id.new == Pending(Ref("vpcs", "main")) and vpc_id.value == Ref("vpcs", "main")
    # all live and equal but the description (drift): one update, one unchanged
    plan = diff(stack, live_of(vpcs=[VPC], subnets=[SUBNET]))
    assert [(s.action, s.address, s.id, s.revision) for s in plan.steps] == [
        ("update", "vpcs/main", "v1", 3)
    ]
    assert [(c.field, c.old, c.new) for c in plan.steps[0].changes] == [("description", "", "d")]
    assert plan.unchanged == ["subnets/a"]
    # something tagged that the file no longer has, plus a second copy of a key: deleted
    extra = resource("gone", "s9", vpc_id="v1", cidr="10.0.9.0/24")
    copy = {**SUBNET, "id": "s2", "created_at": "9999"}
    plan = diff(parse(BASE), live_of(vpcs=[VPC], subnets=[SUBNET, extra, copy]))
    assert [(s.action, s.key, s.id) for s in plan.steps] == [
        ("delete", "a", "s2"),
        ("delete", "gone", "s9"),
    ]
    assert not diff(parse(BASE), live_of(vpcs=[VPC], subnets=[SUBNET])).changed


def test_an_immutable_field_that_differs_is_an_error_with_its_line() -> None:
    with pytest.raises(StackErrors) as info:
        diff(parse(BASE), live_of(vpcs=[VPC], subnets=[{**SUBNET, "cidr": "10.0.7.0/24"}]))
    [error] = info.value.errors
    assert error.line == 5
    assert error.message.startswith(
        "subnets/a: cidr cannot change in place (live 10.0.7.0/24, file 10.0.1.0/24)"
    )


def test_children_diff_as_sets_and_references_resolve_to_ids() -> None:
    text = BASE + (
        "security_groups:\n  g:\n    vpc: main\n    rules:\n"
        "      - {direction: ingress, protocol: tcp, port_min: 22, port_max: 22}\n"
        "      - {direction: ingress, protocol: any, remote_group: g}\n"
        "routers:\n  r: {vpc: main, external_network: public, interfaces: [a]}\n"
    )
    group = resource("g", "g1", vpc_id="v1")
    kept = {
        "id": "r1",
        "direction": "ingress",
        "protocol": "any",
        "remote_group_id": "g1",
        "port_min": None,
        "port_max": None,
        "remote_cidr": None,
        "description": "",
    }
    stale = {**kept, "id": "r2", "protocol": "udp"}
    router = resource(
        "r",
        "rt1",
        vpc_id="v1",
        external_network_id="ext-1",
        enable_snat=True,
        routes=[],
        subnet_ids=["s1", "s-other"],
    )
    live = live_of(vpcs=[VPC], subnets=[SUBNET], security_groups=[group], routers=[router])
    live.children = {
        "g1": [kept, stale],
        "rt1": [{"id": "s1", "subnet_id": "s1"}, {"id": "s-other", "subnet_id": "s-other"}],
    }
    plan = diff(parse(text), live)
    by = {s.address: s for s in plan.steps}
    assert set(by) == {"security_groups/g", "routers/r"}
    g = by["security_groups/g"]
    assert [i.values["port_min"] for i in g.add] == [22] and [c["id"] for c in g.remove] == ["r2"]
    assert not g.changes
    r = by["routers/r"]
    assert not r.add and [c["id"] for c in r.remove] == ["s-other"]


def test_steps_run_in_dependency_order_and_deletes_in_reverse() -> None:
    assert ORDER == [
        "vpcs",
        "security_groups",
        "subnets",
        "routers",
        "ports",
        "floating_ips",
    ]
    text = BASE + (
        "security_groups:\n  g: {vpc: main}\n"
        "routers:\n  r: {vpc: main, interfaces: [a]}\n"
        "ports:\n  p: {subnet: a, security_groups: [g]}\n"
        "floating_ips:\n  f: {external_network: public, port: p}\n"
    )
    plan = diff(parse(text), live_of())
    assert [s.kind for s in plan.steps] == ORDER
    everything = {kind: [resource(f"k{i}", f"{kind}-{i}") for i in range(2)] for kind in ORDER}
    gone = diff(Stack("s", {}), live_of(**everything))
    assert [s.kind for s in gone.steps] == [k for k in reversed(ORDER) for _ in range(2)]
    assert {s.action for s in gone.steps} == {"delete"}
