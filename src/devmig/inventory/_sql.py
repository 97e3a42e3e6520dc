"""The inventory in a database: SQLAlchemy Core over SQLite (default) or PostgreSQL.

Every SQLAlchemy (and driver) exception is mapped here, once, in
:meth:`SqlInventory._tx`: a database that cannot be reached or is locked is
``DB_UNAVAILABLE``; an integrity violation is the caller's conflict code
(``HOST_CONFLICT``, ...) or ``DB_CONFLICT``; anything else is ``DB_ERROR``.
The original exception is the ``__cause__``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import xxhash
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from devmig._errors import DevmigError
from devmig.inventory._interface import (
    DEFAULT_MAX_MISSED,
    DeviceRecord,
    HistoryEntry,
    HostSnapshot,
    HostView,
    InventorySnapshot,
    RunState,
    inventory_error,
    require_open,
)
from devmig.inventory._journal import (
    Journal,
    JournalEntry,
    JournalMark,
    JournalPage,
    check_limit,
    utc,
)
from devmig.inventory._profiles import ProfileCache
from devmig.inventory._schema import (
    devices,
    host_profile_history,
    hosts,
    metadata,
    newest_page,
    pool_members,
    pools,
    profiles,
)
from devmig.inventory._schema_upgrade import upgrade
from devmig.model import HostReport, ModelDocument

__all__ = ["SqlInventory", "SqlJournalStore", "sqlite_url"]

_hosts_table = hosts
"""The ``hosts`` table under a name that :meth:`SqlInventory.devices_by_host`'s ``hosts`` argument does not hide."""

_CHUNK = 500  # names per IN (...) list


def sqlite_url(path: str | Path) -> str:
    """Return the SQLAlchemy URL of a SQLite file."""
    return f"sqlite+pysqlite:///{Path(path).resolve()}"


_ENTRY_DIGEST = "devmig_entry_digest"
"""The SQL function (SQLite: registered on every connection) behind :meth:`SqlJournalStore.mark`."""


def _entry_digest(*columns: object) -> int:
    """A 32-bit digest of one journal row's columns as SQLite stores them (id, updated_at, payload text).

    32 bits so that SQLite's integer ``sum`` of them cannot overflow (below 2**31 rows)."""
    text = "\x1f".join(str(c) for c in columns)
    return xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass")) & 0xFFFFFFFF


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.create_function(_ENTRY_DIGEST, 3, _entry_digest, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _where_in(conn: sa.Connection, column: sa.Column[Any], values: Sequence[str]) -> list[Any]:
    """Return ``column IN values`` as one condition with a single parameter per chunk.

    SQLite reads the values from one JSON array (``json_each``), PostgreSQL
    from one array (``= ANY``); other databases get ``IN`` lists of
    :data:`_CHUNK` values. Many values cost one parameter, not one each.
    """
    if conn.dialect.name == "sqlite":
        listed = sa.func.json_each(sa.bindparam(None, json.dumps(list(values)), type_=sa.Text))
        return [column.in_(sa.select(listed.table_valued("value").c.value))]
    if conn.dialect.name == "postgresql":
        return [column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(sa.String)))]
    return [column.in_(chunk) for chunk in _chunks(values)]


_DRIVER_SQL: dict[tuple[str, str, tuple[str, ...], bool], tuple[str, tuple[int, ...] | None]] = {}


