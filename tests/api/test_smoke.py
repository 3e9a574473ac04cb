from tests.api import helpers as h


def test_vpc_roundtrip(client, tenant):
    v = h.vpc(client, tenant)
    r = client.get(f"/v1/vpcs/{v['id']}", headers=tenant.headers)
    assert r.status_code == 200 and r.json() == v
    assert r.headers["etag"] == '"1"'
