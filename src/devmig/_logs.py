"""Log lines of the agent and the manager: text (the default) or JSON, one object a line (``--log-format``).

Events about a migration or a device carry their ids as ``extra`` fields
(:data:`FIELDS`); the JSON format puts them at the top level of the object, so
a log pipeline can select every line of one migration::

    {"ts": "2026-12-07T20:01:02.123Z", "level": "INFO", "logger": "devmig.agent.migrations",
     "message": "migration mig-1f2e... DONE", "migration_id": "mig-1f2e...", "device_id": "nic-3",
     "role": "source", "phase": "DONE"}
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

from devmig._errors import DevmigError, Problem

__all__ = ["FIELDS", "JsonFormatter", "configure_logging"]

FIELDS = ("migration_id", "device_id", "host", "role", "phase", "outcome", "code", "drain_id")
"""The ``extra`` fields copied into a JSON line when a record has them."""

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the :data:`FIELDS` it carries."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "ts": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(log_format: str) -> None:
    """Send devmig's and uvicorn's log records to stderr in ``log_format`` (``text`` or ``json``).

    Text shows warnings and errors (as before); JSON also every event (``INFO``): a migration's
    journal records, devices created and deleted.

    Raises:
        DevmigError: ``USAGE`` for another format.
    """
    if log_format not in FORMATS:
        raise DevmigError(
            [
                Problem(
                    "USAGE",
                    ("log-format",),
                    f"--log-format is text or json, not {log_format[:40]!r}",
                    value=log_format[:40],
                    allowed=list(FORMATS),
                )
            ]
        )
    handler = logging.StreamHandler(sys.stderr)
    level = logging.INFO if log_format == "json" else logging.WARNING
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("devmig", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