def _insert_rows(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...],
                 rows: Sequence[tuple[Any, ...]], *, skip_existing: bool = False) -> None:
    """INSERT many rows (plain values, in ``columns`` order) with the driver's executemany.

    The statement is compiled once per dialect (SQLAlchemy renders it and its
    parameter style); each column's bind processor (SQLite's datetime and
    boolean rendering) is applied once per distinct value. This is what
    ``conn.execute(table.insert(), dicts)`` stores, without its per-row cost.
    ``skip_existing`` ignores rows whose key exists.
    """
    if not rows:
        return
    dialect = conn.dialect
    key = (dialect.name, table.name, columns, skip_existing)
    cached = _DRIVER_SQL.get(key)
    if cached is None:
        ins = table.insert()
        if skip_existing:
            ins = (postgresql if dialect.name == "postgresql" else sqlite).insert(table).on_conflict_do_nothing()
        compiled = ins.compile(dialect=dialect, column_keys=list(columns))
        order = tuple(columns.index(k) for k in compiled.positiontup or ()) if compiled.positional else None
        cached = _DRIVER_SQL[key] = (compiled.string, order)
    sql, order = cached
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    if any(p is not None for p in processors):
        memo: list[dict[Any, Any]] = [{} for _ in columns]

        def bind(row: tuple[Any, ...]) -> tuple[Any, ...]:
            out = []
            for value, proc, seen in zip(row, processors, memo, strict=True):
                if proc is not None and value is not None:
                    got = seen.get(value, seen)
                    if got is seen:
                        got = seen[value] = proc(value)
                    value = got
                out.append(value)
            return tuple(out)

        rows = [bind(r) for r in rows]
    params: Any
    if order is None:
        params = [dict(zip(columns, r, strict=True)) for r in rows]
    elif order == tuple(range(len(columns))):
        params = rows if isinstance(rows, list) else list(rows)
    else:
        params = [tuple(r[i] for i in order) for r in rows]
    conn.exec_driver_sql(sql, params)


