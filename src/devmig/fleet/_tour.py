"""The guided tour (``devmig tour``): a real scenario against a running local fleet, step by step.

The scenario is data: :data:`STEPS` lists each step's title and the function
that runs it. A step makes real HTTP calls (to the manager, and to agents for
what only a host can tell: its report, a device's counters, the state digest
a side saw at switch-over) and follows each with a self-check, a
:class:`Check` that is ✓ or ✗. A call that fails is a ✗ check too, and the
tour goes on with the next step; the tour passes only if every check does.

What a step narrates goes to a :class:`Narrator` (rich on a terminal, plain
lines otherwise, or nothing when the caller prints JSON at the end).

Migrations and drains go through the manager (``POST /v1/migrations``,
``POST /v1/drains``). While a manager has no migration endpoint yet (404
``NOT_FOUND``), migrations fall back to the agents' own API — and the check
"through the manager" fails, so such a tour never passes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx2

from devmig._errors import DevmigError, Problem

__all__ = [
    "BUDGET_S",
    "STEPS",
    "Check",
    "Move",
    "Narrator",
    "SilentNarrator",
    "Step",
    "StepResult",
    "TourResult",
    "TourRun",
    "run_tour",
]

NIC = "example.org/devices/nic"
ACCEL = "example.org/devices/accel"
BUDGET_S = 120.0
"""The whole scenario (set-up excluded) must take at most this long."""
MIGRATION_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 90.0
POLL_S = 0.1
DIGEST_WAIT_S = 10.0
COUNTER_GAP_S = 0.3
"""Seconds between two reads of a device's counters (the workload ticks every 10 ms)."""
NEWER_ONLY_CONFIG = "version=2,link-speed=25G"
"""A NIC configuration only the newest release accepts (25G arrived in acme-nic 3.0.0)."""
DRAINED_HOST = "current-b"


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One self-check: what was checked, whether it held, and the evidence."""

    what: str
    ok: bool
    detail: str = ""


@dataclass
class Move:
    """One migration the tour started (or a drain started), as the manager recorded it."""

    step: str
    id: str
    device: str
    model: str
    source: str
    destination: str
    destination_device_id: str | None = None
    outcome: str | None = None
    downtime_ms: float | None = None
    bytes_sent: int = 0
    seconds: float = 0.0
    digest: str | None = None
    via: str = "manager"
    error: dict[str, Any] | None = None


@dataclass
class StepResult:
    """What one step did: its checks and how long it took."""

    key: str
    title: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every check held (a step without checks did not pass)."""
        return bool(self.checks) and all(c.ok for c in self.checks)


@dataclass
class TourResult:
    """The whole tour."""

    steps: list[StepResult]
    moves: list[Move]
    seconds: float

    @property
    def ok(self) -> bool:
        """Every step passed."""
        return bool(self.steps) and all(s.ok for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """The tour as JSON."""
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "steps": [{"key": s.key, "title": s.title, "ok": s.ok, "seconds": round(s.seconds, 3),
                       "checks": [asdict(c) for c in s.checks]} for s in self.steps],
            "moves": [asdict(m) for m in self.moves],
        }


class Narrator(Protocol):
    """Where the tour tells what happens."""

    def begin(self, index: int, total: int, title: str) -> None:
        """A step starts."""

    def say(self, text: str) -> None:
        """A line of narration (plain text, no markup)."""

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A small table."""

    def progress(self, label: str, phase: str, done: int, total: int | None) -> None:
        """A migration's progress: its phase and bytes sent (called often; show what changed)."""

    def check(self, check: Check) -> None:
        """A self-check's outcome."""

    def end(self, result: StepResult) -> None:
        """A step ended."""


