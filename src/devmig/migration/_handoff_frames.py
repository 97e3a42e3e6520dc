"""Control frames of the migration session: the wire format and its limits.

A migration connection opens with an 8-byte preamble from the source,
``b"DVMC"`` then ``u16 major, u16 minor`` (big-endian); a reader accepts an
equal major and any minor. Every control message, on the connection or out
of band, is one frame::

    u8 type | u32 length | payload (length bytes: canonical CBOR, a map)

Each :class:`Message` type has its own largest payload
(:data:`MAX_PAYLOAD`); a header announcing more is refused *before* the
payload is waited for or buffered. A payload is decoded only inside that
bounded buffer, must be canonical CBOR (so a payload has exactly one
encoding, and trailing bytes are refused), and must have exactly the keys and
types of its message. The frame classes here are the validated payloads.

Pure functions and a small incremental reader: no I/O.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

import cbor2

from devmig._errors import DevmigError, Problem

__all__ = [
    "MAX_PAYLOAD",
    "PREAMBLE",
    "PROTOCOL_MAJOR",
    "PROTOCOL_MINOR",
    "Abort",
    "Ack",
    "Frame",
    "FrameReader",
    "Go",
    "HandoffError",
    "Hello",
    "Message",
    "Outcome",
    "Query",
    "Ready",
    "Refused",
    "Role",
    "Status",
    "encode",
    "read_query",
    "read_single",
]

MAGIC = b"DVMC"
PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
_PREAMBLE = struct.Struct(">4sHH")
#: What the source sends first on a migration connection.
PREAMBLE = _PREAMBLE.pack(MAGIC, PROTOCOL_MAJOR, PROTOCOL_MINOR)
_HEADER = struct.Struct(">BI")

MAX_MIGRATION_ID = 128
MIN_SECRET = 16
MAX_SECRET = 64
MAX_TEXT = 512
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_PHASE = re.compile(r"[A-Z][A-Z_]{0,31}")


class HandoffError(DevmigError):
    """The migration session protocol refused something.

    Raised for a call the current phase does not accept (the caller's bug,
    code ``PHASE_INVALID``), for a frame or answer that breaks the protocol,
    and for a refused HELLO. A failure the protocol *handles* (the peer
    refused, the connection was lost) is not raised: it moves the handoff to
    its next phase and is reported as a :class:`~devmig.migration.Failure`.

    Attributes:
        phase: the name of the phase the handoff was in, when there was one.
    """

    default_code = "HANDOFF_INVALID"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        phase: str | None = None,
        value: object = None,
        allowed: object = None,
        hint: str | None = None,
    ) -> None:
        self.phase = phase
        loc: tuple[str, ...] = ("phase", phase) if phase is not None else ()
        super().__init__([Problem(code, loc, message, value=value, allowed=allowed, hint=hint)])


class Message(IntEnum):
    """The control messages (the frame type byte)."""

    HELLO = 1
    READY = 2
    REFUSED = 3
    GO = 4
    ACK = 5
    ABORT = 6
    QUERY = 7
    STATUS = 8


class Outcome(Enum):
    """An agent's answer to a QUERY, carried by STATUS.

    ``STARTED``: the destination started the device (the source releases).
    ``PROCEED``: the source committed (the destination starts).
    ``ABORTED``: the answering side will never run its copy (it has none,
    destroyed it, or resumed the device): the asker destroys or resumes.
    ``PENDING``: the answer is being made final; ask again later.
    """

    STARTED = "STARTED"
    PROCEED = "PROCEED"
    ABORTED = "ABORTED"
    PENDING = "PENDING"


class Role(Enum):
    """The side of a migration an agent plays."""

    SOURCE = "source"
    DESTINATION = "destination"


#: The largest payload of each message, in bytes.
MAX_PAYLOAD: Mapping[Message, int] = MappingProxyType(
    {
        Message.HELLO: 256,
        Message.READY: 16,
        Message.REFUSED: 1024,
        Message.GO: 16,
        Message.ACK: 16,
        Message.ABORT: 1024,
        Message.QUERY: 256,
        Message.STATUS: 1024,
    }
)


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO: the source names the migration and proves the secret."""

    message: ClassVar[Message] = Message.HELLO
    migration: str
    secret: bytes = b""

    def __repr__(self) -> str:  # never print a secret
        return f"Hello(migration={self.migration!r}, secret=<{len(self.secret)} bytes>)"


