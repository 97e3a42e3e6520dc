"""The guided tour (``devmig tour``): a real scenario against a running local fleet, step by step.

The scenario is data: :data:`STEPS` lists each step's title and the function
that runs it. A step makes real HTTP calls (to the manager, and to agents for
what only a host can tell: its report, a device's counters, the state digest
a side saw at switch-over) and follows each with a self-check, a
:class:`Check` that is ✓ or ✗. A call that fails is a ✗ check too, and the
tour goes on with the next step; the tour passes only if every check does.
Migrations and drains go through the manager (``POST /v1/migrations``,
``POST /v1/drains``), journalled.

What a step narrates goes to a :class:`Narrator` (rich on a terminal, plain
lines otherwise, or nothing when the caller prints JSON at the end); the
machinery is in :mod:`devmig.local._tour_run`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devmig._errors import DevmigError
from devmig._humanize import size
from devmig.local._tour_run import (
    DRAIN_TIMEOUT_S,
    POLL_S,
    Check,
    Move,
    Narrator,
    SilentNarrator,
    StepFailed,
    StepResult,
    TourResult,
    TourRun,
    codes,
    short,
)

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
NEWER_ONLY_CONFIG = "version=2,link-speed=25G"
"""A NIC configuration only the newest release accepts (25G arrived in acme-nic 3.0.0)."""
DRAINED_HOST = "current-b"


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
                     ", ".join(short(m) for m in models), ",".join(versions.get(NIC, []))])
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
    t.say(f"POST /v1/place: a VM with one {short(NIC)} created as {NEWER_ONLY_CONFIG!r}")
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
        r.get("code") and r.get("hint") for r in oldest), codes(oldest))
    others = [h for h in t.agents if h != "newest"]
    t.check("every other host is rejected with its reasons", all(answer["rejected"].get(h) for h in others),
            "; ".join(f"{h}: {codes(answer['rejected'].get(h, []))}" for h in others))


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
    t.say(f"POST /v1/migrations: oldest/{device['id']} ({short(ACCEL)} {device['config']}) → newest")
    move = t.migrate("upgrade", f"oldest/{device['id']}", "newest")
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
    t.check_moved(move)


def step_refused(t: TourRun) -> None:
    """Ask to move a ``version=4`` NIC to the oldest host: refused before anything moved."""
    device = t.device_of("newest", NIC, "4")
    ref = f"newest/{device['id']}"
    before = t.device_count("oldest")
    t.say(f"POST /v1/migrations: {ref} ({short(NIC)} version=4) → oldest")
    response = t.request("POST", t.manager + "/v1/migrations", auth=True, json={"device": ref, "destination": "oldest"})
    body = response.json() if response.content else {}
    problems = body.get("errors", []) if isinstance(body, dict) else []
    for p in problems[:6]:
        t.say(f"  {p.get('code')} at {'.'.join(map(str, p.get('loc', [])))}: {p.get('message')}")
    t.check("refused with 409 and the reasons", response.status_code == 409 and bool(problems),
            f"{response.status_code} {codes(problems)}")
    after = t.device_count("oldest")
    t.check("nothing moved: oldest's device count unchanged", before == after, f"{before} → {after}")
    ok, evidence = t.counters_advance("newest", device["id"])
    t.check("the source still runs, counters advancing", ok, evidence)
    active = t.m("GET", "/v1/migrations", params={"active": "true"})["migrations"]
    t.check("no migration of it is left unfinished", not [m for m in active if m["device"] == ref],
            f"{len(active)} active")


def step_drain(t: TourRun) -> None:
    """Drain one host through the manager: it is cordoned and every device it runs moves elsewhere."""
    host = DRAINED_HOST
    before = t.a(host, "GET", "/v1/devices")["devices"]
    t.say(f"{host} runs {len(before)} devices: " + ", ".join(f"{short(d['model'])} {d['id']}" for d in before))
    t.poll()
    drain = t.m("POST", "/v1/drains", auth=True, ok=(202,),
                json={"host": host, "partial": False, "dry_run": False, "parallel": 1})
    t.say("plan: " + "; ".join(f"{p['device']} ({short(p['model'])}) → {p['destination']}" for p in drain["plan"]))
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
              f"{size(move.bytes_sent)}")
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
            t.check(f"{short(move.model)} running on {move.destination}, counters advancing", ok, evidence)
    view = t.m("GET", f"/v1/hosts/{host}")
    t.check(f"{host} stays cordoned (out of placement)", bool(view.get("cordoned")), f"cordoned {view.get('cordoned')}")


def step_summary(t: TourRun) -> None:
    """Every move of the tour, its downtime and bytes, and the time each step took."""
    rows = [[m.step, f"{short(m.model)} {m.device}", f"{m.source} → {m.destination}", str(m.outcome),
             f"{m.downtime_ms:.1f} ms" if m.downtime_ms is not None else "-", size(m.bytes_sent),
             f"{m.seconds:.2f} s"] for m in t.moves]
    t.narrator.table(["step", "device", "move", "outcome", "downtime", "bytes", "time"], rows)
    done: list[StepResult] = t.facts.get("results", [])
    t.narrator.table(["step", "result", "time"],
                     [[r.title, "✓" if r.ok else "✗", f"{r.seconds:.2f} s"] for r in done])
    total = sum(r.seconds for r in done)
    migrated = [m for m in t.moves if m.outcome == "migrated"]
    t.say(f"{len(migrated)} moves, {size(sum(m.bytes_sent for m in migrated))} sent, "
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


def run_tour(state: Mapping[str, Any], narrator: Narrator, *, steps: Sequence[Step] = STEPS) -> TourResult:
    """Run the scenario against the local fleet described by ``state``; return every step's checks.

    Never raises for a failing call: it becomes a ✗ check of its step.
    """
    t = TourRun(state, narrator)
    results: list[StepResult] = []
    t.facts["results"] = results
    started = time.monotonic()
    try:
        for index, step in enumerate(steps, 1):
            result = StepResult(step.key, step.title)
            t.current = result
            narrator.begin(index, len(steps), step.title)
            begun = time.monotonic()
            try:
                step.run(t)
            except StepFailed:
                pass
            except DevmigError as exc:
                p = exc.problems[0] if exc.problems else None
                t.check("the calls succeed", False, f"{exc.code}: {p.message if p else exc}")
            except (KeyError, TypeError, ValueError) as exc:  # an answer not shaped as the contract says
                t.check("the answers have the documented shape", False, f"{type(exc).__name__}: {exc}")
            result.seconds = time.monotonic() - begun
            results.append(result)
            narrator.end(result)
    finally:
        t.close()
    return TourResult(results, t.moves, time.monotonic() - started)