class SilentNarrator:
    """A narrator that tells nothing (for ``--json``, where the result is printed at the end)."""

    def begin(self, index: int, total: int, title: str) -> None:
        """Nothing."""

    def say(self, text: str) -> None:
        """Nothing."""

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Nothing."""

    def progress(self, label: str, phase: str, done: int, total: int | None) -> None:
        """Nothing."""

    def check(self, check: Check) -> None:
        """Nothing."""

    def end(self, result: StepResult) -> None:
        """Nothing."""


# -- the run -----------------------------------------------------------------------------


class _StepFailed(Exception):
    """A step cannot go on (the reason is already a ✗ check)."""


def _mib(n: float) -> str:
    """Bytes for people: KiB below a MiB (a NIC's state is a few KiB), MiB above."""
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def _codes(problems: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(dict.fromkeys(str(p.get("code")) for p in problems)) or "-"


class TourRun:
    """The state of one tour against one local fleet (its ``state.json``).

    Args:
        state: the local fleet's state (manager and agent URLs, token, pool, devices).
        narrator: where to tell what happens.
    """

    def __init__(self, state: Mapping[str, Any], narrator: Narrator) -> None:
        self.state = state
        self.narrator = narrator
        self.manager = str(state["manager"]["url"])
        self.token = str(state["token"])
        self.pool = str(state["pool"])
        self.agents: dict[str, str] = {a["name"]: a["url"] for a in state["agents"]}
        self.releases: dict[str, dict[str, str]] = {a["name"]: dict(a["releases"]) for a in state["agents"]}
        self.devices: list[dict[str, Any]] = list(state["devices"])
        self.http = httpx2.Client(timeout=30)
        self.moves: list[Move] = []
        self.facts: dict[str, Any] = {}
        self.current: StepResult | None = None
        self.has_migrations = False
        self.has_drains = False

    def close(self) -> None:
        """Close the HTTP connections."""
        self.http.close()

    # -- narration and checks ----------------------------------------------------------------

    def say(self, text: str) -> None:
        """Narrate a line."""
        self.narrator.say(text)

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        """Record a self-check (and narrate it); return ``ok``."""
        check = Check(what, bool(ok), detail)
        assert self.current is not None
        self.current.checks.append(check)
        self.narrator.check(check)
        return check.ok

    def require(self, what: str, ok: bool, detail: str = "") -> None:
        """A check the rest of the step depends on: stop the step when it fails."""
        if not self.check(what, ok, detail):
            raise _StepFailed(what)

    # -- HTTP ----------------------------------------------------------------------------------

    def request(self, method: str, url: str, *, auth: bool = False, **kw: Any) -> httpx2.Response:
        """One HTTP request; a connection failure is ``TOUR_CALL_FAILED``."""
        headers = dict(kw.pop("headers", None) or {})
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            return self.http.request(method, url, headers=headers, **kw)
        except httpx2.HTTPError as exc:
            raise DevmigError([Problem("TOUR_CALL_FAILED", ("url",), f"{method} {url}: {exc}", value=url)]) from exc

    def call(self, method: str, url: str, *, auth: bool = False, ok: tuple[int, ...] = (200,), **kw: Any) -> Any:
        """One HTTP request expecting ``ok``; return the JSON body.

        Raises:
            DevmigError: the problems of an unexpected answer (``context["status"]``).
        """
        response = self.request(method, url, auth=auth, **kw)
        if response.status_code not in ok:
            from devmig.agent._client import remote_error

            raise remote_error(response)
        return response.json() if response.content else None

    def m(self, method: str, path: str, **kw: Any) -> Any:
        """A call to the manager."""
        return self.call(method, self.manager + path, **kw)

    def a(self, host: str, method: str, path: str, **kw: Any) -> Any:
        """A call to a host's agent."""
        return self.call(method, self.agents[host] + path, **kw)

    def poll(self) -> None:
        """Have the manager poll every host now (so it knows where every device is)."""
        self.m("POST", "/v1/poll", auth=True)

    def device_of(self, host: str, model: str, version: str | None = None) -> dict[str, Any]:
        """The first device the fleet started with on ``host`` of ``model`` (and ``version``)."""
        for d in self.devices:
            if d["host"] == host and d["model"] == model and (version is None or d.get("version") == version):
                return d
        raise DevmigError([Problem("TOUR_SETUP", ("devices",), f"the fleet has no {_short(model)} on {host}")])

    def counters_advance(self, host: str, device_id: str) -> tuple[bool, str]:
        """Whether a device runs on ``host`` and its workload counters advance; the evidence."""
        first = self.a(host, "GET", f"/v1/devices/{device_id}")
        time.sleep(COUNTER_GAP_S)
        second = self.a(host, "GET", f"/v1/devices/{device_id}")
        before, after = first["counters"]["steps"], second["counters"]["steps"]
        ok = bool(second["running"]) and after > before
        return ok, f"{device_id} on {host}: {second['state']}, steps {before} → {after}"

    def device_count(self, host: str) -> int:
        """How many devices the host's agent has."""
        return len(self.a(host, "GET", "/v1/devices")["devices"])

    # -- migrations ------------------------------------------------------------------------------

    def migrate(self, step: str, device: str, destination: str | None) -> Move:
        """Migrate ``HOST/ID`` through the manager and wait for it, narrating progress.

        Falls back to the agents' API while the manager has no ``/v1/migrations``.
        """
        host, _, device_id = device.partition("/")
        info = self.a(host, "GET", f"/v1/devices/{device_id}")
        started = time.monotonic()
        if self.has_migrations:
            record = self.m("POST", "/v1/migrations", auth=True, ok=(200, 202),
                            json={"device": device, "destination": destination})
            move = self._wait_manager(step, record, int(info["memory_bytes"]))
        else:
            move = self._agent_direct(step, host, device_id, destination or "", int(info["memory_bytes"]))
        move.seconds = move.seconds or time.monotonic() - started
        self.moves.append(move)
        return move

    def _wait_manager(self, step: str, record: dict[str, Any], memory: int) -> Move:
        mid = str(record["id"])
        label = f"{record['device']} → {record['destination']}"
        deadline = time.monotonic() + MIGRATION_TIMEOUT_S
        while not record.get("finished"):
            progress = record.get("progress") or {}
            self.narrator.progress(label, str(record.get("phase")), int(progress.get("bytes_sent") or 0), memory)
            if time.monotonic() > deadline:
                raise DevmigError([Problem("TOUR_TIMEOUT", ("migrations", mid),
                                           f"migration {mid} did not finish in {MIGRATION_TIMEOUT_S:.0f} s",
                                           value=record.get("phase"))])
            time.sleep(POLL_S)
            record = self.m("GET", f"/v1/migrations/{mid}")
        progress = record.get("progress") or {}
        self.narrator.progress(label, str(record.get("phase")), int(progress.get("bytes_sent") or 0), memory)
        return self.move_of(step, record)

    def move_of(self, step: str, record: Mapping[str, Any]) -> Move:
        """A manager migration record as a :class:`Move` (its time: the record's own span)."""
        progress = record.get("progress") or {}
        seconds = 0.0
        with contextlib.suppress(KeyError, TypeError, ValueError):  # the record's own span, planned → done
            seconds = (datetime.fromisoformat(record["updated_at"])
                       - datetime.fromisoformat(record["created_at"])).total_seconds()
        return Move(
            step=step, id=str(record["id"]), device=str(record["device"]), model=str(record.get("model") or ""),
            source=str(record["source"]), destination=str(record["destination"]),
            destination_device_id=record.get("destination_device_id"), outcome=record.get("outcome"),
            downtime_ms=record.get("downtime_ms"), bytes_sent=int(progress.get("bytes_sent") or 0),
            digest=record.get("digest"), error=record.get("error"), seconds=seconds,
        )

    def _agent_direct(self, step: str, host: str, device_id: str, destination: str, memory: int) -> Move:
        body = {"device_id": device_id,
                "destination": {"url": self.agents[destination], "token": self.token}}
        status = self.a(host, "POST", "/v1/migrations/outgoing", auth=True, ok=(202,), json=body)
        mid = str(status["migration_id"])
        label = f"{host}/{device_id} → {destination}"
        deadline = time.monotonic() + MIGRATION_TIMEOUT_S
        while not status["finished"]:
            self.narrator.progress(label, str(status["phase"]).lower(), int(status["bytes_sent"]), memory)
            if time.monotonic() > deadline:
                raise DevmigError([Problem("TOUR_TIMEOUT", ("migrations", mid), f"migration {mid} did not finish")])
            time.sleep(POLL_S)
            status = self.a(host, "GET", f"/v1/migrations/{mid}")
        self.narrator.progress(label, str(status["phase"]).lower(), int(status["bytes_sent"]), memory)
        return Move(step=step, id=mid, device=f"{host}/{device_id}", model=str(status.get("model") or ""),
                    source=host, destination=destination, destination_device_id=status.get("destination_device_id"),
                    outcome=status.get("outcome"), downtime_ms=status.get("downtime_ms"),
                    bytes_sent=int(status["bytes_sent"]), digest=status.get("digest"), via="agents",
                    error=status.get("error"))

    def side_digests(self, move: Move) -> tuple[str | None, str | None]:
        """The state digests each agent recorded at switch-over: ``(source, destination)``.

        The destination hashes a copy-on-write snapshot of the state it loaded off
        the critical path, so its digest may come a moment after the migration ended:
        wait for it (a few seconds at most).
        """
        source_id = move.device.partition("/")[2]
        found: dict[str, str | None] = {"source": None, "destination": None}
        deadline = time.monotonic() + DIGEST_WAIT_S
        while True:
            for role, host, wanted in (("source", move.source, source_id),
                                       ("destination", move.destination, move.destination_device_id)):
                if found[role] is None:
                    for m in self.a(host, "GET", "/v1/migrations")["migrations"]:
                        if m["role"] == role and m["device_id"] == wanted and m.get("digest"):
                            found[role] = m["digest"]
            if (found["source"] and found["destination"]) or time.monotonic() > deadline:
                return found["source"], found["destination"]
            time.sleep(POLL_S)

    def through_manager(self, move: Move) -> None:
        """Check that a move went through the manager (journalled)."""
        self.check("through the manager (POST /v1/migrations, journalled)", move.via == "manager",
                   "" if move.via == "manager" else "the manager has no /v1/migrations yet: agent-direct fallback")

    def check_moved(self, move: Move) -> None:
        """The checks of a successful move: outcome, equal digests, counters advancing, source released."""
        self.require(f"migrated ({move.device} → {move.destination})", move.outcome == "migrated",
                     f"outcome {move.outcome}" + (f", error {move.error.get('code')}: {move.error.get('message')}"
                                                  if move.error else ""))
        source_digest, destination_digest = self.side_digests(move)
        equal = bool(move.digest) and move.digest == destination_digest and (
            source_digest is None or source_digest == destination_digest)
        self.check("equal state digests at switch-over", equal,
                   f"record {(move.digest or '-')[:16]}…, source {(source_digest or '-')[:16]}…, "
                   f"destination {(destination_digest or '-')[:16]}…")
        assert move.destination_device_id is not None
        ok, evidence = self.counters_advance(move.destination, move.destination_device_id)
        self.check("workload counters still advancing on the destination", ok, evidence)
        source_host, _, source_id = move.device.partition("/")
        gone = self.request("GET", f"{self.agents[source_host]}/v1/devices/{source_id}").status_code == 404
        self.check(f"the source copy on {source_host} is released", gone, f"GET {source_id} on {source_host}")
        self.say(f"downtime {move.downtime_ms if move.downtime_ms is not None else '-'} ms, "
                 f"{_mib(move.bytes_sent)} sent, {move.seconds:.2f} s in all")


# -- the steps ---------------------------------------------------------------------------------


def step_query(t: TourRun) -> None:
    """Every agent's host report (``GET /v1/report``): its models and releases; the ETag; the manager's view."""
    rows, seen = [], {}
    for host, url in t.agents.items():
        response = t.request("GET", f"{url}/v1/report")
        report = response.json()
        impls = {i["implementation"]["name"]: i["implementation"]["release"] for i in report["implementations"]}
        models = sorted({m["model"] for i in report["implementations"] for m in i["models"]})
        versions = {m["model"]: [v["name"] for v in m["versions"]] for i in report["implementations"]
                    for m in i["models"]}
        rows.append([host, ", ".join(f"{k.removeprefix('acme-')} {v}" for k, v in sorted(impls.items())),
                     ", ".join(_short(m) for m in models), ",".join(versions.get(NIC, []))])
        seen[host] = (response, impls)
    t.say("GET /v1/report on each agent (the host report: every model document of every implementation)")
    t.narrator.table(["host", "releases", "models", "nic versions"], rows)
    for host, (response, impls) in seen.items():
        expected = {f"acme-{k}": v for k, v in t.releases[host].items()}
        t.check(f"{host} reports the releases it runs", response.status_code == 200 and impls == expected,
                ", ".join(f"{k} {v}" for k, v in sorted(impls.items())))
    etag = seen["oldest"][0].headers.get("etag")
    again = t.request("GET", f"{t.agents['oldest']}/v1/report", headers={"If-None-Match": etag or ""})
    t.check("asked again with its ETag: 304 Not Modified (cheap polling)", again.status_code == 304 and bool(etag),
            f"oldest, ETag {etag}")
    hosts = {h["name"]: h for h in t.m("GET", "/v1/hosts")["hosts"]}
    same = all(h in hosts and hosts[h]["reachable"] and
               hosts[h]["releases"] == {f"acme-{k}": v for k, v in t.releases[h].items()} for h in t.agents)
    t.check("the manager polled every host and holds the same releases", same,
            ", ".join(f"{n}: {'reachable' if h['reachable'] else 'unreachable'}" for n, h in sorted(hosts.items())))


def step_place(t: TourRun) -> None:
    """Place a NIC that only the newest release accepts: every other host is rejected with a code and a hint."""
    t.say(f"POST /v1/place: a VM with one {_short(NIC)} created as {NEWER_ONLY_CONFIG!r}")
    answer = t.m("POST", "/v1/place", json={"vm": [{"model": NIC, "config": NEWER_ONLY_CONFIG}]})
    accepted = [a["host"] for a in answer["accepted"]]
    t.say("accepted: " + (", ".join(accepted) or "none"))
    for host, reasons in answer["rejected"].items():
        for r in reasons:
            t.say(f"rejected {host}: {r['code']} at {'.'.join(map(str, r['loc']))} — {r['message']}"
                  + (f" (hint: {r['hint']})" if r.get("hint") else ""))
    t.check("only the newest host accepts it", accepted == ["newest"], f"accepted {accepted}")
    oldest = answer["rejected"].get("oldest", [])
    t.check("oldest is rejected with a stable code and a hint", bool(oldest) and all(
        r.get("code") and r.get("hint") for r in oldest), _codes(oldest))
    others = [h for h in t.agents if h != "newest"]
    t.check("every other host is rejected with its reasons", all(answer["rejected"].get(h) for h in others),
            "; ".join(f"{h}: {_codes(answer['rejected'].get(h, []))}" for h in others))


def step_baseline(t: TourRun) -> None:
    """The pool's baseline for the NIC; a device created with it on the newest host can go anywhere in the pool."""
    base = t.m("GET", f"/v1/pools/{t.pool}/baseline", params={"model": NIC})
    t.say(f"GET /v1/pools/{t.pool}/baseline?model={NIC}")
    t.say(f"newest version every member accepts: {base.get('version')} ({base.get('version_string')})")
    t.say(f"richest configuration every member accepts: {base.get('richest_string')}")
    t.require("a baseline exists and the oldest host bounds it (version 2; newest alone has 4)",
              base.get("version") == "2" and bool(base.get("version_string")),
              f"version {base.get('version')}, hosts {', '.join(base.get('hosts', []))}")
    device = t.a("newest", "POST", "/v1/devices", auth=True, ok=(201,),
                 json={"model": NIC, "config": base["version_string"]})
    t.check("created on newest with it: the device is that version", device["version"] == base["version"],
            f"{device['id']}: {device['string']}")
    t.devices.append({"host": "newest", "id": device["id"], "model": NIC, "config": device["string"],
                      "version": device["version"]})
    t.poll()
    answer = t.m("POST", "/v1/place", json={"vm": [{"device": f"newest/{device['id']}"}]})
    accepted = {a["host"] for a in answer["accepted"]}
    others = set(t.agents) - {"newest"}
    t.check("every other host of the pool accepts it (placement of the running device)", others <= accepted,
            "accepted " + ", ".join(sorted(accepted)))


def step_upgrade(t: TourRun) -> None:
    """Migrate the oldest host's accelerator to the newest host (an upgrade), through the manager."""
    device = t.device_of("oldest", ACCEL)
    t.say(f"POST /v1/migrations: oldest/{device['id']} ({_short(ACCEL)} {device['config']}) → newest")
    move = t.migrate("upgrade", f"oldest/{device['id']}", "newest")
    t.through_manager(move)
    t.check_moved(move)
    t.facts["upgraded"] = move


def step_rollback(t: TourRun) -> None:
    """Move the upgraded accelerator back to the oldest host (a rollback)."""
    upgraded: Move | None = t.facts.get("upgraded")
    t.require("the upgrade step moved a device", upgraded is not None and upgraded.outcome == "migrated")
    assert upgraded is not None and upgraded.destination_device_id is not None
    t.poll()
    t.say(f"POST /v1/migrations: newest/{upgraded.destination_device_id} → oldest")
    move = t.migrate("rollback", f"newest/{upgraded.destination_device_id}", "oldest")
    t.through_manager(move)
    t.check_moved(move)


def step_refused(t: TourRun) -> None:
    """Ask to move a ``version=4`` NIC to the oldest host: refused before anything moved."""
    device = t.device_of("newest", NIC, "4")
    ref = f"newest/{device['id']}"
    before = t.device_count("oldest")
    t.say(f"POST /v1/migrations: {ref} ({_short(NIC)} version=4) → oldest")
    if t.has_migrations:
        response = t.request("POST", t.manager + "/v1/migrations", auth=True,
                             json={"device": ref, "destination": "oldest"})
    else:
        response = t.request("POST", t.agents["newest"] + "/v1/migrations/outgoing", auth=True,
                             json={"device_id": device["id"],
                                   "destination": {"url": t.agents["oldest"], "token": t.token}})
    body = response.json() if response.content else {}
    problems = body.get("errors", []) if isinstance(body, dict) else []
    for p in problems[:6]:
        t.say(f"  {p.get('code')} at {'.'.join(map(str, p.get('loc', [])))}: {p.get('message')}")
    t.check("refused with 409 and the reasons", response.status_code == 409 and bool(problems),
            f"{response.status_code} {_codes(problems)}")
    after = t.device_count("oldest")
    t.check("nothing moved: oldest's device count unchanged", before == after, f"{before} → {after}")
    ok, evidence = t.counters_advance("newest", device["id"])
    t.check("the source still runs, counters advancing", ok, evidence)
    if t.has_migrations:
        active = t.m("GET", "/v1/migrations", params={"active": "true"})["migrations"]
        t.check("no migration of it is left unfinished", not [m for m in active if m["device"] == ref],
                f"{len(active)} active")


def step_drain(t: TourRun) -> None:
    """Drain one host through the manager: it is cordoned and every device it runs moves elsewhere."""
    host = DRAINED_HOST
    t.require("the manager has the drain API (POST /v1/drains)", t.has_drains,
              "" if t.has_drains else "404: not built yet")
    before = t.a(host, "GET", "/v1/devices")["devices"]
    t.say(f"{host} runs {len(before)} devices: " + ", ".join(f"{_short(d['model'])} {d['id']}" for d in before))
    t.poll()
    drain = t.m("POST", "/v1/drains", auth=True, ok=(202,),
                json={"host": host, "partial": False, "dry_run": False, "parallel": 1})
    t.say("plan: " + "; ".join(f"{p['device']} ({_short(p['model'])}) → {p['destination']}" for p in drain["plan"]))
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    started = time.monotonic()
    while not drain["finished"]:
        if drain["migrations"]:  # the drain names a migration (write-ahead) a moment before it exists
            answer = t.request("GET", f"{t.manager}/v1/migrations/{drain['migrations'][-1]}")
            if answer.status_code == 200:
                record = answer.json()
                progress = record.get("progress") or {}
                t.narrator.progress(f"{record['device']} → {record['destination']}", str(record["phase"]),
                                    int(progress.get("bytes_sent") or 0), None)
        if time.monotonic() > deadline:
            t.require("the drain finished in time", False, f"phase {drain['phase']}")
        time.sleep(POLL_S)
        drain = t.m("GET", f"/v1/drains/{drain['id']}")
    seconds = time.monotonic() - started
    moves = [t.move_of("drain", t.m("GET", f"/v1/migrations/{mid}")) for mid in drain["migrations"]]
    for move in moves:
        t.moves.append(move)
        t.say(f"{move.device} → {move.destination}: {move.outcome}, downtime {move.downtime_ms} ms, "
              f"{_mib(move.bytes_sent)}")
    t.check("the drain is done", drain["phase"] == "done", f"phase {drain['phase']} in {seconds:.2f} s")
    planned = {p["device"] for p in drain["plan"]}
    t.check("the plan covers every device the host ran", planned == {f"{host}/{d['id']}" for d in before},
            f"{len(planned)} planned of {len(before)}")
    t.check("every planned device migrated", len(moves) == len(before) and all(
        m.outcome == "migrated" for m in moves), ", ".join(f"{m.device}: {m.outcome}" for m in moves))
    left = t.device_count(host)
    t.check(f"{host} runs no device now", left == 0, f"{left} left")
    for move in moves:
        if move.outcome == "migrated" and move.destination_device_id:
            ok, evidence = t.counters_advance(move.destination, move.destination_device_id)
            t.check(f"{_short(move.model)} running on {move.destination}, counters advancing", ok, evidence)
    view = t.m("GET", f"/v1/hosts/{host}")
    t.check(f"{host} stays cordoned (out of placement)", bool(view.get("cordoned")), f"cordoned {view.get('cordoned')}")


def step_summary(t: TourRun) -> None:
    """Every move of the tour, its downtime and bytes, and the time each step took."""
    rows = [[m.step, f"{_short(m.model)} {m.device}", f"{m.source} → {m.destination}", str(m.outcome),
             f"{m.downtime_ms:.1f} ms" if m.downtime_ms is not None else "-", _mib(m.bytes_sent),
             f"{m.seconds:.2f} s", m.via] for m in t.moves]
    t.narrator.table(["step", "device", "move", "outcome", "downtime", "bytes", "time", "via"], rows)
    done: list[StepResult] = t.facts.get("results", [])
    t.narrator.table(["step", "result", "time"],
                     [[r.title, "✓" if r.ok else "✗", f"{r.seconds:.2f} s"] for r in done])
    total = sum(r.seconds for r in done)
    migrated = [m for m in t.moves if m.outcome == "migrated"]
    t.say(f"{len(migrated)} moves, {sum(m.bytes_sent for m in migrated) / (1 << 20):.1f} MiB sent, "
          f"downtime max {max((m.downtime_ms or 0.0) for m in migrated) if migrated else 0:.1f} ms")
    t.check("every move migrated", bool(t.moves) and len(migrated) == len(t.moves),
            f"{len(migrated)} of {len(t.moves)}")
    t.check(f"the scenario took at most {BUDGET_S:.0f} s", total <= BUDGET_S, f"{total:.1f} s")


@dataclass(frozen=True)
class Step:
    """One step of the scenario: a key, a title, and the function making its calls and checks."""

    key: str
    title: str
    run: Callable[[TourRun], None]


STEPS: tuple[Step, ...] = (
    Step("query", "What each host reports (the query mechanism)", step_query),
    Step("place", "A placement with rejected hosts, their codes and hints", step_place),
    Step("baseline", "The pool baseline, and a device created with it", step_baseline),
    Step("upgrade", "An upgrade migration: oldest → newest", step_upgrade),
    Step("rollback", "A rollback migration: newest → oldest", step_rollback),
    Step("refused", "A migration refused before anything moved", step_refused),
    Step("drain", f"A drain of host {DRAINED_HOST}", step_drain),
    Step("summary", "Summary: moves, downtime, bytes, time per step", step_summary),
)
"""The scenario, in order."""


def _has(t: TourRun, path: str) -> bool:
    response = t.request("GET", t.manager + path)
    return response.status_code == 200


def run_tour(state: Mapping[str, Any], narrator: Narrator, *, steps: Sequence[Step] = STEPS) -> TourResult:
    """Run the scenario against the local fleet described by ``state``; return every step's checks.

    Never raises for a failing call: it becomes a ✗ check of its step.
    """
    t = TourRun(state, narrator)
    results: list[StepResult] = []
    t.facts["results"] = results
    started = time.monotonic()
    try:
        try:
            t.has_migrations = _has(t, "/v1/migrations")
            t.has_drains = _has(t, "/v1/drains")
        except DevmigError:
            pass
        for index, step in enumerate(steps, 1):
            result = StepResult(step.key, step.title)
            t.current = result
            narrator.begin(index, len(steps), step.title)
            begun = time.monotonic()
            try:
                step.run(t)
            except _StepFailed:
                pass
            except DevmigError as exc:
                p = exc.problems[0] if exc.problems else None
                status = p.context.get("status") if p else None
                t.check("the calls succeed", False, f"{exc.code}" + (f" (HTTP {status})" if status else "")
                        + f": {p.message if p else exc}")
            except (KeyError, TypeError, ValueError) as exc:  # an answer not shaped as the contract says
                t.check("the answers have the documented shape", False, f"{type(exc).__name__}: {exc}")
            result.seconds = time.monotonic() - begun
            results.append(result)
            narrator.end(result)
    finally:
        t.close()
    return TourResult(results, t.moves, time.monotonic() - started)