@dataclass(frozen=True, slots=True)
class Ready:
    """READY: the destination loaded and validated the state (``RESUMING → STOP``)."""

    message: ClassVar[Message] = Message.READY


@dataclass(frozen=True, slots=True)
class Go:
    """GO: the source committed; the destination may run the device."""

    message: ClassVar[Message] = Message.GO


@dataclass(frozen=True, slots=True)
class Ack:
    """ACK: the destination runs the device."""

    message: ClassVar[Message] = Message.ACK


@dataclass(frozen=True, slots=True)
class Refused:
    """REFUSED: the destination will not run the device (why, and in which phase)."""

    message: ClassVar[Message] = Message.REFUSED
    code: str
    text: str
    phase: str


@dataclass(frozen=True, slots=True)
class Abort:
    """ABORT: the source gave up before committing and resumes its device."""

    message: ClassVar[Message] = Message.ABORT
    code: str
    text: str
    phase: str


@dataclass(frozen=True, slots=True)
class Query:
    """QUERY (out of band): what is the outcome of this migration on your side?

    Attributes:
        migration: the migration id.
        asker: the side asking (a source asks only once it has committed).
    """

    message: ClassVar[Message] = Message.QUERY
    migration: str
    asker: Role


@dataclass(frozen=True, slots=True)
class Status:
    """STATUS (out of band): the answer to a QUERY.

    Attributes:
        migration: the migration id.
        outcome: the answer.
        code: why the answering side aborted (``ABORTED`` only).
        text: one sentence for a person.
        phase: the answering side's phase, or ``None`` when it answered from
            its journal alone (after a restart).
    """

    message: ClassVar[Message] = Message.STATUS
    migration: str
    outcome: Outcome
    code: str | None = None
    text: str = ""
    phase: str | None = None


Frame: TypeAlias = Hello | Ready | Go | Ack | Refused | Abort | Query | Status


# -- encoding ----------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _payload(frame: Frame) -> dict[str, Any]:
    if isinstance(frame, Hello):
        return {"migration": frame.migration, "secret": frame.secret}
    if isinstance(frame, (Refused, Abort)):
        return {"code": frame.code, "message": _clip(frame.text), "phase": frame.phase}
    if isinstance(frame, Query):
        return {"migration": frame.migration, "from": frame.asker.value}
    if isinstance(frame, Status):
        return {
            "migration": frame.migration,
            "outcome": frame.outcome.value,
            "code": frame.code,
            "message": _clip(frame.text),
            "phase": frame.phase,
        }
    return {}


def encode(frame: Frame) -> bytes:
    """Return the bytes of one frame.

    Args:
        frame: the message to send; texts longer than 512 characters are cut.

    Returns:
        ``u8 type | u32 length | canonical CBOR payload``.

    Raises:
        HandoffError: ``FRAME_INVALID`` when a field is not what the message
            allows (a malformed migration id, a secret of the wrong size, a
            code that is not an upper-case word); ``FRAME_TOO_LARGE`` when the
            payload exceeds :data:`MAX_PAYLOAD`.
    """
    payload = _payload(frame)
    _check_fields(frame.message, payload)
    body = cbor2.dumps(payload, canonical=True)
    if len(body) > MAX_PAYLOAD[frame.message]:
        raise HandoffError(
            "FRAME_TOO_LARGE",
            f"a {frame.message.name} payload of {len(body)} bytes is too large",
            value=len(body),
            allowed=MAX_PAYLOAD[frame.message],
        )
    return _HEADER.pack(frame.message, len(body)) + body


# -- decoding ----------------------------------------------------------------

_KEYS: Mapping[Message, frozenset[str]] = MappingProxyType(
    {
        Message.HELLO: frozenset({"migration", "secret"}),
        Message.READY: frozenset(),
        Message.GO: frozenset(),
        Message.ACK: frozenset(),
        Message.REFUSED: frozenset({"code", "message", "phase"}),
        Message.ABORT: frozenset({"code", "message", "phase"}),
        Message.QUERY: frozenset({"migration", "from"}),
        Message.STATUS: frozenset({"migration", "outcome", "code", "message", "phase"}),
    }
)


def _invalid(message: Message, why: str, value: object = None) -> HandoffError:
    return HandoffError("FRAME_INVALID", f"{message.name}: {why}", value=value)


