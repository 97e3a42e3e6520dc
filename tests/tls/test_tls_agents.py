"""TLS between real agent processes: a migration with client certificates, and wrong certificates refused.

Two agents share one local CA (made with ``devmig._certs``) and require client certificates on
their API and their migration stream. A migration between them runs over TLS end to end (the
source's calls to the destination's API and the stream). A client whose certificate another CA
signed is refused in the handshake: on the API before any request is read (no device created),
on the stream before a byte of state is read (no migration appears).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest
from devmig_procs import Proc, piped_agents, wait_finished_record

from devmig._certs import Issued, LocalCA

TOKEN = "tls-test-token"
NIC = "example.org/devices/nic"


@dataclass
class Pki:
    ca: LocalCA
    agents: dict[str, Issued]
    client: Issued
    rogue: Issued
    """Signed by another CA with the same names."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = LocalCA.create(root / "ca")
    rogue_ca = LocalCA.create(root / "rogue", "not the fleet's CA")
    return Pki(
        ca,
        {n: ca.issue(root / "certs", n) for n in ("alpha", "beta")},
        ca.issue(root / "certs", "operator"),
        rogue_ca.issue(root / "rogue", "operator"),
    )


def tls_args(pki: Pki, name: str) -> list[str]:
    issued = pki.agents[name]
    return [
        "--tls-cert",
        str(issued.cert),
        "--tls-key",
        str(issued.key),
        "--tls-ca",
        str(pki.ca.cert),
        "--tls-client-certs",
    ]


@pytest.fixture(scope="module")
def agents(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proc]]:
    root = tmp_path_factory.mktemp("agents")
    extras = {name: tls_args(pki, name) for name in ("alpha", "beta")}
    with piped_agents(root, extras, token=TOKEN) as procs:
        yield procs


def client(pki: Pki, proc: Proc, issued: Issued | None = None) -> httpx2.Client:
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    issued = issued or pki.client
    ctx.load_cert_chain(str(issued.cert), str(issued.key))
    return httpx2.Client(
        base_url=proc.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60, verify=ctx
    )


def test_agents_announce_https(agents: dict[str, Proc]) -> None:
    for proc in agents.values():
        assert proc.url.startswith("https://127.0.0.1:")


def test_migration_over_tls_with_client_certificates(pki: Pki, agents: dict[str, Proc]) -> None:
    alpha, beta = agents["alpha"], agents["beta"]
    with client(pki, alpha) as a:
        r = a.post("/v1/devices", json={"model": NIC, "config": "version=2"})
        assert r.status_code == 201, r.text
        device = r.json()
        before = a.get(f"/v1/devices/{device['id']}", params={"digest": True}).json()["digest"]
        r = a.post(
            "/v1/migrations/outgoing",
            json={"device_id": device["id"], "destination": {"url": beta.url, "token": TOKEN}},
        )
        assert r.status_code == 202, r.text
        status = wait_finished_record(
            a, f"/v1/migrations/{r.json()['migration_id']}", what="migration"
        )
    assert status["outcome"] == "migrated", status
    assert status["bytes_sent"] > 0
    with client(pki, beta) as b:
        there = b.get(f"/v1/devices/{status['destination_device_id']}").json()
        dest = wait_finished_record(
            b, f"/v1/migrations/{status['migration_id']}", what="destination"
        )
    assert there["running"] and there["model"] == NIC
    assert dest["outcome"] == "migrated" and dest["bytes_received"] == status["bytes_sent"]
    assert status["digest"] == dest["digest"] and before is not None


def test_plain_http_client_refused(agents: dict[str, Proc]) -> None:
    url = agents["beta"].url.replace("https://", "http://")
    with pytest.raises(httpx2.HTTPError), httpx2.Client(timeout=10) as c:
        c.get(url + "/v1/health")


def test_api_refuses_a_wrong_client_certificate_before_any_state(
    pki: Pki, agents: dict[str, Proc]
) -> None:
    beta = agents["beta"]
    with client(pki, beta) as good:
        count = len(good.get("/v1/devices").json()["devices"])
    with client(pki, beta, pki.rogue) as rogue, pytest.raises(httpx2.HTTPError):
        rogue.post("/v1/devices", json={"model": NIC, "config": "version=2"})
    # no client certificate at all
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    with (
        httpx2.Client(
            base_url=beta.url, timeout=10, verify=ctx, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as anonymous,
        pytest.raises(httpx2.HTTPError),
    ):
        anonymous.post("/v1/devices", json={"model": NIC, "config": "version=2"})
    with client(pki, beta) as good:
        assert len(good.get("/v1/devices").json()["devices"]) == count


def _stream_try(address: str, ctx: ssl.SSLContext | None) -> bytes | Exception:
    """Connect to a stream port (over TLS with ``ctx``), send a would-be preamble; what came back, or the error."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            if ctx is None:
                raw.sendall(b"DVMG" + bytes(60))
                return raw.recv(100)
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"DVMG" + bytes(60))
                return tls.recv(100)
    except (OSError, ssl.SSLError) as exc:
        return exc


def test_stream_refuses_a_wrong_certificate_before_any_state(
    pki: Pki, agents: dict[str, Proc]
) -> None:
    beta = agents["beta"]
    stream = beta.announce["stream"]
    with client(pki, beta) as good:
        migrations = good.get("/v1/migrations").json()

    def tls12(issued: Issued | None) -> ssl.SSLContext:
        # TLS 1.2: the server checks the client's certificate inside the handshake, so a refusal
        # fails the handshake itself (with 1.3 it would surface on the first read)
        ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if issued is not None:
            ctx.load_cert_chain(str(issued.cert), str(issued.key))
        return ctx

    for issued in (pki.rogue, None):
        got = _stream_try(stream, tls12(issued))
        assert isinstance(got, OSError), got  # ssl.SSLError (EOF in the handshake) or a reset
    # the fleet's own certificate passes the handshake (the bogus preamble is then refused by the
    # hand-off, not by TLS)
    assert isinstance(_stream_try(stream, tls12(pki.client)), bytes)
    # plain TCP to a TLS stream port: not a handshake, closed without an answer
    got = _stream_try(stream, None)
    assert got == b"" or isinstance(got, OSError), got
    with client(pki, beta) as good:
        assert good.get("/v1/migrations").json() == migrations
