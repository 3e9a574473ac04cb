"""The verified-token cache (api.auth): fast, and revocation still holds.

A revocation made through this process refuses the token at once; one made elsewhere
(another API worker, the CLI, a restart) within the cache's lifetime. Time is a fake clock
here, moved past the lifetime, so nothing waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import TokenCache
from api.settings import Settings
from tests.conftest import ADMIN, ADMIN_TOKEN, Tenant


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def other_worker(db_url: str) -> Iterator[TestClient]:
    """A second API process on the same database, with a token cache of its own."""
    app = create_app(Settings(database_url=db_url, vpcd_admin_token=ADMIN_TOKEN, redis_url=None))
    with TestClient(app) as c:
        yield c


def _tokens(c: TestClient) -> TokenCache:
    tokens: TokenCache = c.app.state.tokens  # type: ignore[attr-defined]
    return tokens


def test_a_verified_token_is_served_from_the_cache(
    client: TestClient, tenant: Tenant, db_url: str
) -> None:
    tokens = _tokens(client)
    assert client.get("/v1/vpcs", headers=tenant.headers).status_code == 200
    assert tokens.cached(tenant.token) is not None
    assert tokens.cached(tenant.token).tenant_id == tenant.id  # type: ignore[union-attr]
    assert tokens.cached("not-a-token") is None
    assert client.get("/v1/vpcs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert tokens.cached("nope") is None  # unknown tokens are never cached


def test_deleting_a_tenant_here_refuses_its_cached_token_at_once(
    client: TestClient, tenant: Tenant
) -> None:
    assert client.get("/v1/vpcs", headers=tenant.headers).status_code == 200
    assert _tokens(client).cached(tenant.token) is not None
    r = client.delete(f"/v1/tenants/{tenant.id}", headers=ADMIN)
    assert r.status_code == 204, r.text
    r = client.get("/v1/vpcs", headers=tenant.headers)
    assert r.status_code == 401, r.text
    r = client.post("/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=tenant.headers)
    assert r.status_code == 401, r.text


def test_a_revocation_elsewhere_takes_effect_within_the_cache_lifetime(
    client: TestClient, other_worker: TestClient, tenant: Tenant
) -> None:
    clock = Clock()
    elsewhere = _tokens(other_worker)
    elsewhere.clock = clock
    assert other_worker.get("/v1/vpcs", headers=tenant.headers).status_code == 200
    r = client.delete(f"/v1/tenants/{tenant.id}", headers=ADMIN)
    assert r.status_code == 204, r.text
    # The other worker learns of it only from the database, once its entry expires:
    clock.now += elsewhere.ttl - 0.5
    assert other_worker.get("/v1/vpcs", headers=tenant.headers).status_code == 200
    clock.now += 1.0
    r = other_worker.get("/v1/vpcs", headers=tenant.headers)
    assert r.status_code == 401, r.text
    r = other_worker.post(
        "/v1/vpcs", json={"cidr": "10.0.0.0/16"}, headers=tenant.headers | {"Idempotency-Key": "k"}
    )
    assert r.status_code == 401, r.text  # the idempotency layer asks the same cache


def test_a_verification_racing_a_revocation_is_not_remembered(
    client: TestClient, tenant: Tenant
) -> None:
    """A lookup that read the token before the revocation committed must not cache it."""
    live = _tokens(client)
    cache = TokenCache(live.sessionmaker, ttl=60)
    opened: list[Callable[[], object]] = []

    def revoking_sessionmaker() -> object:
        cache.revoked()  # the revocation commits while this lookup runs
        opened.append(live.sessionmaker)
        return live.sessionmaker()

    cache.sessionmaker = revoking_sessionmaker  # type: ignore[assignment]
    who = cache.verify(tenant.token)
    assert who is not None and who.tenant_id == tenant.id and opened
    assert cache.cached(tenant.token) is None
    cache.sessionmaker = live.sessionmaker
    assert cache.verify(tenant.token) is not None
    assert cache.cached(tenant.token) is not None
