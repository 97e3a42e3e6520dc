"""The machinery of the guided tour: results, narrators, and :class:`TourRun` (calls, checks, migrations).

:mod:`devmig.local._tour` holds the scenario itself. A :class:`TourRun`
talks HTTP to the manager and the agents of a local fleet (its
``state.json``), records self-checks (:class:`Check`) for the step that
runs, and migrates devices through the manager while narrating progress.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx2

from devmig._errors import DevmigError, Problem
from devmig._humanize import size
from devmig._tls import TlsConfig, client_tls

__all__ = [
    "DRAIN_TIMEOUT_S",
    "POLL_S",
    "Check",
    "Move",
    "Narrator",
    "SilentNarrator",
    "StepFailed",
    "StepResult",
    "TourResult",
    "TourRun",
    "codes",
    "short",
    "size",
]

MIGRATION_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 90.0
POLL_S = 0.1
DIGEST_WAIT_S = 10.0
COUNTER_GAP_S = 0.3
"""Seconds between two reads of a device's counters (the workload ticks every 10 ms)."""


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
    phases: list[str] = field(default_factory=list)
    """The phases the manager journalled, in order."""
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


class StepFailed(Exception):
    """A step cannot go on (the reason is already a ✗ check)."""


def short(model: str) -> str:
    """``example.org/devices/nic`` → ``nic``."""
    return model.rsplit("/", 1)[-1]


def codes(problems: Sequence[Mapping[str, Any]]) -> str:
    """The distinct codes of problems, comma-separated."""
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
        files = state.get("tls")  # the fleet's CA and the operator's client certificate (None: plain TCP)
        tls = TlsConfig(ca=Path(files["ca"]), cert=Path(files["cert"]), key=Path(files["key"])) if files else None
        self.http = httpx2.Client(timeout=30, verify=client_tls(tls))
        self.moves: list[Move] = []
        self.facts: dict[str, Any] = {}
        self.current: StepResult | None = None

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
            raise StepFailed(what)

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
            DevmigError: the problems of an unexpected answer.
        """
        response = self.request(method, url, auth=auth, **kw)
        if response.status_code not in ok:
            from devmig.agent import remote_error

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
        raise DevmigError([Problem("TOUR_SETUP", ("devices",), f"the fleet has no {short(model)} on {host}")])

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
        """Migrate ``HOST/ID`` through the manager (``POST /v1/migrations``) and wait for it, narrating progress."""
        host, _, device_id = device.partition("/")
        info = self.a(host, "GET", f"/v1/devices/{device_id}")
        started = time.monotonic()
        record = self.m("POST", "/v1/migrations", auth=True, ok=(200, 202),
                        json={"device": device, "destination": destination})
        move = self._wait_manager(step, record, int(info["memory_bytes"]))
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
            phases=[str(h.get("phase")) for h in record.get("history") or []],
        )

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

    def check_moved(self, move: Move) -> None:
        """The checks of a successful move: outcome, equal digests, counters advancing, source released."""
        self.require(f"migrated ({move.device} → {move.destination})", move.outcome == "migrated",
                     f"outcome {move.outcome}" + (f", error {move.error.get('code')}: {move.error.get('message')}"
                                                  if move.error else ""))
        self.check("journalled by the manager, planned → done", move.phases[:1] == ["planned"]
                   and move.phases[-1:] == ["done"], " → ".join(move.phases))
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
                 f"{size(move.bytes_sent)} sent, {move.seconds:.2f} s in all")
