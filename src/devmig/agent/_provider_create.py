"""Creating a device through a provider: what the kernel and vfio-user hosts share.

Both parse the request's configuration against the chosen model the same way (a canonical
configuration from an incoming migration, or an option string or mapping from a client) and map a
provider's ``BACKEND_REFUSED`` to a :class:`~devmig.ConfigError` (HTTP 422), so a refusal by a driver
or a backend reads like any other refused configuration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from devmig._errors import ConfigError, DevmigError
from devmig.model import Config, DeviceModel, Implementation, expand, parse_canonical
from devmig.providers import CreateRequest

__all__ = ["create_through", "parse_config"]

D = TypeVar("D")


def parse_config(model: DeviceModel, config: str | Mapping[str, Any] | Config | None, *, canonical: bool) -> Config:
    """The configuration of a creation request, validated against ``model``.

    ``canonical``: ``config`` is a canonical configuration (an incoming migration's), taken as
    it is; otherwise it is expanded like a client's option string (versions and init values).

    Raises:
        ConfigError: every problem of the configuration.
    """
    if isinstance(config, Config):
        return parse_canonical(model, config.values) if canonical else expand(model, config.string)
    if canonical:
        return parse_canonical(model, config if isinstance(config, str) else dict(config or {}))
    return expand(model, config)


async def create_through(
    create: Callable[[CreateRequest], Awaitable[D]],
    implementation: Implementation,
    config: Config,
    host_settings: Mapping[str, Any] | None,
) -> D:
    """Create a device with a provider's ``create``; a ``BACKEND_REFUSED`` is raised as a :class:`ConfigError`.

    Raises:
        ConfigError: the provider refused the configuration (its words in the hint).
        DevmigError: any other failure of the provider, as it raised it.
    """
    try:
        return await create(CreateRequest(implementation, config, dict(host_settings or {})))
    except DevmigError as e:
        if "BACKEND_REFUSED" in e.codes and not isinstance(e, ConfigError):
            raise ConfigError(e.problems) from e
        raise