class SqlInventory:
    """An :class:`~devmig.inventory.Inventory` in a SQL database.

    Args:
        url: a SQLAlchemy URL: ``sqlite+pysqlite:///path/inventory.db`` (see
            :func:`sqlite_url`) or ``postgresql+psycopg://user@host:port/db``.

    :meth:`open` creates the engine and migrates the schema to alembic's head
    (``with SqlInventory(url) as inventory: ...``); :meth:`close` disposes of
    the engine. SQLite connections use WAL and enforce foreign keys.

    Raises (from any method):
        DevmigError: ``DB_UNAVAILABLE`` / ``DB_ERROR`` when the database fails;
            ``INVENTORY_STATE`` when used before ``open`` or after ``close``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.state = RunState.NEW
        self._engine: sa.Engine | None = None
        self._profiles = ProfileCache()

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Connect and migrate the schema to head."""
        require_open(self.state, RunState.NEW)
        try:
            engine = sa.create_engine(self.url)
        except (sa_exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise inventory_error("DB_UNAVAILABLE", ("url",), f"bad database URL: {exc}",
                                  value=self._safe_url()) from exc
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        self._engine = engine
        self.state = RunState.OPEN
        try:
            with self._tx() as conn:
                upgrade(conn)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Dispose of the engine; the inventory cannot be reopened."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self.state = RunState.CLOSED

    def __enter__(self) -> SqlInventory:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def engine(self) -> sa.Engine:
        """The engine (only while open)."""
        require_open(self.state)
        assert self._engine is not None
        return self._engine

    def _safe_url(self) -> str:
        try:
            return sa.make_url(self.url).render_as_string(hide_password=True)
        except sa_exc.ArgumentError:
            return "<unparsable URL>"

    @contextmanager
    def _tx(self, conflict: str = "DB_CONFLICT") -> Iterator[sa.Connection]:
        """One transaction; the one place where database errors become DevmigErrors."""
        engine = self.engine
        try:
            with engine.begin() as conn:
                yield conn
        except DevmigError:
            raise
        except sa_exc.IntegrityError as exc:
            raise inventory_error(conflict, ("database",), f"conflict: {exc.orig}") from exc
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                sa_exc.TimeoutError) as exc:
            raise inventory_error(
                "DB_UNAVAILABLE",
                ("database",),
                f"the database is unavailable: {exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc}",
                value=self._safe_url(),
                hint="is the database running and reachable?",
            ) from exc
        except sa_exc.SQLAlchemyError as exc:
            raise inventory_error("DB_ERROR", ("database",), f"database error: {exc}") from exc

    def _insert(self, conn: sa.Connection, table: sa.Table) -> Any:
        """An INSERT that ignores rows whose key exists (SQLite and PostgreSQL)."""
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    # -- hosts ---------------------------------------------------------------------

    @staticmethod
    def _require_host(conn: sa.Connection, name: str) -> sa.Row[Any]:
        row = conn.execute(sa.select(hosts).where(hosts.c.name == name)).first()
        if row is None:
            raise inventory_error("HOST_UNKNOWN", ("host", name), f"no host named {name!r}",
                                  value=name)
        return row

    @staticmethod
    def _check_urls(conn: sa.Connection, pairs: Sequence[tuple[str, str]]) -> set[str]:
        """Raise ``HOST_CONFLICT`` on a clash; return the names already registered."""
        urls: dict[str, str] = {}
        owners: dict[str, str] = {}
        for name, url in pairs:
            if urls.setdefault(name, url) != url or owners.setdefault(url, name) != name:
                raise inventory_error("HOST_CONFLICT", ("host", name),
                                      f"host {name!r} and {url} clash within the batch", value=url)
        existing: set[str] = set()
        names = sorted(urls)
        for condition in _where_in(conn, hosts.c.name, names):
            for name, url in conn.execute(sa.select(hosts.c.name, hosts.c.url).where(condition)):
                existing.add(name)
                if urls[name] != url:
                    raise inventory_error(
                        "HOST_CONFLICT", ("host", name),
                        f"host {name!r} is registered at {url}, not {urls[name]}", value=urls[name],
                    )
        for condition in _where_in(conn, hosts.c.url, sorted(owners)):
            for name, url in conn.execute(sa.select(hosts.c.name, hosts.c.url).where(condition)):
                if owners[url] != name:
                    raise inventory_error(
                        "HOST_CONFLICT", ("url", url),
                        f"{url} belongs to host {name!r}, not {owners[url]!r}", value=owners[url],
                    )
        return existing

    @staticmethod
    def _new_host(name: str, url: str) -> dict[str, Any]:
        return {"name": name, "url": url, "fingerprint": None, "cordoned": False,
                "reachable": True, "missed_polls": 0, "last_seen": None, "last_etag": None,
                "device_count": 0, "load": 0}

    def add_host(self, name: str, url: str) -> None:
        """See :meth:`Inventory.add_host`."""
        with self._tx("HOST_CONFLICT") as conn:
            if not self._check_urls(conn, [(name, url)]):
                conn.execute(hosts.insert(), [self._new_host(name, url)])

    def set_agent_token(self, name: str, sealed: str | None) -> None:
        """See :meth:`Inventory.set_agent_token`."""
        with self._tx() as conn:
            self._require_host(conn, name)
            conn.execute(hosts.update().where(hosts.c.name == name).values(agent_token=sealed))

    def agent_tokens(self) -> dict[str, str]:
        """See :meth:`Inventory.agent_tokens`."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(hosts.c.name, hosts.c.agent_token).where(hosts.c.agent_token.is_not(None)))
            return {row.name: row.agent_token for row in rows}

    def remove_host(self, name: str) -> None:
        """See :meth:`Inventory.remove_host`."""
        with self._tx() as conn:
            self._require_host(conn, name)
            conn.execute(hosts.delete().where(hosts.c.name == name))

    def _views(self, conn: sa.Connection, name: str | None = None) -> list[HostView]:
        query = sa.select(hosts).order_by(hosts.c.name)
        members = sa.select(pool_members.c.host, pool_members.c.pool).order_by(pool_members.c.pool)
        if name is not None:
            query = query.where(hosts.c.name == name)
            members = members.where(pool_members.c.host == name)
        in_pools: dict[str, list[str]] = {}
        for host, pool in conn.execute(members):
            in_pools.setdefault(host, []).append(pool)
        return [
            HostView(
                name=row.name, url=row.url, fingerprint=row.fingerprint, cordoned=row.cordoned,
                reachable=row.reachable, missed_polls=row.missed_polls,
                last_seen=None if row.last_seen is None else utc(row.last_seen),
                last_etag=row.last_etag, device_count=row.device_count, load=row.load,
                pools=tuple(in_pools.get(row.name, ())),
            )
            for row in conn.execute(query)
        ]

    def get_host(self, name: str) -> HostView:
        """See :meth:`Inventory.get_host`."""
        with self._tx() as conn:
            self._require_host(conn, name)
            return self._views(conn, name)[0]

    def list_hosts(self) -> list[HostView]:
        """See :meth:`Inventory.list_hosts`."""
        with self._tx() as conn:
            return self._views(conn)

    # -- reports -------------------------------------------------------------------

    def _register(self, conn: sa.Connection, items: Sequence[tuple[str, str, HostReport, str | None]],
                  now: datetime, existing: set[str]) -> tuple[list[bool], set[str]]:
        """Store reports of registered (``existing``) or new hosts.

        Returns "profile changed" per item, and the profiles inserted (to mark
        as stored once the transaction commits).
        """
        for name, _url, report, _etag in items:
            if report.host != name:
                raise inventory_error(
                    "HOST_MISMATCH", ("report", "host"),
                    f"the report of {name!r} names host {report.host!r}", value=report.host,
                )
        prepared = self._profiles.fingerprints([report for _n, _u, report, _e in items])
        # Profiles: insert the ones this process has not stored yet (dedup by fingerprint).
        fresh = {fp: canonical for fp, canonical in prepared if not self._profiles.stored(fp)}
        _insert_rows(conn, profiles, ("fingerprint", "canonical", "first_seen"),
                     [(fp, c, now) for fp, c in fresh.items()], skip_existing=True)
        # Current fingerprint of every registered host in the batch.
        current: dict[str, str | None] = {}
        if existing:
            for condition in _where_in(conn, hosts.c.name, sorted(existing)):
                for host, fingerprint in conn.execute(
                    sa.select(hosts.c.name, hosts.c.fingerprint).where(condition)
                ):
                    current[host] = fingerprint
        final: dict[str, tuple[str, str, str | None]] = {}
        opened: list[tuple[str, str, datetime, datetime]] = []
        touched: list[dict[str, Any]] = []
        changed: list[bool] = []
        get = current.get
        for (name, url, _report, etag), (fp, _canonical) in zip(items, prepared, strict=True):
            before = get(name)
            if before != fp:
                changed.append(True)
                opened.append((name, fp, now, now))
            else:
                changed.append(False)
                if name in existing and name not in final:
                    touched.append({"b_host": name, "b_now": now})
            current[name] = fp
            final[name] = (url, fp, etag)
        _insert_rows(
            conn, hosts,
            ("name", "url", "fingerprint", "cordoned", "reachable", "missed_polls", "last_seen",
             "last_etag", "device_count", "load"),
            [(name, url, fp, False, True, 0, now, etag, 0, 0)
             for name, (url, fp, etag) in final.items() if name not in existing],
        )
        updates = [{"b_name": name, "b_fp": fp, "b_now": now, "b_etag": etag}
                   for name, (_url, fp, etag) in final.items() if name in existing]
        if updates:
            conn.execute(
                hosts.update().where(hosts.c.name == sa.bindparam("b_name")).values(
                    fingerprint=sa.bindparam("b_fp"), last_seen=sa.bindparam("b_now"),
                    last_etag=sa.bindparam("b_etag"), reachable=True, missed_polls=0,
                ),
                updates,
            )
        if touched:
            self._touch_history(conn, touched)
        _insert_rows(conn, host_profile_history, ("host", "fingerprint", "first_seen", "last_seen"), opened)
        return changed, set(fresh)

    @staticmethod
    def _touch_history(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        latest = (
            sa.select(sa.func.max(host_profile_history.c.id))
            .where(host_profile_history.c.host == sa.bindparam("b_host"))
            .scalar_subquery()
        )
        conn.execute(
            host_profile_history.update()
            .where(host_profile_history.c.id == latest)
            .values(last_seen=sa.bindparam("b_now")),
            rows,
        )

    def record_report(self, host: str, report: HostReport, etag: str | None,
                      now: datetime) -> bool:
        """See :meth:`Inventory.record_report`."""
        now = utc(now)
        with self._tx() as conn:
            row = self._require_host(conn, host)
            changed, fresh = self._register(conn, [(host, row.url, report, etag)], now, {host})
        self._profiles.mark_stored(fresh)
        return changed[0]

    def record_unchanged(self, host: str, now: datetime) -> None:
        """See :meth:`Inventory.record_unchanged`."""
        now = utc(now)
        with self._tx() as conn:
            self._require_host(conn, host)
            conn.execute(hosts.update().where(hosts.c.name == host).values(
                reachable=True, missed_polls=0, last_seen=now))
            self._touch_history(conn, [{"b_host": host, "b_now": now}])

    def record_poll_failure(self, host: str, now: datetime, *,
                            max_missed: int = DEFAULT_MAX_MISSED) -> bool:
        """See :meth:`Inventory.record_poll_failure`."""
        with self._tx() as conn:
            row = self._require_host(conn, host)
            missed = row.missed_polls + 1
            reachable = bool(row.reachable) and missed < max_missed
            conn.execute(hosts.update().where(hosts.c.name == host).values(
                missed_polls=missed, reachable=reachable))
            return reachable

    def record_devices(self, host: str, records: Sequence[DeviceRecord]) -> None:
        """See :meth:`Inventory.record_devices`."""
        with self._tx() as conn:
            self._require_host(conn, host)
            conn.execute(devices.delete().where(devices.c.host == host))
            if records:
                conn.execute(devices.insert(), [
                    {"host": host, "id": d.id, "model": d.model, "config": dict(d.config),
                     "state": d.state, "running": d.running} for d in records
                ])
            conn.execute(hosts.update().where(hosts.c.name == host).values(
                device_count=len(records), load=sum(1 for d in records if d.running)))

    def list_devices(self, host: str) -> list[DeviceRecord]:
        """See :meth:`Inventory.list_devices`."""
        with self._tx() as conn:
            self._require_host(conn, host)
            rows = conn.execute(sa.select(devices).where(devices.c.host == host)
                                .order_by(devices.c.id))
            return [DeviceRecord(r.id, r.model, r.config, r.state, r.running) for r in rows]

    def devices_by_host(self, hosts: Sequence[str] | None = None) -> dict[str, list[DeviceRecord]]:
        """See :meth:`Inventory.devices_by_host`: one ``hosts LEFT JOIN devices`` query.

        The names are one parameter (see :func:`_where_in`): one statement on SQLite
        and PostgreSQL for any number of hosts.
        """
        require_open(self.state)
        names = None if hosts is None else list(dict.fromkeys(hosts))
        if names == []:
            return {}
        query = (sa.select(_hosts_table.c.name, devices.c.id, devices.c.model, devices.c.config,
                           devices.c.state, devices.c.running)
                 .select_from(_hosts_table.outerjoin(devices, devices.c.host == _hosts_table.c.name))
                 .order_by(_hosts_table.c.name, devices.c.id))
        found: dict[str, list[DeviceRecord]] = {}
        with self._tx() as conn:
            queries = [query] if names is None else [
                query.where(condition) for condition in _where_in(conn, _hosts_table.c.name, names)]
            for one in queries:
                for name, *device in conn.execute(one):
                    records = found.setdefault(name, [])
                    if device[0] is not None:  # NULLs: a host without devices (the outer join)
                        records.append(DeviceRecord(*device))
        if names is None:
            return found
        return {name: found[name] for name in names if name in found}

    def history(self, host: str) -> list[HistoryEntry]:
        """See :meth:`Inventory.history`."""
        with self._tx() as conn:
            self._require_host(conn, host)
            rows = conn.execute(
                sa.select(host_profile_history).where(host_profile_history.c.host == host)
                .order_by(host_profile_history.c.id))
            return [HistoryEntry(r.fingerprint, utc(r.first_seen), utc(r.last_seen)) for r in rows]

    def _documents(self, conn: sa.Connection, fingerprints: Sequence[str]
                   ) -> dict[str, tuple[ModelDocument, ...]]:
        missing = [fp for fp in fingerprints if self._profiles.documents(fp) is None]
        for chunk in _chunks(missing):
            for fp, canonical in conn.execute(
                sa.select(profiles.c.fingerprint, profiles.c.canonical)
                .where(profiles.c.fingerprint.in_(chunk))
            ):
                self._profiles.remember(fp, self._profiles.parse(canonical))
        out = {}
        for fp in fingerprints:
            docs = self._profiles.documents(fp)
            if docs is not None:
                out[fp] = docs
        return out

    def profile(self, fingerprint: str) -> tuple[ModelDocument, ...] | None:
        """See :meth:`Inventory.profile`."""
        with self._tx() as conn:
            return self._documents(conn, [fingerprint]).get(fingerprint)

    def register_reports(self, items: Sequence[tuple[str, str, HostReport]],
                         now: datetime) -> int:
        """See :meth:`Inventory.register_reports`: one transaction, executemany, profile dedup."""
        now = utc(now)
        with self._tx("HOST_CONFLICT") as conn:
            existing = self._check_urls(conn, [(name, url) for name, url, _r in items])
            changed, fresh = self._register(
                conn, [(name, url, report, None) for name, url, report in items], now, existing
            )
        self._profiles.mark_stored(fresh)
        return sum(changed)

    # -- pools, cordon -------------------------------------------------------------------

    @staticmethod
    def _require_pool(conn: sa.Connection, name: str) -> None:
        if conn.execute(sa.select(pools.c.name).where(pools.c.name == name)).first() is None:
            raise inventory_error("POOL_UNKNOWN", ("pool", name), f"no pool named {name!r}",
                                  value=name)

    def create_pool(self, name: str) -> None:
        """See :meth:`Inventory.create_pool`."""
        with self._tx("POOL_CONFLICT") as conn:
            if conn.execute(sa.select(pools.c.name).where(pools.c.name == name)).first():
                raise inventory_error("POOL_CONFLICT", ("pool", name), f"pool {name!r} exists",
                                      value=name)
            conn.execute(pools.insert().values(name=name))

    def delete_pool(self, name: str) -> None:
        """See :meth:`Inventory.delete_pool`."""
        with self._tx() as conn:
            self._require_pool(conn, name)
            conn.execute(pools.delete().where(pools.c.name == name))

    def add_to_pool(self, pool: str, host: str) -> None:
        """See :meth:`Inventory.add_to_pool`."""
        with self._tx() as conn:
            self._require_pool(conn, pool)
            self._require_host(conn, host)
            conn.execute(self._insert(conn, pool_members).values(pool=pool, host=host))

    def remove_from_pool(self, pool: str, host: str) -> None:
        """See :meth:`Inventory.remove_from_pool`."""
        with self._tx() as conn:
            self._require_pool(conn, pool)
            self._require_host(conn, host)
            conn.execute(pool_members.delete().where(
                pool_members.c.pool == pool, pool_members.c.host == host))

    def list_pools(self) -> dict[str, list[str]]:
        """See :meth:`Inventory.list_pools`."""
        with self._tx() as conn:
            out: dict[str, list[str]] = {
                name: [] for name in conn.execute(sa.select(pools.c.name).order_by(pools.c.name)).scalars()
            }
            for pool, host in conn.execute(
                sa.select(pool_members.c.pool, pool_members.c.host).order_by(pool_members.c.host)
            ):
                out[pool].append(host)
            return out

    def _set_cordon(self, host: str, cordoned: bool) -> None:
        with self._tx() as conn:
            self._require_host(conn, host)
            conn.execute(hosts.update().where(hosts.c.name == host).values(cordoned=cordoned))

    def cordon(self, host: str) -> None:
        """See :meth:`Inventory.cordon`."""
        self._set_cordon(host, True)

    def uncordon(self, host: str) -> None:
        """See :meth:`Inventory.uncordon`."""
        self._set_cordon(host, False)

    def snapshot(self) -> InventorySnapshot:
        """See :meth:`Inventory.snapshot` (one transaction: a consistent view)."""
        with self._tx() as conn:
            in_pools: dict[str, list[str]] = {}
            for host, pool in conn.execute(
                sa.select(pool_members.c.host, pool_members.c.pool).order_by(pool_members.c.pool)
            ):
                in_pools.setdefault(host, []).append(pool)
            rows = conn.execute(
                sa.select(hosts.c.name, hosts.c.url, hosts.c.fingerprint, hosts.c.cordoned,
                          hosts.c.reachable, hosts.c.load).order_by(hosts.c.name)
            ).all()
            views = tuple(
                HostSnapshot(name, url, fp, cordoned, reachable,
                             tuple(in_pools[name]) if name in in_pools else (), load)
                for name, url, fp, cordoned, reachable, load in rows
            )
            used = sorted({v.fingerprint for v in views if v.fingerprint is not None})
            docs = self._documents(conn, used)
        return InventorySnapshot(views, docs)

    # -- journals ------------------------------------------------------------------

    def journal(self, journal: Journal) -> SqlJournalStore:
        """See :meth:`Inventory.journal`: the journal's table in this database."""
        return SqlJournalStore(self, journal)


