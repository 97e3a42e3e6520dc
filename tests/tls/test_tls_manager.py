"""The manager on TLS, calling agents that require client certificates; and one context per configuration.

Real processes: two agents and a manager, certificates from one local CA; the agents require client
certificates. The manager registers and polls them and drives a migration (manager → agent with its
client certificate, agent ↔ agent with theirs). A second manager whose certificate another CA signed
cannot register an agent: refused in the handshake, the agent is unchanged.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from devmig_procs import DevmigFleet, Proc, agent_args, manager_args, wait_finished_record

from devmig._certs import Issued, LocalCA
from devmig._tls import TlsConfig, client_tls, server_tls
from devmig.inventory import sqlite_url

NIC = "example.org/devices/nic"


def tls_options(ca: LocalCA, issued: Issued, client_certs: bool) -> list[str]:
    return [
        "--tls-cert",
        str(issued.cert),
        "--tls-key",
        str(issued.key),
        "--tls-ca",
        str(ca.cert),
        *(["--tls-client-certs"] if client_certs else []),
    ]


class TlsFleet(DevmigFleet):
    """The processes, and the operator's client context (the fleet's CA and a client certificate)."""

    verify: ssl.SSLContext
    impostor: Proc

    def m(self) -> httpx2.Client:
        assert self.manager is not None
        return httpx2.Client(
            base_url=self.manager.url,
            headers={"Authorization": f"Bearer {self.manager_token}"},
            timeout=60,
            verify=self.verify,
        )

    def a(self, host: str) -> httpx2.Client:
        return httpx2.Client(
            base_url=self.agents[host].url,
            headers={"Authorization": f"Bearer {self.agent_token}"},
            timeout=60,
            verify=self.verify,
        )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TlsFleet, LocalCA]]:
    root = tmp_path_factory.mktemp("fleet")
    ca = LocalCA.create(root / "ca")
    rogue = LocalCA.create(root / "rogue", "another CA")
    operator = ca.issue(root / "ca", "operator")
    fleet = TlsFleet(root, manager_token="m-token", agent_token="a-token")
    fleet.verify = ssl.create_default_context(cafile=str(ca.cert))
    fleet.verify.load_cert_chain(str(operator.cert), str(operator.key))
    try:
        for name in ("a", "b"):
            (root / name).mkdir()
            args = agent_args(
                name, root / name, *tls_options(ca, ca.issue(root / "ca", name), True)
            )
            fleet.agents[name] = fleet.spawn(name, args, {"DEVMIG_TOKEN": fleet.agent_token})
        base = manager_args(sqlite_url(root / "manager.db"), fleet.manager_token, fleet.agent_token)
        fleet.manager = fleet.spawn(
            "manager", [*base, *tls_options(ca, ca.issue(root / "ca", "manager"), False)], {}
        )
        # an impostor: a certificate for the same names from another CA (it trusts the fleet's CA)
        impostor_cert = rogue.issue(root / "rogue", "manager")
        impostor_args = manager_args(
            sqlite_url(root / "impostor.db"), fleet.manager_token, fleet.agent_token
        )
        impostor = fleet.spawn(
            "impostor",
            [
                *impostor_args,
                "--tls-cert",
                str(impostor_cert.cert),
                "--tls-key",
                str(impostor_cert.key),
                "--tls-ca",
                str(ca.cert),
            ],
            {},
        )
        for proc in fleet.procs:
            proc.wait_announced(fleet.announce_timeout)
        fleet.impostor = impostor
        yield fleet, rogue
    finally:
        fleet.close()


def test_manager_drives_a_migration_over_tls(fleet: tuple[TlsFleet, LocalCA]) -> None:
    f, _ = fleet
    assert f.url.startswith("https://") and all(
        a.url.startswith("https://") for a in f.agents.values()
    )
    with f.m() as m:
        for name, agent in f.agents.items():
            r = m.post("/v1/hosts", json={"url": agent.url, "name": name})
            assert r.status_code == 201, r.text
    device = f.create("a", NIC, "version=2")
    f.poll()
    with f.m() as m:
        r = m.post("/v1/migrations", json={"device": f"a/{device['id']}", "destination": "b"})
        assert r.status_code in (201, 202), r.text
        record: dict[str, Any] = wait_finished_record(
            m, f"/v1/migrations/{r.json()['id']}", what="migration"
        )
    assert record["outcome"] == "migrated", record
    with f.a("b") as b:
        assert b.get(f"/v1/devices/{record['destination_device_id']}").json()["running"]


def test_a_manager_with_a_wrong_certificate_is_refused(fleet: tuple[TlsFleet, LocalCA]) -> None:
    f, rogue = fleet
    impostor = f.impostor
    agent = f.agents["a"]
    with f.a("a") as a:
        before = a.get("/v1/devices").json()
    trust_impostor = ssl.create_default_context(
        cafile=str(rogue.cert)
    )  # its server certificate is the rogue's
    with httpx2.Client(
        base_url=impostor.url,
        headers={"Authorization": f"Bearer {f.manager_token}"},
        timeout=60,
        verify=trust_impostor,
    ) as m:
        r = m.post("/v1/hosts", json={"url": agent.url, "name": "a"})
    # registered, but its first poll could not complete a handshake: nothing was read from the agent
    assert r.status_code == 201, r.text
    host = r.json()
    assert (
        host["missed_polls"] == 1 and host["last_seen"] is None and host["fingerprint"] is None
    ), host
    assert host["devices"] == 0 and host["releases"] == {}
    with f.a("a") as a:
        assert a.get("/v1/devices").json() == before


def test_contexts_are_built_once_per_configuration(tmp_path: Path) -> None:
    ca = LocalCA.create(tmp_path)
    me = ca.issue(tmp_path, "me")
    config = TlsConfig(cert=me.cert, key=me.key, ca=ca.cert, client_certs=True)
    same = TlsConfig(cert=me.cert, key=me.key, ca=ca.cert, client_certs=True)
    assert client_tls(config) is client_tls(same)  # equal configurations share one context
    assert server_tls(config) is server_tls(same)
    assert server_tls(config).verify_mode == ssl.CERT_REQUIRED
    assert client_tls(TlsConfig(ca=ca.cert)) is not client_tls(config)
    assert client_tls() is client_tls()  # the process's own, from the environment
