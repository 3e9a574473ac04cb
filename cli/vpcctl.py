"""`vpcctl`: the command-line client of the vpcd REST API (DESIGN §6).

The list/show/create/update/delete commands of every resource are generated from one table,
RESOURCES, so the resources cannot drift apart in behaviour; the few actions that are not CRUD
(tenant tokens and quotas, router interfaces, floating IP association) are written out below.
This module deliberately avoids `from __future__ import annotations`: typer reads the
annotations of the generated command functions, and those refer to closure variables.
"""

import inspect
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

DEFAULT_URL = "http://127.0.0.1:8080"
MAX_PAGE = 1000  # the API's largest `limit`


class Output(StrEnum):
    table = "table"
    wide = "wide"  # a table with every field as a column
    json = "json"


def make_client(url: str, timeout: float) -> httpx.Client:
    """Build the HTTP client; the single seam through which tests reach an in-process app."""
    return httpx.Client(base_url=url, timeout=timeout)


# --------------------------------------------------------------------------- HTTP


def fail(code: int, *lines: str) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(code)


class Api:
    """The vpcd endpoint of one invocation: its URL, token, default output and HTTP client."""

    def __init__(self, url: str, token: str | None, output: Output, timeout: float) -> None:
        self.url = url.rstrip("/")
        if self.url.endswith("/v1"):  # paths carry /v1 already: accept the API's base too
            self.url = self.url[: -len("/v1")]
        self.token = token or None
        self.output = output
        self.timeout = timeout
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = make_client(self.url, self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        flags: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request; return its JSON (None for 204), or print the error and exit.

        `flags` names the command-line flag of each body field, for error messages.
        """
        sent = {"Accept": "application/json"}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        kwargs: dict[str, Any] = {"params": params, "headers": sent}
        if body is not None:
            kwargs["json"] = body
        try:
            r = self.client.request(method, path, **kwargs)
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            reason = str(exc) or type(exc).__name__
            fail(
                2,
                f"error: cannot reach vpcd at {self.url}: {reason}",
                "hint: is the API running? Set VPCD_URL or pass --url.",
            )
        if r.is_error:
            self._problem(r, flags or {})
        if r.status_code == 204 or not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            fail(1, f"error: {method} {path} answered {r.status_code} with a body that is not JSON")

    def _problem(self, r: httpx.Response, flags: Mapping[str, str]) -> NoReturn:
        """Print an RFC 9457 problem (title, detail or field errors, blockers) and exit 1.

        Field errors are printed once each, named by the flag that set the field.
        """
        try:
            body = r.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "title" in body:
            fields = [
                f"{flag_of(str(e.get('field', '?')), flags)}: {e.get('message', '')}"
                for e in body.get("errors") or []
            ]
            if len(fields) == 1:
                lines = [f"{body['title']}: {fields[0]}"]
            elif fields:
                lines = [f"{body['title']}:", *(f"  {f}" for f in fields)]
            else:
                lines = [f"{body['title']}: {body.get('detail', '')}".rstrip(": ")]
            blocking = body.get("blocking_resources") or []
            if blocking:
                lines.append("  blocking resources:")
                lines += [f"    {b.get('type', '?')} {b.get('id', '?')}" for b in blocking]
        else:
            text = r.text.strip()[:500] or r.reason_phrase
            lines = [f"HTTP {r.status_code}: {text}"]
        if r.status_code == 401 and not self.token:
            lines.append("hint: no token given; set VPCD_TOKEN or pass --token.")
        fail(1, *lines)

    def pages(
        self, path: str, filters: dict[str, str], limit: int | None, page_size: int
    ) -> list[Any]:
        """Every item of a list, following next_page_token, stopping after `limit` items."""
        items: list[Any] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            want = page_size if limit is None else min(page_size, limit - len(items))
            params: dict[str, Any] = {**filters, "limit": want}
            if token:
                params["page_token"] = token
            page = self.request("GET", path, params=params)
            items.extend(page["items"])
            token = page.get("next_page_token")
            if not token or (limit is not None and len(items) >= limit):
                return items if limit is None else items[:limit]
            if token in seen:
                fail(1, f"error: the API repeated page token {token!r}; stopping")
            seen.add(token)


def flag_of(field: str, flags: Mapping[str, str]) -> str:
    """The command-line spelling of an API field path: body.cidr -> --cidr or --set cidr."""
    where, _, path = field.partition(".")
    if where == "body":
        if not path:
            return "request body"
        top, dot, rest = path.partition(".")
        return flags[top] + dot + rest if top in flags else f"--set {path}"
    if where == "query":
        return flags.get(path) or f"--{path.replace('_', '-')}"
    return field


def api(ctx: typer.Context) -> Api:
    obj = ctx.find_object(Api)
    if obj is None:  # only when a sub-app is invoked without the root callback
        obj = Api(DEFAULT_URL, None, Output.table, 30.0)
        ctx.obj = obj
        ctx.call_on_close(obj.close)
    return obj


# --------------------------------------------------------------------------- input


def parse_value(raw: str) -> Any:
    """A --set value: JSON when it parses as JSON, else the plain string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_pairs(pairs: list[str] | None, option: str, as_json: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint=option)
        out[key] = parse_value(raw) if as_json else raw
    return out


def etag(value: str | None) -> dict[str, str]:
    """An If-Match header from a revision number (3) or an ETag as the API sent it ("3")."""
    if value is None:
        return {}
    value = value.strip()
    if value != "*" and not value.startswith(('"', "W/")):
        value = f'"{value}"'
    return {"If-Match": value}


def plain(value: Any) -> Any:
    """An option's value as JSON wants it (choices arrive as enum members)."""
    return value.value if isinstance(value, StrEnum) else value


def idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


# --------------------------------------------------------------------------- output


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def print_table(table: Table) -> None:
    """Print a table at its natural width: cells are never cut or wrapped, ids stay whole.

    A table wider than the terminal is printed wider than the terminal (which then wraps
    the lines) rather than squeezed: a cut id is of no use to the next command.
    """
    console = Console(width=1_000_000, highlight=False)
    needed = Measurement.get(console, console.options, table).maximum
    if sys.stdout.isatty():
        needed = max(needed, Console().width)
    Console(width=needed, highlight=False).print(table)


def wide_columns(items: list[Any], columns: tuple[str, ...]) -> tuple[str, ...]:
    """The list's columns followed by every other field the items have, in their order."""
    extra: dict[str, None] = {}
    for item in items:
        extra.update(dict.fromkeys(k for k in item if k not in columns))
    return (*columns, *extra)


def emit(
    ctx: typer.Context, data: Any, output: Output | None, columns: tuple[str, ...] = ()
) -> None:
    """Print a resource (field/value table), a list (one row each), or the raw JSON."""
    output = output or api(ctx).output
    if output is Output.json:
        typer.echo(json.dumps(data, indent=2))
        return
    if isinstance(data, list):
        if output is Output.wide:
            columns = wide_columns(data, columns)
        table = Table(*columns, show_lines=False)
        for item in data:
            table.add_row(*(Text(cell(item.get(c))) for c in columns))
    else:
        table = Table("field", "value", show_header=True)
        for key, value in (data or {}).items():
            table.add_row(Text(key), Text(cell(value)))
    print_table(table)


def print_ids(data: Any) -> None:
    """-q: the id of each item (or of the one resource), one per line."""
    for item in data if isinstance(data, list) else [data]:
        typer.echo(item["id"])


def done(message: str) -> None:
    typer.echo(message)


# --------------------------------------------------------------------------- resource table


@dataclass(frozen=True)
class Opt:
    """A typed `create` option: the API field it fills and how it is spelled on the command line."""

    field: str
    help: str
    flags: tuple[str, ...] = ()
    type: type = str
    many: bool = False  # repeatable; the values are sent as a list
    choices: tuple[str, ...] = ()

    @property
    def param(self) -> str:
        return "opt_" + self.field

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else "--" + self.field.replace("_", "-")

    def parameter(self) -> inspect.Parameter:
        flags = self.flags or (self.flag,)
        if self.type is bool:
            flags = (f"{flags[0]}/--no-{flags[0][2:]}", *flags[1:])
        # typer takes choices from an Enum (it vendors its own click, so no click.Choice)
        kind: Any = StrEnum(self.field, {c: c for c in self.choices}) if self.choices else self.type
        base: Any = list[kind] if self.many else kind
        extra: dict[str, Any] = {"show_default": False}
        annotation = Annotated[base | None, typer.Option(*flags, help=self.help, **extra)]
        return inspect.Parameter(
            self.param, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
        )


@dataclass(frozen=True)
class Resource:
    name: str  # the sub-command, e.g. "security-groups"
    path: str
    singular: str
    help: str
    columns: tuple[str, ...]
    filters: tuple[str, ...]
    create: tuple[Opt, ...]
    example: str = ""  # a `create --set` example for a field that has no option of its own
    realised: bool = False  # hosts realise it: it has a status, and create can --wait

    @property
    def a(self) -> str:
        """The singular with its article, for help texts."""
        return ("an " if self.singular[0] in "aeiou" else "a ") + self.singular

    @property
    def metavar(self) -> str:
        return self.singular.upper().replace(" ", "_") + "_ID"

    @property
    def flags(self) -> dict[str, str]:
        """The `create` flag of each field that has one (for naming fields in errors)."""
        return {o.field: o.flag for o in self.create}


def ref(field: str, what: str) -> Opt:
    return Opt(field, f"Id of the {what}.")


NAME = Opt("name", "Name.")
POOLS = """--set 'allocation_pools=[{"start":"10.0.0.10","end":"10.0.0.20"}]'"""
DESCRIPTION = Opt("description", "Free-text description.")
TAGS = Opt("tags", "A tag; repeat for several.", ("--tag",), many=True)

RESOURCES: tuple[Resource, ...] = (
    Resource(
        "tenants",
        "/v1/tenants",
        "tenant",
        "Tenants (admin): who owns resources.",
        columns=("id", "name", "description"),
        filters=("name",),
        create=(Opt("name", "Unique tenant name."), DESCRIPTION),
    ),
    Resource(
        "hosts",
        "/v1/hosts",
        "host",
        "Hosts (admin): machines whose agents realise resources.",
        columns=("id", "name", "vtep_ip", "roles", "status", "realised_revision"),
        filters=("name",),
        create=(
            Opt("name", "Host name (what ports' --host refers to)."),
            Opt("vtep_ip", "Underlay address of the host's VXLAN endpoint."),
            Opt(
                "roles",
                "A role; repeat for both.",
                ("--role",),
                many=True,
                choices=("compute", "network"),
            ),
        ),
    ),
    Resource(
        "vpcs",
        "/v1/vpcs",
        "VPC",
        "VPCs: isolated address spaces, each with a default group.",
        columns=("id", "name", "cidr", "tags", "default_security_group_id"),
        filters=("name", "tag", "cidr"),
        create=(Opt("cidr", "Address range, e.g. 10.0.0.0/16."), NAME, DESCRIPTION, TAGS),
    ),
    Resource(
        "subnets",
        "/v1/subnets",
        "subnet",
        "Subnets: a range of a VPC, one L2 segment (VNI).",
        columns=("id", "name", "vpc_id", "cidr", "gateway_ip", "vni", "status"),
        filters=("vpc_id", "name", "tag", "cidr"),
        create=(
            ref("vpc_id", "VPC"),
            Opt("cidr", "Address range inside the VPC, e.g. 10.0.1.0/24."),
            NAME,
            DESCRIPTION,
            Opt("gateway_ip", "Gateway address (default: the first host address)."),
            Opt(
                "dns_nameservers",
                "A DNS server; repeat for several.",
                ("--dns-nameserver",),
                many=True,
            ),
            TAGS,
        ),
        example=POOLS,
        realised=True,
    ),
    Resource(
        "ports",
        "/v1/ports",
        "port",
        "Ports: a workload's interface on a subnet.",
        columns=("id", "name", "subnet_id", "ip_address", "mac_address", "host", "status"),
        filters=(
            "subnet_id",
            "host",
            "name",
            "tag",
            "device_id",
            "ip_address",
            "security_group_id",
        ),
        create=(
            ref("subnet_id", "subnet"),
            NAME,
            DESCRIPTION,
            Opt("ip_address", "Fixed address (default: a free one, picked at random)."),
            Opt("mac_address", "MAC address (default: generated)."),
            Opt("host", "Host that carries the port."),
            Opt("netns", "The workload's network namespace on that host."),
            Opt("interface_name", "Interface name inside the namespace (default eth0)."),
            Opt(
                "security_group_ids",
                "A security group id; repeat for several (default: the VPC's default group).",
                ("--security-group-id",),
                many=True,
            ),
            TAGS,
        ),
        realised=True,
    ),
    Resource(
        "routers",
        "/v1/routers",
        "router",
        "Routers: connect a VPC's subnets and the outside.",
        columns=(
            "id",
            "name",
            "vpc_id",
            "external_network_id",
            "external_ip",
            "subnet_ids",
            "status",
        ),
        filters=("vpc_id", "name", "tag", "external_network_id"),
        create=(
            ref("vpc_id", "VPC"),
            NAME,
            DESCRIPTION,
            ref("external_network_id", "external network for the gateway"),
            Opt(
                "enable_snat",
                "Source-NAT the subnets behind the gateway (default on).",
                ("--snat",),
                type=bool,
            ),
            TAGS,
        ),
        example="""--set 'routes=[{"destination":"192.168.0.0/16","nexthop":"10.0.1.254"}]'""",
        realised=True,
    ),
    Resource(
        "security-groups",
        "/v1/security-groups",
        "security group",
        "Security groups: stateful firewall rule sets for ports.",
        columns=("id", "name", "vpc_id", "is_default", "description"),
        filters=("vpc_id", "name", "tag"),
        create=(ref("vpc_id", "VPC"), NAME, DESCRIPTION, TAGS),
    ),
    Resource(
        "security-group-rules",
        "/v1/security-group-rules",
        "security group rule",
        "Security group rules: what a group lets in or out.",
        columns=(
            "id",
            "security_group_id",
            "direction",
            "protocol",
            "port_min",
            "port_max",
            "remote_cidr",
            "remote_group_id",
        ),
        filters=("security_group_id", "remote_group_id", "direction"),
        create=(
            ref("security_group_id", "security group"),
            Opt("direction", "Traffic direction.", choices=("ingress", "egress")),
            Opt("protocol", "IP protocol.", choices=("tcp", "udp", "icmp", "any")),
            Opt("port_min", "First port (tcp/udp).", type=int),
            Opt("port_max", "Last port (tcp/udp).", type=int),
            Opt("remote_cidr", "Peer address range."),
            ref("remote_group_id", "peer security group"),
            DESCRIPTION,
        ),
    ),
    Resource(
        "external-networks",
        "/v1/external-networks",
        "external network",
        "External networks (admin): where router gateways and floating IPs come from.",
        columns=("id", "name", "cidr", "gateway_ip", "allocation_pools"),
        filters=("name", "tag"),
        create=(
            NAME,
            Opt("cidr", "Address range of the external segment."),
            Opt("gateway_ip", "Upstream gateway on that segment."),
            DESCRIPTION,
            TAGS,
        ),
        example=POOLS.replace("10.0.0.", "203.0.113."),
    ),
    Resource(
        "floating-ips",
        "/v1/floating-ips",
        "floating IP",
        "Floating IPs: public addresses mapped onto ports.",
        columns=(
            "id",
            "address",
            "external_network_id",
            "port_id",
            "fixed_ip_address",
            "router_id",
            "status",
        ),
        filters=("external_network_id", "port_id", "router_id", "tag"),
        create=(
            ref("external_network_id", "external network to allocate from"),
            ref("port_id", "port to associate at once"),
            DESCRIPTION,
            TAGS,
        ),
        realised=True,
    ),
)


# --------------------------------------------------------------------------- shared options

OutputOpt = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        help="table, wide (every field) or json (default: the global --output).",
        case_sensitive=False,
        show_default=False,
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        show_default=False,
        help="A field to send; repeatable. Values that parse as JSON are sent as JSON "
        "(numbers, true, null, lists, objects), anything else as a string.",
    ),
]
IfMatchOpt = Annotated[
    str | None,
    typer.Option(
        "--if-match",
        metavar="REVISION",
        help="Only if the resource is still at this revision (or ETag); else 412.",
    ),
]
IdemOpt = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        metavar="KEY",
        help="Retry-safe: a repeat with the same key replays the first answer.",
    ),
]
FilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        "-f",
        metavar="KEY=VALUE",
        show_default=False,
        help="Equality filter; repeatable.",
    ),
]
LimitOpt = Annotated[
    int | None,
    typer.Option(
        "--limit",
        min=1,
        show_default=False,
        help="Stop after this many items (default: every page).",
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only ids, one per line.", show_default=False)
]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Wait until the hosts have realised it (status active); fail on error.",
        show_default=False,
    ),
]
WaitTimeoutOpt = Annotated[
    float, typer.Option("--wait-timeout", metavar="SECONDS", help="How long --wait waits.")
]
PageSizeOpt = Annotated[
    int, typer.Option("--page-size", min=1, max=MAX_PAGE, help="Items fetched per request.")
]


