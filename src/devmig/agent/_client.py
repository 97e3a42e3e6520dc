"""An async client of an agent's HTTP API (over httpx2), used by agents, the manager and the CLI.

There is one client, :class:`AgentClient`. Like httpx's own clients it takes
a ``transport=``: by default it opens HTTP connections to ``base_url``; an
``httpx2.ASGITransport(app=create_app(...))`` talks to an agent application
in the same process instead (tests, an embedded agent), through the same
calls and the same error mapping.

Every httpx2 error is mapped here, once: a connection that cannot be made or
times out is ``AGENT_UNREACHABLE``; 401 is ``AUTH_FAILED`` (or the agent's
own ``AUTH_REQUIRED``); any other error response carrying problem details
is re-raised as a :class:`~devmig.DevmigError` with the problems it carries;
an error response without them is ``AGENT_ERROR`` with its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

import httpx2

from devmig._errors import DevmigError, Problem
from devmig._json import JsonObject, JsonValue
from devmig._tls import client_tls

__all__ = ["AgentClient", "remote_error"]


def remote_error(response: httpx2.Response) -> DevmigError:
    """Turn an error response into the :class:`DevmigError` it describes."""
    problems: list[Problem] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        for raw in body["errors"]:
            if isinstance(raw, dict) and isinstance(raw.get("code"), str):
                problems.append(
                    Problem(
                        raw["code"],
                        tuple(raw.get("loc") or ()),
                        str(raw.get("message", "")),
                        raw.get("value"),
                        raw.get("allowed"),
                        raw.get("hint"),
                        raw.get("context") or {},
                    )
                )
    if problems:
        return DevmigError(problems)
    if response.status_code == 401:
        return DevmigError(
            [
                Problem(
                    "AUTH_FAILED",
                    ("token",),
                    "the agent refused the token",
                    hint="pass the agent's token (--token or DEVMIG_TOKEN)",
                )
            ]
        )
    return DevmigError(
        [
            Problem(
                "AGENT_ERROR",
                ("status",),
                f"the agent answered {response.status_code}",
                value=response.status_code,
            )
        ]
    )


class AgentClient:
    """Talk to one agent.

    Args:
        base_url: the agent's URL (``http://127.0.0.1:8470``).
        token: its bearer token (needed for mutating calls).
        timeout: seconds per request.
        transport: an httpx2 transport to send the requests through (default:
            HTTP connections to ``base_url``, TLS verified as ``devmig`` is
            configured); e.g. ``httpx2.ASGITransport(app=app)`` for an agent
            application in this process.

    Use as ``async with AgentClient(url, token) as agent: ...`` (or call
    :meth:`aclose`).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx2.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            verify=client_tls() if transport is None else True,
            transport=transport,
        )

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        json: JsonObject | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx2.Response:
        try:
            response = await self._http.request(
                method, path, json=json, params=params, headers=headers, content=content
            )
        except httpx2.HTTPError as exc:
            raise DevmigError(
                [
                    Problem(
                        "AGENT_UNREACHABLE",
                        ("agent", self.base_url),
                        f"cannot reach the agent at {self.base_url}: {exc}",
                        value=self.base_url,
                        hint="is `devmig agent` running there?",
                    )
                ]
            ) from exc
        if response.status_code not in ok:
            raise remote_error(response)
        return response

    async def _json(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        json: JsonObject | None = None,
        params: Mapping[str, str] | None = None,
    ) -> JsonObject:
        response = await self._request(method, path, ok=ok, json=json, params=params)
        try:
            data = response.json()  # raw JSON: checked to be an object below
        except ValueError as exc:
            raise DevmigError(
                [Problem("AGENT_ERROR", ("body",), "the agent answered something that is not JSON")]
            ) from exc
        if not isinstance(data, dict):
            raise DevmigError(
                [Problem("AGENT_ERROR", ("body",), "the agent answered a non-object")]
            )
        return data

    # -- query ---------------------------------------------------------------------

    async def health(self) -> JsonObject:
        """``GET /v1/health``."""
        return await self._json("GET", "/v1/health")

    async def report(self, etag: str | None = None) -> tuple[JsonObject | None, str | None]:
        """``GET /v1/report``: the host report and its ETag; ``(None, etag)`` when not modified."""
        headers = {"If-None-Match": etag} if etag else {}
        response = await self._request("GET", "/v1/report", ok=(200, 304), headers=headers)
        if response.status_code == 304:
            return None, response.headers.get("etag", etag)
        report: JsonObject = response.json()  # raw JSON: the report, validated by its reader
        return report, response.headers.get("etag")

    # -- devices -------------------------------------------------------------------

    async def create_device(
        self,
        model: str,
        config: str | Mapping[str, JsonValue] | None = None,
        host: Mapping[str, JsonValue] | None = None,
    ) -> JsonObject:
        """``POST /v1/devices``."""
        body: JsonObject = {
            "model": model,
            "config": config if config is None or isinstance(config, str) else dict(config),
            "host": dict(host or {}),
        }
        return await self._json("POST", "/v1/devices", ok=(201,), json=body)

    async def get_device(self, device_id: str, *, digest: bool = False) -> JsonObject:
        """``GET /v1/devices/{id}``."""
        params = {"digest": "true"} if digest else {}
        return await self._json("GET", f"/v1/devices/{device_id}", params=params)

    async def devices(self) -> list[JsonObject]:
        """``GET /v1/devices``."""
        data = await self._json("GET", "/v1/devices")
        return _objects(data, "devices")

    async def delete_device(self, device_id: str) -> None:
        """``DELETE /v1/devices/{id}``."""
        await self._request("DELETE", f"/v1/devices/{device_id}", ok=(204,))

    # -- migrations ----------------------------------------------------------------

    async def incoming(self, body: Mapping[str, JsonValue]) -> JsonObject:
        """``POST /v1/migrations/incoming`` (the destination's side of a migration)."""
        return await self._json("POST", "/v1/migrations/incoming", ok=(200, 201), json=dict(body))

    async def outgoing(
        self,
        migration_id: str | None,
        device_id: str,
        destination_url: str,
        destination_token: str | None,
        *,
        lease: str | None = None,
        source_url: str | None = None,
    ) -> JsonObject:
        """``POST /v1/migrations/outgoing``: start a migration (202); ``lease``: a controller's;
        ``source_url``: where the destination reaches the source (the URL the caller used)."""
        body: JsonObject = {
            "device_id": device_id,
            "destination": {"url": destination_url, "token": destination_token},
        }
        if source_url:
            body["source_url"] = source_url
        if migration_id:
            body["migration_id"] = migration_id
        if lease is not None:
            body["lease"] = lease
        return await self._json("POST", "/v1/migrations/outgoing", ok=(202,), json=body)

    async def migration(self, migration_id: str) -> JsonObject:
        """``GET /v1/migrations/{id}``."""
        return await self._json("GET", f"/v1/migrations/{migration_id}")

    async def migrations(self) -> list[JsonObject]:
        """``GET /v1/migrations``."""
        data = await self._json("GET", "/v1/migrations")
        return _objects(data, "migrations")

    async def cancel(
        self, migration_id: str, *, lease: str | None = None, device_id: str | None = None
    ) -> JsonObject:
        """``POST /v1/migrations/{id}/cancel``.

        Args:
            lease: a controller's lease (must match the migration's).
            device_id: fences a migration id the agent does not know.
        """
        if lease is None:
            return await self._json("POST", f"/v1/migrations/{migration_id}/cancel")
        body: JsonObject = {"lease": lease, "device_id": device_id}
        return await self._json("POST", f"/v1/migrations/{migration_id}/cancel", json=body)

    async def query(self, migration_id: str, frame: bytes, token: str | None = None) -> bytes:
        """``POST /v1/migrations/{id}/query``: send a QUERY frame, return the STATUS frame.

        Args:
            token: a per-migration callback token to use instead of the client's.
        """
        headers = {"Content-Type": "application/octet-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await self._request(
            "POST", f"/v1/migrations/{migration_id}/query", content=frame, headers=headers
        )
        return response.content


def _objects(data: JsonObject, key: str) -> list[JsonObject]:
    """The list of objects under ``key`` of an answer (``AGENT_ERROR`` when it is not one)."""
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise DevmigError([Problem("AGENT_ERROR", ("body", key), f"the agent's {key} are not a list of objects")])
    return [item for item in items if isinstance(item, dict)]
