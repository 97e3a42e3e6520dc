"""Decoding the CBOR payloads of HEADER and SECTION records into checked values.

Both decoders accept extra map keys (a later minor version may add some) and
refuse a missing or ill-typed key with ``RECORD_CORRUPT``.
"""

from __future__ import annotations

from typing import Any

from devmig._errors import StreamError
from devmig.state._problems import ConfigValue, is_config_value
from devmig.state._records import decode_cbor

__all__ = ["parse_header", "parse_section"]


def _corrupt(
    what: str, message: str, record: int | None, section: str | None = None
) -> StreamError:
    return StreamError("RECORD_CORRUPT", f"{what}: {message}", record=record, section=section)


def parse_header(
    body: bytes | memoryview, *, record: int | None
) -> tuple[str, dict[str, ConfigValue], dict[str, Any]]:
    """Decode a HEADER payload.

    Returns:
        ``(model, canonical configuration, producer)``.

    Raises:
        StreamError: ``RECORD_CORRUPT`` for invalid CBOR or a malformed map.
    """
    value = decode_cbor(body, what="HEADER", record=record)
    if not isinstance(value, dict):
        raise _corrupt("HEADER", "payload must be a map", record)
    model = value.get("model")
    config = value.get("config")
    producer = value.get("producer", {})
    if not isinstance(model, str):
        raise _corrupt("HEADER", "model must be a string", record)
    if not isinstance(config, dict) or not all(
        isinstance(k, str) and is_config_value(v) for k, v in config.items()
    ):
        raise _corrupt("HEADER", "config must map names to bool, int or str", record)
    if not isinstance(producer, dict):
        raise _corrupt("HEADER", "producer must be a map", record)
    return model, config, producer


def parse_section(
    body: bytes | memoryview, *, record: int | None
) -> tuple[str, bool, dict[str, Any]]:
    """Decode a SECTION payload.

    Returns:
        ``(name, optional, fields)``; the fields are not validated here.

    Raises:
        StreamError: ``RECORD_CORRUPT`` for invalid CBOR or a malformed map.
    """
    value = decode_cbor(body, what="SECTION", record=record)
    if not isinstance(value, dict):
        raise _corrupt("SECTION", "payload must be a map", record)
    name = value.get("name")
    optional = value.get("optional")
    fields = value.get("fields")
    if not isinstance(name, str):
        raise _corrupt("SECTION", "name must be a string", record)
    if not isinstance(optional, bool):
        raise _corrupt("SECTION", "optional must be a bool", record, name)
    if not isinstance(fields, dict):
        raise _corrupt("SECTION", "fields must be a map", record, name)
    return name, optional, fields