def wait_realised(client: Api, path: str, timeout: float, interval: float = 0.2) -> Any:
    """GET `path` until its status leaves `pending`; exit 1 on `error` or on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        data = client.request("GET", path)
        if data["status"] == "active":
            return data
        if data["status"] == "error":
            fail(1, f"error: {path} failed: {data.get('status_detail') or 'no detail'}")
        if time.monotonic() > deadline:
            fail(1, f"error: {path} still {data['status']} after {timeout:g}s")
        time.sleep(interval)


def _keyword(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


# --------------------------------------------------------------------------- generated commands


def _list_command(spec: Resource) -> Callable[..., None]:
    def list_(
        ctx: typer.Context,
        filter_: FilterOpt = None,
        limit: LimitOpt = None,
        page_size: PageSizeOpt = 100,
        output: OutputOpt = None,
        quiet: QuietOpt = False,
    ) -> None:
        filters = parse_pairs(filter_, "--filter", as_json=False)
        unknown = sorted(set(filters) - set(spec.filters))
        if unknown:
            raise typer.BadParameter(
                f"cannot filter {spec.singular}s by {', '.join(unknown)}; "
                f"filters: {', '.join(spec.filters)}",
                param_hint="--filter",
            )
        items = api(ctx).pages(spec.path, filters, limit, page_size)
        if quiet:
            print_ids(items)
        else:
            emit(ctx, items, output, spec.columns)

    list_.__doc__ = (
        f"List {spec.singular}s, following every page.\n\n"
        f"Filters (--filter KEY=VALUE): {', '.join(spec.filters)}."
    )
    return list_


def _with_id(spec: Resource, func: Callable[..., None]) -> Callable[..., None]:
    """Give the `ident` argument of a generated command its resource's name (VPC_ID, ...)."""
    arg = typer.Argument(
        metavar=spec.metavar, help=f"Id of the {spec.singular}.", show_default=False
    )
    sig = inspect.signature(func)
    params = [
        p.replace(annotation=Annotated[str, arg]) if p.name == "ident" else p
        for p in sig.parameters.values()
    ]
    func.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return func


