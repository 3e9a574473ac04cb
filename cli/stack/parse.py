"""The stack file, read and checked before any API call: every mistake names its line.

Checked here: the layout (known sections and fields, no repeats), each value (CIDRs,
addresses, enums, lengths), every reference by name, and what can be checked across
resources without the API (a subnet inside its VPC, no overlapping subnets, an address
inside its subnet, a router's subnets and a port's groups in the same VPC).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from cli.stack.kinds import (
    BY_NAME,
    KEY_RE,
    ORDER,
    UNSET,
    Collection,
    External,
    Field,
    Kind,
    Ref,
    address,
    key_tag,
    network,
    owner_tag,
)
from cli.stack.yamlmarks import Mapping, Sequence, StackError, load


class StackErrors(Exception):
    """Every mistake found in a stack file, in line order."""

    def __init__(self, errors: list[StackError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = sorted(errors, key=lambda e: e.line or 0)


@dataclass
class Item:
    """One member of a collection (a rule, an interface), defaults filled in."""

    values: dict[str, Any]
    line: int


@dataclass
class Want:
    """One resource as the file wants it; references are still by name."""

    kind: str
    key: str
    line: int
    fields: dict[str, Any] = field(default_factory=dict)  # API name -> value
    lines: dict[str, int] = field(default_factory=dict)  # API name -> line
    items: list[Item] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.key}"


@dataclass
class Stack:
    name: str
    wants: dict[tuple[str, str], Want]

    def of(self, kind: str) -> list[Want]:
        return [w for (k, _), w in self.wants.items() if k == kind]


def parse(text: str) -> Stack:
    """The stack described by `text`; raises StackErrors listing every mistake with its line."""
    try:
        top = load(text)
    except StackError as exc:
        raise StackErrors([exc]) from exc
    return _Parser().stack(top)


class _Parser:
    def __init__(self) -> None:
        self.errors: list[StackError] = []

    def error(self, line: int | None, message: str) -> None:
        self.errors.append(StackError(line, message))

    def stack(self, top: Any) -> Stack:
        if not isinstance(top, Mapping):
            raise StackErrors([StackError(1, "a stack file is a mapping with `stack:` first")])
        name = top.get("stack")
        if not isinstance(name, str) or not re.fullmatch(KEY_RE, name):
            self.error(top.line_of("stack"), f"stack: give the stack a name matching {KEY_RE}")
            name = "?"
        self.unknown(top, {"stack", *ORDER}, "section")
        wants: dict[tuple[str, str], Want] = {}
        for kind_name in ORDER:
            section = top.get(kind_name)
            if section is None:
                continue
            if not isinstance(section, Mapping):
                self.error(top.line_of(kind_name), f"{kind_name}: must map names to resources")
                continue
            for key, body in section.items():
                line = section.key_lines[key]
                if not isinstance(key, str) or not re.fullmatch(KEY_RE, key):
                    self.error(line, f"{kind_name}: {key!r} is not a valid name ({KEY_RE})")
                    continue
                want = self.resource(BY_NAME[kind_name], key, body, line, name)
                if want is not None:
                    wants[(kind_name, key)] = want
        for want in wants.values():
            self.references(want, wants)
        if not self.errors:
            _Cross(self, wants).check()
        if self.errors:
            raise StackErrors(self.errors)
        return Stack(name, wants)

    def unknown(self, m: Mapping, known: set[str], what: str) -> None:
        for key in m:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.error(m.line_of(key), f"unknown {what} {key!r}{hint}")

    def resource(self, kind: Kind, key: str, body: Any, line: int, stack: str) -> Want | None:
        where = f"{kind.name}/{key}"
        if body is None:
            body = Mapping()
            body.line = line
        if not isinstance(body, Mapping):
            self.error(line, f"{where}: must be a mapping of fields")
            return None
        known = {f.key for f in kind.fields} | ({"name"} if kind.named else set())
        if kind.collection is not None:
            known.add(kind.collection.key)
        self.unknown(body, known, f"field of {where}:")
        want = Want(kind.name, key, line)
        self.values(where, kind.fields, body, want.fields, want.lines)
        if kind.named:
            want.fields["name"] = body.get("name", key)
            want.lines["name"] = body.line_of("name")
            if not isinstance(want.fields["name"], str) or len(want.fields["name"]) > 255:
                self.error(want.lines["name"], f"{where}: name must be a string of 255 at most")
        tags = want.fields.get("tags", [])
        want.fields["tags"] = sorted({*map(str, tags), owner_tag(stack), key_tag(key)})
        coll = kind.collection
        if coll is not None and coll.key in body:
            want.items = self.collection(where, coll, body[coll.key], body.line_of(coll.key))
        return want

    def values(
        self,
        where: str,
        fields: tuple[Field, ...],
        body: Mapping,
        out: dict[str, Any],
        lines: dict[str, int],
    ) -> None:
        for f in fields:
            line = body.line_of(f.key)
            lines[f.api] = line
            if f.key not in body:
                if f.required:
                    self.error(body.line, f"{where}: {f.key} is required")
                elif f.default is not UNSET:
                    out[f.api] = f.default
                continue
            value = body[f.key]
            if f.many:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    self.error(line, f"{where}: {f.key} must be a list of names")
                    continue
                out[f.api] = tuple(Ref(f.ref or "", v) for v in value)
                continue
            if value is None and f.default is None:
                out[f.api] = None
                continue
            problem = f.check(value)
            if problem:
                self.error(line, f"{where}: {f.key} {problem}")
            elif f.external:
                out[f.api] = External(value)
            elif f.ref:
                out[f.api] = Ref(f.ref, value)
            else:
                out[f.api] = list(value) if isinstance(value, list) else value

    def collection(self, where: str, coll: Collection, raw: Any, line: int) -> list[Item]:
        if not isinstance(raw, Sequence):
            self.error(line, f"{where}: {coll.key} must be a list")
            return []
        out: list[Item] = []
        for n, (entry, at) in enumerate(zip(raw, raw.lines, strict=True), start=1):
            label = f"{where} {coll.key}[{n}]"
            if coll.scalar is not None and not isinstance(entry, Mapping):
                body = Mapping()
                body[coll.scalar] = entry
                body.lines[coll.scalar] = body.line = at
                entry = body
            if not isinstance(entry, Mapping):
                self.error(at, f"{label}: must be a mapping")
                continue
            self.unknown(entry, {f.key for f in coll.fields}, f"field of {label}:")
            item = Item({}, at)
            self.values(label, coll.fields, entry, item.values, {})
            out.append(item)
        return out

    def references(self, want: Want, wants: dict[tuple[str, str], Want]) -> None:
        kind = BY_NAME[want.kind]
        fields = [(f, want.fields.get(f.api), want.lines.get(f.api)) for f in kind.fields]
        coll = kind.collection
        for item in want.items:
            fields += [(f, item.values.get(f.api), item.line) for f in coll.fields] if coll else []
        for f, value, line in fields:
            for r in value if isinstance(value, tuple) else (value,):
                if isinstance(r, Ref) and (r.kind, r.key) not in wants:
                    names = sorted(k for kk, k in wants if kk == r.kind)
                    have = f" (this file has: {', '.join(names)})" if names else ""
                    self.error(
                        line,
                        f"{want.address}: {f.key} {r.key!r} names no "
                        f"{BY_NAME[r.kind].singular} of this file{have}",
                    )


class _Cross:
    """Checks across resources that need no API: addresses inside their networks."""

    def __init__(self, parser: _Parser, wants: dict[tuple[str, str], Want]) -> None:
        self.p = parser
        self.wants = wants

    def target(self, value: Any) -> Want:
        assert isinstance(value, Ref)
        return self.wants[(value.kind, value.key)]

    def check(self) -> None:
        nets: dict[tuple[str, str], ipaddress.IPv4Network] = {}
        for w in self.wants.values():
            if w.kind == "subnets":
                self.subnet(w, nets)
            elif w.kind == "ports":
                self.port(w, nets)
            elif w.kind == "routers":
                self.same_vpc(w, [(i.values["subnet_id"], i.line) for i in w.items])
            elif w.kind == "security_groups":
                self.rules(w)

    def subnet(self, w: Want, nets: dict[tuple[str, str], ipaddress.IPv4Network]) -> None:
        net = network(w.fields["cidr"])
        vpc = self.target(w.fields["vpc_id"])
        vpc_net = network(vpc.fields["cidr"])
        assert net is not None and vpc_net is not None
        line = w.lines["cidr"]
        if not net.subnet_of(vpc_net):
            self.p.error(line, f"{w.address}: cidr {net} is not inside {vpc.address}'s {vpc_net}")
        for (vkey, other), onet in nets.items():
            if vkey == vpc.key and net.overlaps(onet):
                self.p.error(line, f"{w.address}: cidr {net} overlaps subnets/{other} ({onet})")
        nets[(vpc.key, w.key)] = net
        gw = w.fields.get("gateway_ip")
        if gw is not None and address(gw) not in net:
            self.p.error(w.lines["gateway_ip"], f"{w.address}: gateway_ip {gw} is not in {net}")

    def port(self, w: Want, nets: dict[tuple[str, str], ipaddress.IPv4Network]) -> None:
        subnet = self.target(w.fields["subnet_id"])
        net = network(subnet.fields["cidr"])
        ip = w.fields.get("ip_address")
        if ip is not None and net is not None and address(ip) not in net:
            self.p.error(
                w.lines["ip_address"], f"{w.address}: ip_address {ip} is not in {subnet.address}"
            )
        groups = w.fields.get("security_group_ids", ())
        vpc = subnet.fields["vpc_id"]
        for g in groups:
            if self.target(g).fields["vpc_id"] != vpc:
                self.p.error(
                    w.lines["security_group_ids"],
                    f"{w.address}: security group {g.key} is not in {vpc}, the port's VPC",
                )

    def same_vpc(self, w: Want, subnets: list[tuple[Any, int]]) -> None:
        for ref, line in subnets:
            if self.target(ref).fields["vpc_id"] != w.fields["vpc_id"]:
                self.p.error(line, f"{w.address}: subnets/{ref.key} is not in {w.fields['vpc_id']}")

    def rules(self, w: Want) -> None:
        for item in w.items:
            v = item.values
            where = f"{w.address}: rule on line {item.line}"
            has_ports = v["port_min"] is not None or v["port_max"] is not None
            if has_ports and v["protocol"] not in ("tcp", "udp"):
                self.p.error(item.line, f"{where}: ports apply only to tcp and udp")
            if None not in (v["port_min"], v["port_max"]) and v["port_min"] > v["port_max"]:
                self.p.error(item.line, f"{where}: port_min is above port_max")
            if v["remote_cidr"] is not None and v["remote_group_id"] is not None:
                self.p.error(item.line, f"{where}: give remote_cidr or remote_group, not both")