class SqlJournalStore:
    """A :class:`~devmig.inventory.JournalStore` on its table in an inventory's database.

    Every call is one transaction of the inventory (its errors: ``DB_UNAVAILABLE``, ``DB_ERROR``, ...).
    """

    def __init__(self, inventory: SqlInventory, journal: Journal) -> None:
        self.inventory = inventory
        self.journal = journal
        self.table = metadata.tables[journal.table]

    def put(self, id: str, phase: str, payload: Mapping[str, Any], now: datetime) -> None:
        """See :meth:`JournalStore.put`."""
        table = self.table
        row = {"phase": phase, "payload": json.loads(json.dumps(dict(payload))), "updated_at": utc(now)}
        with self.inventory._tx() as conn:
            done = conn.execute(table.update().where(table.c.id == id).values(**row))
            if done.rowcount == 0:
                conn.execute(table.insert().values(id=id, **row))

    @staticmethod
    def _entry(row: sa.Row[Any]) -> JournalEntry:
        return JournalEntry(row.id, row.phase, dict(row.payload), utc(row.updated_at))

    def get(self, id: str) -> JournalEntry:
        """See :meth:`JournalStore.get`."""
        table = self.table
        with self.inventory._tx() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == id)).first()
            if row is None:
                raise self.journal.unknown_error(id)
            return self._entry(row)

    def list(self, phase: str | None = None) -> list[JournalEntry]:
        """See :meth:`JournalStore.list`."""
        query = sa.select(self.table).order_by(self.table.c.id)
        if phase is not None:
            query = query.where(self.table.c.phase == phase)
        with self.inventory._tx() as conn:
            return [self._entry(row) for row in conn.execute(query)]

    def mark(self, phase: str | None = None) -> JournalMark:
        """See :meth:`JournalStore.mark`: one ``SELECT count(*), max(updated_at), sum(digest)``.

        Each row's digest is computed by the database from its id, ``updated_at`` and payload text:
        on PostgreSQL its 64-bit ``hashtextextended`` (summed as ``numeric``: no overflow), on SQLite
        the 32-bit :func:`_entry_digest` (a Python function SQLite calls; registered per connection).
        Only the one row of aggregates leaves the database.
        """
        journal = self.table
        with self.inventory._tx() as conn:
            digest: sa.ColumnElement[Any]
            if conn.dialect.name == "postgresql":
                text = sa.func.concat_ws(":", journal.c.id, sa.cast(sa.extract("epoch", journal.c.updated_at), sa.Text),
                                         sa.cast(journal.c.payload, sa.Text))
                # the 64-bit text hash of hash partitioning (PostgreSQL >= 11); 3-4x cheaper than md5 here
                digest = sa.func.hashtextextended(text, 0, type_=sa.BigInteger)
            else:
                digest = getattr(sa.func, _ENTRY_DIGEST)(journal.c.id, journal.c.updated_at,
                                                     sa.cast(journal.c.payload, sa.Text), type_=sa.BigInteger)
            query = sa.select(sa.func.count(), sa.func.max(journal.c.updated_at),
                              sa.func.coalesce(sa.func.sum(digest), 0))
            if phase is not None:
                query = query.where(journal.c.phase == phase)
            count, newest, total = conn.execute(query).one()
        return JournalMark(int(count), None if newest is None else utc(newest), int(total))

    def newest(self, limit: int) -> JournalPage:
        """See :meth:`JournalStore.newest`: one ``COUNT`` query and one ``ORDER BY ... LIMIT`` query,
        in one transaction.

        The order is :func:`~devmig.inventory.newest_first`'s (see
        :func:`~devmig.inventory._schema.newest_page`); :meth:`Journal.finished` is asked of the
        database: the phase is not final and no finished flag of the payload is true.
        """
        check_limit(limit)
        table, journal = self.table, self.journal
        unfinished: list[sa.ColumnElement[bool]] = []
        if journal.final_phases:
            unfinished.append(table.c.phase.not_in(sorted(journal.final_phases)))
        for flag in journal.finished_flags:
            unfinished.append(sa.not_(sa.func.coalesce(table.c.payload[flag].as_boolean(), sa.false())))
        with self.inventory._tx() as conn:
            rows, total, open_rows = newest_page(conn, table, sa.and_(sa.true(), *unfinished), limit)
        return JournalPage(tuple(self._entry(r) for r in rows), total, open_rows)