def _show_command(spec: Resource) -> Callable[..., None]:
    def show(ctx: typer.Context, ident: str, output: OutputOpt = None) -> None:
        emit(ctx, api(ctx).request("GET", f"{spec.path}/{ident}"), output)

    show.__doc__ = f"Show one {spec.singular}."
    return _with_id(spec, show)


def _create_command(spec: Resource) -> Callable[..., None]:
    def create(ctx: typer.Context, **kw: Any) -> None:
        body: dict[str, Any] = {}
        for opt in spec.create:
            value = kw[opt.param]
            if value is None or (opt.many and not value):
                continue
            body[opt.field] = [plain(v) for v in value] if opt.many else plain(value)
        body.update(parse_pairs(kw["set_"], "--set"))
        data = api(ctx).request(
            "POST",
            spec.path,
            body=body,
            headers=idempotency(kw["idempotency_key"]),
            flags=spec.flags,
        )
        if kw.get("wait"):
            data = wait_realised(api(ctx), f"{spec.path}/{data['id']}", kw["wait_timeout"])
        if kw["quiet"]:
            print_ids(data)
        else:
            emit(ctx, data, kw["output"])

    ctx_param = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    create.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            ctx_param,
            *(o.parameter() for o in spec.create),
            _keyword("set_", SetOpt),
            _keyword("idempotency_key", IdemOpt),
            _keyword("output", OutputOpt),
            _keyword("quiet", QuietOpt, False),
            *(
                (_keyword("wait", WaitOpt, False), _keyword("wait_timeout", WaitTimeoutOpt, 60.0))
                if spec.realised
                else ()
            ),
        ]
    )
    example = f", e.g. {spec.example}" if spec.example else ""
    create.__doc__ = (
        f"Create {spec.a}.\n\n"
        f"Any field without an option of its own goes through --set KEY=VALUE{example}. "
        "--set wins over an option for the same field."
    )
    return create