def _check_text(message: Message, key: str, value: Any, pattern: re.Pattern[str] | None) -> None:
    if not isinstance(value, str):
        raise _invalid(message, f"{key!r} must be a string", type(value).__name__)
    if pattern is not None and not pattern.fullmatch(value):
        raise _invalid(message, f"{key!r} is malformed", value[:80])
    if len(value) > MAX_TEXT:
        raise _invalid(message, f"{key!r} is longer than {MAX_TEXT} characters", len(value))


def _check_fields(message: Message, payload: Mapping[str, Any]) -> None:
    """Check a payload's keys and values; raise ``FRAME_INVALID``."""
    expected = _KEYS[message]
    if set(payload) != expected:
        raise _invalid(message, f"keys must be {sorted(expected)}", sorted(map(str, payload)))
    for key, value in payload.items():
        if key == "migration":
            _check_text(message, key, value, _ID)
            if len(value) > MAX_MIGRATION_ID:
                raise _invalid(message, "the migration id is too long", len(value))
        elif key == "secret":
            if not isinstance(value, bytes) or not MIN_SECRET <= len(value) <= MAX_SECRET:
                raise _invalid(message, f"the secret must be {MIN_SECRET}-{MAX_SECRET} bytes")
        elif key == "code":
            if not (value is None and message is Message.STATUS):
                _check_text(message, key, value, _CODE)
        elif key == "phase":
            if not (value is None and message is Message.STATUS):
                _check_text(message, key, value, _PHASE)
        elif key == "message":
            _check_text(message, key, value, None)
        elif key == "from":
            if value not in {r.value for r in Role}:
                raise _invalid(message, "'from' must be 'source' or 'destination'", value)
        elif key == "outcome" and value not in {o.value for o in Outcome}:
            raise _invalid(message, "unknown outcome", value)


def _build(message: Message, p: Mapping[str, Any]) -> Frame:
    if message is Message.HELLO:
        return Hello(p["migration"], p["secret"])
    if message is Message.READY:
        return Ready()
    if message is Message.GO:
        return Go()
    if message is Message.ACK:
        return Ack()
    if message is Message.REFUSED:
        return Refused(p["code"], p["message"], p["phase"])
    if message is Message.ABORT:
        return Abort(p["code"], p["message"], p["phase"])
    if message is Message.QUERY:
        return Query(p["migration"], Role(p["from"]))
    return Status(p["migration"], Outcome(p["outcome"]), p["code"], p["message"], p["phase"])


def decode_payload(message: Message, body: bytes) -> Frame:
    """Decode and validate the payload of one frame.

    Raises:
        HandoffError: ``FRAME_INVALID`` for anything but the canonical CBOR
            encoding of a map with exactly the message's keys and types.
    """
    try:
        payload = cbor2.loads(body)
        canonical = cbor2.dumps(payload, canonical=True)
    except Exception as exc:  # cbor2 raises several types on bad input
        raise _invalid(message, f"the payload is not CBOR ({exc})") from exc
    if canonical != body:
        raise _invalid(message, "the payload is not one canonical CBOR item")
    if not isinstance(payload, dict) or not all(isinstance(k, str) for k in payload):
        raise _invalid(message, "the payload must be a map with text keys")
    _check_fields(message, payload)
    return _build(message, payload)


def _header(buffer: bytes | bytearray, allowed: frozenset[Message]) -> tuple[Message, int] | None:
    """Read and check a frame header; ``None`` while it is incomplete."""
    if not buffer:
        return None
    kind = buffer[0]
    if kind not in Message._value2member_map_:
        raise HandoffError(
            "FRAME_INVALID",
            f"unknown frame type {kind}",
            value=kind,
            allowed=sorted(m.name for m in allowed),
        )
    message = Message(kind)
    if message not in allowed:
        raise HandoffError(
            "UNEXPECTED_MESSAGE",
            f"{message.name} is not expected here",
            value=message.name,
            allowed=sorted(m.name for m in allowed),
        )
    if len(buffer) < _HEADER.size:
        return None
    _, length = _HEADER.unpack_from(buffer)
    if length > MAX_PAYLOAD[message]:
        raise HandoffError(
            "FRAME_TOO_LARGE",
            f"a {message.name} frame announces {length} bytes",
            value=length,
            allowed=MAX_PAYLOAD[message],
        )
    return message, length


