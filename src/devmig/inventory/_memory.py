"""The in-memory twin of the inventory: same API and rules as the SQL one, no database."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from devmig.inventory._interface import (
    DEFAULT_MAX_MISSED,
    DeviceRecord,
    HistoryEntry,
    HostSnapshot,
    HostView,
    InventorySnapshot,
    RunState,
    inventory_error,
    profile_documents,
    report_profile,
    require_open,
)
from devmig.inventory._journal import Journal, MemoryJournalStore, utc
from devmig.model import HostReport, ModelDocument

__all__ = ["MemoryInventory"]


@dataclass
class _Host:
    view: HostView
    history: list[HistoryEntry] = field(default_factory=list)
    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    agent_token: str | None = None


class MemoryInventory:
    """An :class:`~devmig.inventory.Inventory` held in dicts (tests, embedded use).

    Not thread-safe; use it from one thread (or one event loop).
    """

    def __init__(self) -> None:
        self.state = RunState.NEW
        self._hosts: dict[str, _Host] = {}
        self._profiles: dict[str, tuple[str, tuple[ModelDocument, ...]]] = {}
        self._pools: dict[str, set[str]] = {}
        self._journals: dict[str, MemoryJournalStore] = {}  # by table

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """Open the inventory (``INVENTORY_STATE`` unless it is new)."""
        require_open(self.state, RunState.NEW)
        self.state = RunState.OPEN

    def close(self) -> None:
        """Close the inventory; it cannot be reopened."""
        self.state = RunState.CLOSED

    def __enter__(self) -> MemoryInventory:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hosts ---------------------------------------------------------------------

    def _host(self, name: str) -> _Host:
        require_open(self.state)
        try:
            return self._hosts[name]
        except KeyError:
            raise inventory_error("HOST_UNKNOWN", ("host", name), f"no host named {name!r}",
                                  value=name) from None

    def _check_url(self, name: str, url: str) -> None:
        existing = self._hosts.get(name)
        if existing is not None and existing.view.url != url:
            raise inventory_error(
                "HOST_CONFLICT", ("host", name),
                f"host {name!r} is registered at {existing.view.url}, not {url}", value=url,
            )
        for other in self._hosts.values():
            if other.view.url == url and other.view.name != name:
                raise inventory_error(
                    "HOST_CONFLICT", ("url", url),
                    f"{url} belongs to host {other.view.name!r}, not {name!r}", value=name,
                )

    def add_host(self, name: str, url: str) -> None:
        """See :meth:`Inventory.add_host`."""
        require_open(self.state)
        self._check_url(name, url)
        if name not in self._hosts:
            self._hosts[name] = _Host(HostView(name, url, None, False, True, 0, None, None, 0, 0))

    def set_agent_token(self, name: str, sealed: str | None) -> None:
        """See :meth:`Inventory.set_agent_token`."""
        self._host(name).agent_token = sealed

    def agent_tokens(self) -> dict[str, str]:
        """See :meth:`Inventory.agent_tokens`."""
        require_open(self.state)
        return {n: h.agent_token for n, h in self._hosts.items() if h.agent_token is not None}

    def remove_host(self, name: str) -> None:
        """See :meth:`Inventory.remove_host`."""
        self._host(name)
        del self._hosts[name]
        for members in self._pools.values():
            members.discard(name)

    def _view(self, name: str) -> HostView:
        host = self._hosts[name]
        pools = tuple(sorted(p for p, members in self._pools.items() if name in members))
        return replace(host.view, pools=pools)

    def get_host(self, name: str) -> HostView:
        """See :meth:`Inventory.get_host`."""
        self._host(name)
        return self._view(name)

    def list_hosts(self) -> list[HostView]:
        """See :meth:`Inventory.list_hosts`."""
        require_open(self.state)
        return [self._view(name) for name in sorted(self._hosts)]

    # -- reports -------------------------------------------------------------------

    def _store(self, host: _Host, report: HostReport, now: datetime) -> bool:
        if report.host != host.view.name:
            raise inventory_error(
                "HOST_MISMATCH", ("report", "host"),
                f"the report of {host.view.name!r} names host {report.host!r}", value=report.host,
            )
        fingerprint, canonical = report_profile(report)
        if fingerprint not in self._profiles:
            self._profiles[fingerprint] = (canonical, profile_documents(canonical))
        changed = host.view.fingerprint != fingerprint
        if changed:
            host.history.append(HistoryEntry(fingerprint, now, now))
        else:
            host.history[-1] = replace(host.history[-1], last_seen=now)
        host.view = replace(host.view, fingerprint=fingerprint)
        return changed

    def record_report(self, host: str, report: HostReport, etag: str | None,
                      now: datetime) -> bool:
        """See :meth:`Inventory.record_report`."""
        now = utc(now)
        entry = self._host(host)
        changed = self._store(entry, report, now)
        entry.view = replace(entry.view, reachable=True, missed_polls=0, last_seen=now,
                             last_etag=etag)
        return changed

    def record_unchanged(self, host: str, now: datetime) -> None:
        """See :meth:`Inventory.record_unchanged`."""
        now = utc(now)
        entry = self._host(host)
        if entry.history:
            entry.history[-1] = replace(entry.history[-1], last_seen=now)
        entry.view = replace(entry.view, reachable=True, missed_polls=0, last_seen=now)

    def record_poll_failure(self, host: str, now: datetime, *,
                            max_missed: int = DEFAULT_MAX_MISSED) -> bool:
        """See :meth:`Inventory.record_poll_failure`."""
        entry = self._host(host)
        missed = entry.view.missed_polls + 1
        reachable = entry.view.reachable and missed < max_missed
        entry.view = replace(entry.view, missed_polls=missed, reachable=reachable)
        return reachable

    def record_devices(self, host: str, devices: Sequence[DeviceRecord]) -> None:
        """See :meth:`Inventory.record_devices`."""
        entry = self._host(host)
        entry.devices = {d.id: replace(d, config=copy.deepcopy(dict(d.config))) for d in devices}
        entry.view = replace(entry.view, device_count=len(entry.devices),
                             load=sum(1 for d in entry.devices.values() if d.running))

    def list_devices(self, host: str) -> list[DeviceRecord]:
        """See :meth:`Inventory.list_devices`."""
        entry = self._host(host)
        return [entry.devices[k] for k in sorted(entry.devices)]

    def devices_by_host(self, hosts: Sequence[str] | None = None) -> dict[str, list[DeviceRecord]]:
        """See :meth:`Inventory.devices_by_host`."""
        require_open(self.state)
        names = sorted(self._hosts) if hosts is None else dict.fromkeys(hosts)
        out: dict[str, list[DeviceRecord]] = {}
        for name in names:
            entry = self._hosts.get(name)
            if entry is not None:
                out[name] = [entry.devices[k] for k in sorted(entry.devices)]
        return out

    def history(self, host: str) -> list[HistoryEntry]:
        """See :meth:`Inventory.history`."""
        return list(self._host(host).history)

    def profile(self, fingerprint: str) -> tuple[ModelDocument, ...] | None:
        """See :meth:`Inventory.profile`."""
        require_open(self.state)
        stored = self._profiles.get(fingerprint)
        return None if stored is None else stored[1]

    def register_reports(self, items: Sequence[tuple[str, str, HostReport]],
                         now: datetime) -> int:
        """See :meth:`Inventory.register_reports` (all or nothing, like the SQL one)."""
        require_open(self.state)
        now = utc(now)
        urls = {h.view.name: h.view.url for h in self._hosts.values()}
        owners = {url: name for name, url in urls.items()}
        for name, url, report in items:  # check everything first: all or nothing
            if urls.setdefault(name, url) != url or owners.setdefault(url, name) != name:
                self._check_url(name, url)
                raise inventory_error("HOST_CONFLICT", ("host", name),
                                      f"host {name!r} and {url} clash within the batch", value=url)
            if report.host != name:
                raise inventory_error(
                    "HOST_MISMATCH", ("report", "host"),
                    f"the report of {name!r} names host {report.host!r}", value=report.host,
                )
        changed = 0
        for name, url, report in items:
            self.add_host(name, url)
            entry = self._hosts[name]
            changed += self._store(entry, report, now)
            entry.view = replace(entry.view, reachable=True, missed_polls=0, last_seen=now,
                                 last_etag=None)
        return changed

    # -- pools, cordon ------------------------------------------------------------------

    def _pool(self, name: str) -> set[str]:
        require_open(self.state)
        try:
            return self._pools[name]
        except KeyError:
            raise inventory_error("POOL_UNKNOWN", ("pool", name), f"no pool named {name!r}",
                                  value=name) from None

    def create_pool(self, name: str) -> None:
        """See :meth:`Inventory.create_pool`."""
        require_open(self.state)
        if name in self._pools:
            raise inventory_error("POOL_CONFLICT", ("pool", name), f"pool {name!r} exists",
                                  value=name)
        self._pools[name] = set()

    def delete_pool(self, name: str) -> None:
        """See :meth:`Inventory.delete_pool`."""
        self._pool(name)
        del self._pools[name]

    def add_to_pool(self, pool: str, host: str) -> None:
        """See :meth:`Inventory.add_to_pool`."""
        members = self._pool(pool)
        self._host(host)
        members.add(host)

    def remove_from_pool(self, pool: str, host: str) -> None:
        """See :meth:`Inventory.remove_from_pool`."""
        members = self._pool(pool)
        self._host(host)
        members.discard(host)

    def list_pools(self) -> dict[str, list[str]]:
        """See :meth:`Inventory.list_pools`."""
        require_open(self.state)
        return {name: sorted(self._pools[name]) for name in sorted(self._pools)}

    def cordon(self, host: str) -> None:
        """See :meth:`Inventory.cordon`."""
        entry = self._host(host)
        entry.view = replace(entry.view, cordoned=True)

    def uncordon(self, host: str) -> None:
        """See :meth:`Inventory.uncordon`."""
        entry = self._host(host)
        entry.view = replace(entry.view, cordoned=False)

    def snapshot(self) -> InventorySnapshot:
        """See :meth:`Inventory.snapshot`."""
        views = self.list_hosts()
        hosts = tuple(
            HostSnapshot(v.name, v.url, v.fingerprint, v.cordoned, v.reachable, v.pools, v.load)
            for v in views
        )
        used = sorted({v.fingerprint for v in views if v.fingerprint is not None})
        return InventorySnapshot(hosts, {fp: self._profiles[fp][1] for fp in used})

    # -- journals ------------------------------------------------------------------

    def journal(self, journal: Journal) -> MemoryJournalStore:
        """See :meth:`Inventory.journal`: one :class:`MemoryJournalStore` per journal, kept here."""
        store = self._journals.get(journal.table)
        if store is None:
            store = self._journals[journal.table] = MemoryJournalStore(journal, lambda: require_open(self.state))
        return store