def _update_command(spec: Resource) -> Callable[..., None]:
    def update(
        ctx: typer.Context,
        ident: str,
        set_: SetOpt = None,
        if_match: IfMatchOpt = None,
        idempotency_key: IdemOpt = None,
        output: OutputOpt = None,
    ) -> None:
        changes = parse_pairs(set_, "--set")
        if not changes:
            raise typer.BadParameter("nothing to change: give --set KEY=VALUE", param_hint="--set")
        data = api(ctx).request(
            "PATCH",
            f"{spec.path}/{ident}",
            body=changes,
            headers={**etag(if_match), **idempotency(idempotency_key)},
        )
        emit(ctx, data, output)

    update.__doc__ = f"Change fields of {spec.a} (PATCH: the fields not given stay as they are)."
    return _with_id(spec, update)


def _delete_command(spec: Resource) -> Callable[..., None]:
    def delete(ctx: typer.Context, ident: str, if_match: IfMatchOpt = None) -> None:
        api(ctx).request("DELETE", f"{spec.path}/{ident}", headers=etag(if_match))
        done(f"deleted {spec.singular} {ident}")

    delete.__doc__ = f"Delete {spec.a} (409 names what still uses it)."
    return _with_id(spec, delete)


def resource_app(spec: Resource) -> typer.Typer:
    sub = typer.Typer(help=spec.help, no_args_is_help=True)
    sub.command("list")(_list_command(spec))
    sub.command("show")(_show_command(spec))
    sub.command("create")(_create_command(spec))
    sub.command("update")(_update_command(spec))
    sub.command("delete")(_delete_command(spec))
    return sub


