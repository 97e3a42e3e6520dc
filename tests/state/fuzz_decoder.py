"""Fuzzing the stream decoder: any input gives events or a StreamError, nothing else.

Used two ways:

- by ``test_state_fuzz.py`` (hypothesis drives :func:`mutate` and :func:`check`);
- standalone, a random-mutation fuzzer for a time budget::

      uv run python tests/state/fuzz_decoder.py --seconds 30 [--seed N]

  It prints how many inputs ran and how they ended, and exits non-zero (after
  printing the input as hex) when anything other than a ``DevmigError`` escapes.

Mutations act on a valid stream; half of them then *re-frame* the result
(recompute every record digest and the trailer digest) so that the input gets
past the checksums and reaches CBOR decoding, section validation, coverage,
order and limits.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import cbor2
import xxhash
from state_helpers import (
    DECL,
    FULL,
    blank_regions,
    decode_all,
    decode_zero_copy,
    decoder_for,
    encode_stream,
    framing_digest,
    make_regions,
    sections_for,
)

from devmig import DevmigError
from devmig.state import inspect_stream
from devmig.state._records import DIGEST, RECORD_HEAD, RecordType

LAYOUT = DECL.layout(FULL)


def seeds() -> list[bytes]:
    """Valid streams to mutate: raw, compressed, with rounds."""
    out = []
    for compress, rounds in ((False, 0), (True, 2), (False, 3)):
        src = make_regions(LAYOUT, seed=rounds)
        out.append(
            encode_stream(
                LAYOUT, src, sections_for(LAYOUT), compress=compress, rounds=rounds, chunk_size=4096
            )
        )
    return out


def reframe(data: bytes) -> bytes:
    """Recompute every record digest and the trailer digest, walking records best-effort."""
    out = bytearray(data[:8])
    pos = 8
    while pos + 6 <= len(data):
        rtype, _, length = RECORD_HEAD.unpack(data[pos : pos + 6])
        end = pos + 6 + length + 8
        if end > len(data):
            out += data[pos:]
            return bytes(out)
        payload = data[pos + 6 : end - 8]
        if rtype == RecordType.TRAILER and length == 16:
            payload = framing_digest(bytes(out))
        out += data[pos : pos + 6] + payload + DIGEST.pack(xxhash.xxh3_64_intdigest(payload))
        pos = end
    out += data[pos:]
    return bytes(out)


def split_records(data: bytes) -> tuple[bytes, list[bytes]] | None:
    """Split a well-framed stream into its preamble and records (``None`` if it is not)."""
    records = []
    pos = 8
    while pos < len(data):
        if pos + 6 > len(data):
            return None
        _, _, length = RECORD_HEAD.unpack(data[pos : pos + 6])
        end = pos + 6 + length + 8
        if end > len(data):
            return None
        records.append(data[pos:end])
        pos = end
    return data[:8], records


_ODD_VALUES: list[Any] = [
    -1, 0, 1, 255, 256, 1 << 16, 1 << 32, (1 << 64) - 1, -(1 << 63), True, False, None,
    "", "x" * 100, b"", b"\xff" * 50, [], [1, 2, 3], [-1], list(range(100)), {}, {"a": 1}, 1.5,
]  # fmt: skip


def mutate_records(data: bytes, rng: random.Random) -> bytes:
    """Structure-aware mutation: drop, repeat, swap records, or edit a CBOR payload; re-framed."""
    split = split_records(data)
    if split is None or not split[1]:
        return data
    start, records = split
    kind = rng.randrange(4)
    i = rng.randrange(len(records))
    if kind == 0 and len(records) > 1:
        del records[i]
    elif kind == 1:
        records.insert(i, records[rng.randrange(len(records))])
    elif kind == 2:
        j = rng.randrange(len(records))
        records[i], records[j] = records[j], records[i]
    else:
        cbor_records = [
            k for k, r in enumerate(records) if r[0] in (RecordType.HEADER, RecordType.SECTION)
        ]
        if cbor_records:
            k = rng.choice(cbor_records)
            value = cbor2.loads(records[k][6:-8])
            _edit(value, rng)
            payload = cbor2.dumps(value)
            records[k] = (
                records[k][:1] + b"\x00" + len(payload).to_bytes(4, "big") + payload + bytes(8)
            )
    return reframe(start + b"".join(records))


def _edit(value: Any, rng: random.Random) -> None:
    """Change, add or remove one entry somewhere in a decoded CBOR map."""
    target = value
    while isinstance(target, dict) and target and rng.random() < 0.6:
        inner = [k for k, v in target.items() if isinstance(v, dict)]
        if not inner:
            break
        target = target[rng.choice(inner)]
    if not isinstance(target, dict):
        return
    action = rng.randrange(3)
    if action == 0 and target:
        del target[rng.choice(list(target))]
    elif action == 1:
        target[rng.choice(["extra", "name", "optional", "fields", "model", "config"])] = rng.choice(
            _ODD_VALUES
        )
    elif target:
        target[rng.choice(list(target))] = rng.choice(_ODD_VALUES)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Apply one to four random mutations (sometimes re-framed, sometimes structure-aware)."""
    if rng.random() < 0.3:
        return mutate_records(data, rng)
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        if not buf:
            buf += rng.randbytes(rng.randrange(1, 50))
            continue
        kind = rng.randrange(8)
        i = rng.randrange(len(buf))
        if kind == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            buf[i] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif kind == 2:
            buf[i:i] = rng.randbytes(rng.randrange(1, 40))
        elif kind == 3:
            del buf[i : i + rng.randrange(1, 200)]
        elif kind == 4:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j : j + rng.randrange(1, 300)]
        elif kind == 5:
            del buf[i:]
        elif kind == 6 and i + 4 <= len(buf):
            buf[i : i + 4] = rng.choice(
                [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"]
            )
        else:
            buf[i : i + 1] = bytes([rng.choice([0xA0, 0xBF, 0x9F, 0xC1, 0xF9, 0x1B, 0x5B, 0x7B])])
    return reframe(bytes(buf)) if rng.random() < 0.5 else bytes(buf)


def check(data: bytes, rng: random.Random | None = None) -> str:
    """Decode ``data`` both ways and inspect it; return how it ended ("ok" or an error code).

    Raises:
        Whatever escaped that is not a DevmigError (a bug), or AssertionError
        when the two input paths disagree.
    """
    outcomes = []
    for zero_copy in (False, True):
        decoder = decoder_for(LAYOUT, blank_regions(LAYOUT), max_chunk=1 << 16, max_section=1 << 14)
        try:
            if zero_copy:
                decode_zero_copy(decoder, data, rng, sizes=range(1, 5000))
            else:
                decode_all(decoder, data)
            decoder.staged_sections()
            outcomes.append("ok")
        except DevmigError as exc:
            outcomes.append(exc.code)
    assert outcomes[0] == outcomes[1], outcomes
    with contextlib.suppress(DevmigError):
        inspect_stream(data)
    return outcomes[0]


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz the devmig stream decoder.")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    corpus = seeds()
    outcomes: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + args.seconds
    runs = 0
    print(f"fuzzing for {args.seconds:g} s, seed {seed}")
    while time.monotonic() < deadline:
        if rng.random() < 0.05:
            data = rng.randbytes(rng.randrange(0, 400))
        else:
            data = mutate(rng.choice(corpus), rng)
        try:
            outcomes[check(data, rng)] += 1
        except BaseException as exc:
            print(f"FAILURE after {runs} inputs: {type(exc).__name__}: {exc}")
            print(f"input ({len(data)} bytes): {data.hex()}")
            return 1
        runs += 1
    print(f"{runs} inputs, no escape; outcomes:")
    for code, count in outcomes.most_common():
        print(f"  {code:22} {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
