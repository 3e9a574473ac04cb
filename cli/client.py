"""vpcctl's HTTP side: the endpoint, requests, RFC 9457 problems printed for people.

`make_client` is the one seam through which tests put an in-process app behind the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NoReturn

import httpx
import typer

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
        """Print an RFC 9457 problem and exit 1."""
        fail(1, *problem_lines(r, flags, has_token=bool(self.token)))

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


def problem_lines(r: httpx.Response, flags: Mapping[str, str], has_token: bool) -> list[str]:
    """An RFC 9457 problem for people: title, detail or field errors, blockers.

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
    if r.status_code == 401 and not has_token:
        lines.append("hint: no token given; set VPCD_TOKEN or pass --token.")
    return lines


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