# --------------------------------------------------------------------------- the application

app = typer.Typer(
    name="vpcctl",
    help="vpcctl: the client of the vpcd VPC control plane.",
    no_args_is_help=True,
)


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="VPCD_URL", help="The vpcd API.")] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(envvar="VPCD_TOKEN", show_default=False, help="Bearer token."),
    ] = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", case_sensitive=False, help="Output format.")
    ] = Output.table,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 30.0,
) -> None:
    obj = Api(url, token, output, timeout)
    ctx.obj = obj
    ctx.call_on_close(obj.close)


SUBAPPS: dict[str, typer.Typer] = {}
for _spec in RESOURCES:
    SUBAPPS[_spec.name] = resource_app(_spec)
    app.add_typer(SUBAPPS[_spec.name], name=_spec.name)

TenantArg = Annotated[str, typer.Argument(metavar="TENANT_ID", show_default=False)]
RouterArg = Annotated[str, typer.Argument(metavar="ROUTER_ID", show_default=False)]
SubnetArg = Annotated[str, typer.Argument(metavar="SUBNET_ID", show_default=False)]
FipArg = Annotated[str, typer.Argument(metavar="FLOATING_IP_ID", show_default=False)]
PortArg = Annotated[str, typer.Argument(metavar="PORT_ID", show_default=False)]