class FrameReader:
    """An incremental reader of control frames (bytes in, frames out).

    The reader never waits for more than one frame's header plus that
    message's largest payload: an oversized or unexpected header is refused
    as soon as it is seen.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    def __len__(self) -> int:
        return len(self._buffer)

    def take(self) -> bytes:
        """Return and forget every buffered byte (they belong to someone else)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def clear(self) -> None:
        """Forget every buffered byte."""
        self._buffer.clear()

    def preamble(self) -> bool:
        """Consume the connection preamble.

        Returns:
            ``True`` once it was consumed, ``False`` while it is incomplete.

        Raises:
            HandoffError: ``HELLO_INVALID`` as soon as the bytes cannot be the
                magic; ``PROTOCOL_UNSUPPORTED`` for another major version.
        """
        head = bytes(self._buffer[: len(MAGIC)])
        if not MAGIC.startswith(head):
            raise HandoffError(
                "HELLO_INVALID",
                "the connection does not start with the devmig magic",
                value=head.hex(),
                allowed=MAGIC.hex(),
            )
        if len(self._buffer) < _PREAMBLE.size:
            return False
        _, major, minor = _PREAMBLE.unpack_from(self._buffer)
        if major != PROTOCOL_MAJOR:
            raise HandoffError(
                "PROTOCOL_UNSUPPORTED",
                f"protocol {major}.{minor} is not supported",
                value=f"{major}.{minor}",
                allowed=f"{PROTOCOL_MAJOR}.x",
            )
        del self._buffer[: _PREAMBLE.size]
        return True

    def bytes_needed(self, allowed: frozenset[Message], *, preamble: bool = False) -> int:
        """Bytes still to receive to complete the next frame, and nothing beyond it.

        Args:
            allowed: the messages acceptable now; their largest payload caps
                what a header may announce (a larger one is refused anyway).
            preamble: the connection preamble comes first (not consumed yet).

        Returns:
            What completes the preamble and the frame header first, then what
            completes the announced payload; 0 once a frame is complete.
        """
        head = (_PREAMBLE.size if preamble else 0) + _HEADER.size
        have = len(self._buffer)
        if have < head:
            return head - have
        length = int(_HEADER.unpack_from(self._buffer, head - _HEADER.size)[1])
        return max(0, head + min(length, max(MAX_PAYLOAD[m] for m in allowed)) - have)

    def peek(self) -> Message | None:
        """Return the type of the next frame once its first byte is in (else ``None``)."""
        if not self._buffer or self._buffer[0] not in Message._value2member_map_:
            return None
        return Message(self._buffer[0])

    def next_frame(self, allowed: frozenset[Message]) -> Frame | None:
        """Return the next complete frame, or ``None`` while it is incomplete.

        Args:
            allowed: the messages acceptable now; any other is refused from
                its first byte.

        Raises:
            HandoffError: ``FRAME_INVALID``, ``FRAME_TOO_LARGE`` or
                ``UNEXPECTED_MESSAGE``. The reader is then unusable.
        """
        head = _header(self._buffer, allowed)
        if head is None:
            return None
        message, length = head
        end = _HEADER.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[_HEADER.size : end])
        del self._buffer[:end]
        return decode_payload(message, body)


def read_single(data: bytes, message: Message) -> Frame:
    """Decode a body that must hold exactly one frame of one message type.

    This is how out-of-band messages (QUERY, STATUS) arrive: as a whole
    request or response body.

    Raises:
        HandoffError: as :meth:`FrameReader.next_frame`; ``FRAME_INVALID``
            when the body is shorter or longer than that one frame.
    """
    reader = FrameReader()
    reader.feed(data)
    frame = reader.next_frame(frozenset({message}))
    if frame is None or len(reader):
        raise HandoffError(
            "FRAME_INVALID",
            f"the body must hold exactly one {message.name} frame",
            value=len(data),
        )
    return frame


def read_query(data: bytes) -> Query:
    """Decode the body of an out-of-band QUERY.

    An agent calls this on a query it receives, to find the migration it is
    about, then answers with the live handoff's ``answer_query()`` or, when it
    holds none (it restarted), from its journal.

    Raises:
        HandoffError: the body is not exactly one valid QUERY frame.
    """
    frame = read_single(data, Message.QUERY)
    assert isinstance(frame, Query)
    return frame
