"""Block-device images live only in the agent's image directory (a real agent process on loopback)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_processes import AgentProcess, Agents

BLK = "example.org/devices/blk"
SIZE = 4 << 20


@pytest.fixture(scope="module")
def agent(module_agents: Agents) -> Iterator[AgentProcess]:
    yield module_agents.start("img")


def images(agent: AgentProcess) -> Path:
    return agent.state_dir.parent / "images"


def create(agent: AgentProcess, host: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with agent.client() as c:
        r = c.post("/v1/devices", json={"model": BLK, "config": "version=1", "host": host})
        return r.status_code, r.json()


def image(agent: AgentProcess, name: str) -> Path:
    path = images(agent) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(SIZE))
    return path


def codes(answer: dict[str, Any]) -> list[str]:
    return [e["code"] for e in answer["errors"]]


@pytest.mark.parametrize("name", ["rel.img", "sub/rel.img"])
def test_relative_and_absolute_names_inside_the_directory(agent: AgentProcess, name: str) -> None:
    path = image(agent, name)
    for given in (name, str(path)):
        status, dev = create(agent, {"image": given})
        assert status == 201, dev
        assert dev["host"]["image"] == str(path.resolve())
        with agent.client() as c:
            assert c.delete(f"/v1/devices/{dev['id']}").status_code == 204
        assert path.exists()  # the client's image stays


def test_outside_the_directory_says_nothing_about_what_is_there(agent: AgentProcess, tmp_path: Path) -> None:
    there = tmp_path / "victim.img"
    there.write_bytes(b"precious" * (SIZE // 8))
    answers = []
    for given in (str(there), str(tmp_path / "missing.img"), "../victim.img", "sub/../../x.img", "/etc/passwd"):
        status, answer = create(agent, {"image": given})
        assert status == 422 and codes(answer) == ["IMAGE_OUTSIDE"], answer
        answers.append({k: v for k, v in answer["errors"][0].items() if k != "value"})
    assert all(a == answers[0] for a in answers)  # an existing file and a missing one answer alike
    assert there.read_bytes()[:8] == b"precious"


def test_symbolic_links_are_not_followed(agent: AgentProcess, tmp_path: Path) -> None:
    victim = tmp_path / "victim.img"
    victim.write_bytes(bytes(SIZE))
    link = images(agent) / "link.img"
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    linked_dir = images(agent) / "linkdir"
    linked_dir.unlink(missing_ok=True)
    linked_dir.symlink_to(tmp_path)
    inside = image(agent, "target.img")
    inner_link = images(agent) / "inner-link.img"
    inner_link.unlink(missing_ok=True)
    inner_link.symlink_to(inside)  # even a link to an image inside is refused
    for given in ("link.img", "linkdir/victim.img", "inner-link.img"):
        status, answer = create(agent, {"image": given})
        assert status == 422 and codes(answer) == ["IMAGE_SYMLINK"], answer
        assert str(tmp_path) not in str(answer)


def test_one_device_per_image_also_through_a_hard_link(agent: AgentProcess) -> None:
    path = image(agent, "shared-once.img")
    hard = images(agent) / "hard.img"
    hard.unlink(missing_ok=True)
    os.link(path, hard)
    status, first = create(agent, {"image": "shared-once.img"})
    assert status == 201, first
    for given in ("shared-once.img", "hard.img"):
        status, answer = create(agent, {"image": given})
        assert status == 409 and codes(answer) == ["IMAGE_IN_USE"], answer
    with agent.client() as c:
        assert c.delete(f"/v1/devices/{first['id']}").status_code == 204
    status, again = create(agent, {"image": "hard.img"})  # free again once the device is gone
    assert status == 201, again
    with agent.client() as c:
        c.delete(f"/v1/devices/{again['id']}")


def test_not_a_regular_file(agent: AgentProcess) -> None:
    fifo = images(agent) / "fifo.img"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    (images(agent) / "adir").mkdir(exist_ok=True)
    for given in ("fifo.img", "adir"):
        status, answer = create(agent, {"image": given})
        assert status in (400, 422) and codes(answer) == ["IMAGE_INVALID"], answer


def test_an_image_the_agent_made_goes_with_its_device(agent: AgentProcess) -> None:
    status, dev = create(agent, {})
    assert status == 201, dev
    made = Path(dev["host"]["image"])
    assert made.exists() and made.parent == images(agent).resolve()
    with agent.client() as c:
        assert c.delete(f"/v1/devices/{dev['id']}").status_code == 204
    assert not made.exists()


def test_incoming_is_confined_too(agent: AgentProcess, tmp_path: Path) -> None:
    victim = tmp_path / "victim.img"
    victim.write_bytes(bytes(SIZE))
    body = {"migration_id": "m-img-outside", "model": BLK, "source": {"url": "http://127.0.0.1:1", "host": "x"},
            "config": {}, "host": {"image": str(victim)}}
    with agent.client() as c:
        r = c.post("/v1/migrations/incoming", json=body)
    assert r.status_code == 422 and codes(r.json()) == ["IMAGE_OUTSIDE"], r.text