@SUBAPPS["tenants"].command("token")
def tenant_token(
    ctx: typer.Context,
    tenant_id: TenantArg,
    output: OutputOpt = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the token.", show_default=False)
    ] = False,
) -> None:
    """Mint a bearer token for a tenant; it is shown only this once."""
    data = api(ctx).request("POST", f"/v1/tenants/{tenant_id}/tokens")
    if quiet:
        typer.echo(data["token"])
    else:
        emit(ctx, data, output)


@SUBAPPS["tenants"].command("quotas")
def tenant_quotas(
    ctx: typer.Context, tenant_id: TenantArg, set_: SetOpt = None, output: OutputOpt = None
) -> None:
    """Show a tenant's quotas, or change some with --set RESOURCE=LIMIT."""
    changes = parse_pairs(set_, "--set")
    path = f"/v1/tenants/{tenant_id}/quotas"
    data = (
        api(ctx).request("PATCH", path, body=changes) if changes else api(ctx).request("GET", path)
    )
    emit(ctx, data, output)


@SUBAPPS["routers"].command("add-interface")
def router_add_interface(
    ctx: typer.Context,
    router_id: RouterArg,
    subnet_id: SubnetArg,
    idempotency_key: IdemOpt = None,
    output: OutputOpt = None,
) -> None:
    """Attach a subnet to a router (the router takes the subnet's gateway address)."""
    data = api(ctx).request(
        "POST",
        f"/v1/routers/{router_id}/interfaces",
        body={"subnet_id": subnet_id},
        headers=idempotency(idempotency_key),
        flags={"subnet_id": "SUBNET_ID"},
    )
    emit(ctx, data, output)


@SUBAPPS["routers"].command("remove-interface")
def router_remove_interface(ctx: typer.Context, router_id: RouterArg, subnet_id: SubnetArg) -> None:
    """Detach a subnet from a router."""
    api(ctx).request("DELETE", f"/v1/routers/{router_id}/interfaces/{subnet_id}")
    done(f"removed the interface of router {router_id} on subnet {subnet_id}")


@SUBAPPS["routers"].command("interfaces")
def router_interfaces(ctx: typer.Context, router_id: RouterArg, output: OutputOpt = None) -> None:
    """List a router's interfaces."""
    data = api(ctx).request("GET", f"/v1/routers/{router_id}/interfaces")
    emit(ctx, data, output, ("subnet_id", "ip_address", "port_id"))


def _associate(
    ctx: typer.Context,
    fip: str,
    port: str | None,
    if_match: str | None,
    idempotency_key: str | None,
    output: Output | None,
) -> None:
    data = api(ctx).request(
        "PATCH",
        f"/v1/floating-ips/{fip}",
        body={"port_id": port},
        headers={**etag(if_match), **idempotency(idempotency_key)},
        flags={"port_id": "PORT_ID"},
    )
    emit(ctx, data, output)


@SUBAPPS["floating-ips"].command("associate")
def fip_associate(
    ctx: typer.Context,
    floating_ip_id: FipArg,
    port_id: PortArg,
    if_match: IfMatchOpt = None,
    idempotency_key: IdemOpt = None,
    output: OutputOpt = None,
) -> None:
    """Map a floating IP onto a port (its subnet needs a router with a gateway)."""
    _associate(ctx, floating_ip_id, port_id, if_match, idempotency_key, output)


@SUBAPPS["floating-ips"].command("disassociate")
def fip_disassociate(
    ctx: typer.Context,
    floating_ip_id: FipArg,
    if_match: IfMatchOpt = None,
    idempotency_key: IdemOpt = None,
    output: OutputOpt = None,
) -> None:
    """Unmap a floating IP from its port (the address stays allocated)."""
    _associate(ctx, floating_ip_id, None, if_match, idempotency_key, output)


def main() -> None:
    app(prog_name="vpcctl")


if __name__ == "__main__":
    main()
