"""What a stream's records do to the destination, once their framing checked out.

:class:`Load` holds the destination side of one load: the expected model and
canonical configuration, the layout, the regions, the coverage of every
region, the pre-copy round, and the staged sections. The decoder hands it each
record's verified payload; it checks the record's meaning, applies what can be
applied in place (ZERO, decompressed BULK, coverage), stages sections, and
returns the event. Every refusal is a :class:`StreamError` naming the record
index and round (kept in :attr:`Load.record` and :attr:`Load.round`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from devmig._errors import StreamError
from devmig.state._coverage import PageCoverage
from devmig.state._declaration import StateLayout
from devmig.state._events import Bulk, Discarded, Header, RoundEnd, Section, Trailer, Zero
from devmig.state._payloads import parse_header, parse_section
from devmig.state._problems import ConfigValue, config_differences, error_from_problems
from devmig.state._records import ROUND_END_PAYLOAD, VERSION_MAJOR, ZERO_PAYLOAD
from devmig.state._region import Region

__all__ = ["Load"]


class Load:
    """The destination side of one load.

    Attributes:
        record: index of the record being handled (set by the decoder).
        round: pre-copy rounds ended so far.
        bulk_bytes, zero_bytes: bytes written by BULK and ZERO records.
        discarded_records, discarded_bytes: ``LIVE`` BULK records discarded
            for a wrong digest, and their raw lengths (DESIGN §4); kept when
            the load fails, as statistics of the attempt.
        discarded_by_region: discarded bytes per region.
    """

    def __init__(
        self,
        model: str,
        config: dict[str, ConfigValue],
        layout: StateLayout,
        regions: Sequence[Region],
    ) -> None:
        self.model = model
        self.config = config
        self.layout = layout
        self.regions = tuple(regions)
        self.coverage = [PageCoverage(r.size) for r in layout.regions]
        self.staged: dict[str, dict[str, Any]] = {}
        self.record = -1
        self.round = 0
        self.bulk_bytes = 0
        self.zero_bytes = 0
        self.discarded_records = 0
        self.discarded_bytes = 0
        self.discarded_by_region = [0] * len(self.regions)
        self._next_section = 0

    def fail(self, code: str, message: str, **where: Any) -> NoReturn:
        """Raise a StreamError located at the current record and round."""
        where.setdefault("record", self.record if self.record >= 0 else None)
        where.setdefault("round", self.round)
        raise StreamError(code, message, **where)

    def located(self, exc: StreamError) -> StreamError:
        """Return ``exc`` with the current record and round filled in where it lacks them."""
        if (exc.record is not None and exc.round is not None) or len(exc.problems) != 1:
            return exc
        problem = exc.problems[0]
        located = StreamError(
            problem.code,
            problem.message,
            record=exc.record if exc.record is not None else self.record,
            round=self.round,
            section=exc.section,
            region=exc.region,
            offset=exc.offset,
            value=problem.value,
            allowed=problem.allowed,
            hint=problem.hint,
        )
        located.__cause__ = exc.__cause__
        return located

    # -- records ---------------------------------------------------------------

    def header(self, body: memoryview, minor: int) -> Header:
        """Check HEADER against the destination (typed comparison) and return its event."""
        model, config, producer = parse_header(body, record=self.record)
        if model != self.model:
            self.fail(
                "CONFIG_MISMATCH",
                f"stream is for model {model!r}, this device is {self.model!r}",
                value=model,
                allowed=self.model,
            )
        diffs = config_differences(config, self.config)
        if diffs:
            name, got, expected = diffs[0]
            self.fail(
                "CONFIG_MISMATCH",
                f"configuration differs: {name} is {got!r} in the stream, {expected!r} here"
                + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""),
                value=config,
                allowed=self.config,
                hint="; ".join(f"{n}: stream {g!r} vs here {e!r}" for n, g, e in diffs),
            )
        return Header(VERSION_MAJOR, minor, model, config, producer)

    def region(self, index: int, offset: int, length: int) -> Region:
        """Return region ``index`` after checking ``[offset, offset + length)`` lies inside it."""
        if index >= len(self.regions):
            self.fail(
                "BULK_OUT_OF_RANGE",
                f"no region {index}",
                region=index,
                offset=offset,
                allowed={"min": 0, "max": len(self.regions) - 1},
            )
        target = self.regions[index]
        if offset + length > target.size:
            self.fail(
                "BULK_OUT_OF_RANGE",
                f"bytes [{offset}, {offset + length}) outside region {target.name!r} "
                f"of {target.size} bytes",
                region=index,
                offset=offset,
                value=length,
                allowed={"min": 0, "max": target.size},
            )
        return target

    def bulk(
        self, index: int, offset: int, length: int, *, compressed: bool, live: bool = False
    ) -> Bulk:
        """Record that a BULK landed (its bytes are already in the region)."""
        self.coverage[index].add(offset, length)
        self.bulk_bytes += length
        return Bulk(index, offset, length, self.round, compressed, live)

    def discard(self, index: int, offset: int, length: int) -> Discarded:
        """Discard a ``LIVE`` BULK whose digest was wrong: its range is no longer covered.

        The range is removed from the coverage even where earlier records had
        covered it; only a later record covers it again. More than twice the
        region's size discarded refuses the stream (``DISCARD_LIMIT``).
        """
        self.coverage[index].remove(offset, length)
        self.discarded_records += 1
        self.discarded_bytes += length
        self.discarded_by_region[index] += length
        size = self.regions[index].size
        if self.discarded_by_region[index] > 2 * size:
            self.fail(
                "DISCARD_LIMIT",
                f"{self.discarded_by_region[index]} bytes of region "
                f"{self.layout.regions[index].name!r} discarded, more than twice its {size}",
                region=index,
                offset=offset,
                value=self.discarded_by_region[index],
                allowed=2 * size,
            )
        return Discarded(index, offset, length, self.round)

    def zero(self, body: memoryview) -> Zero:
        """Apply a ZERO record in place."""
        index, offset, length = ZERO_PAYLOAD.unpack(body)
        target = self.region(index, offset, length)
        target.data[offset : offset + length] = 0
        self.coverage[index].add(offset, length)
        self.zero_bytes += length
        return Zero(index, offset, length, self.round)

    def round_end(self, body: memoryview) -> RoundEnd:
        """End the current pre-copy round; its number must be the expected one."""
        (number,) = ROUND_END_PAYLOAD.unpack(body)
        if number != self.round:
            self.fail(
                "STREAM_ORDER", f"ROUND_END of round {number}", value=number, allowed=self.round
            )
        self.round += 1
        return RoundEnd(number)

    def section(self, body: memoryview) -> Section:
        """Check a SECTION (known, order, once, fields) and stage it; skip an unknown optional one."""
        name, optional, fields = parse_section(body, record=self.record)
        spec = self.layout.section(name)
        if spec is None:
            if not optional:
                self.fail(
                    "SECTION_UNKNOWN",
                    f"required section {name!r} is not known (or not active) here",
                    section=name,
                    allowed=[s.name for s in self.layout.sections],
                )
            return Section(name, optional, fields, skipped=True)
        if optional != spec.optional:
            self.fail(
                "SECTION_INVALID",
                f"section {name!r} is {'optional' if spec.optional else 'required'} here",
                section=name,
                value=optional,
                allowed=spec.optional,
            )
        if name in self.staged:
            self.fail("SECTION_DUPLICATE", f"section {name!r} came twice", section=name)
        if spec.position < self._next_section:
            self.fail(
                "STREAM_ORDER",
                f"section {name!r} out of declaration order",
                section=name,
                allowed=[s.name for s in self.layout.sections[self._next_section :]],
            )
        self._check_required(self._next_section, spec.position)
        if len(body) > spec.max_size:
            self.fail(
                "TOO_LARGE",
                f"section {name!r} larger than its declaration allows",
                section=name,
                value=len(body),
                allowed=spec.max_size,
            )
        try:
            values = self.layout.validate_section(name, fields)
        except StreamError as exc:
            raise error_from_problems(
                list(exc.problems), record=self.record, round=self.round, section=name
            ) from None
        self.staged[name] = values
        self._next_section = spec.position + 1
        return Section(name, optional, values)

    def _check_required(self, start: int, stop: int) -> None:
        for skipped in self.layout.sections[start:stop]:
            if not skipped.optional:
                self.fail(
                    "SECTION_MISSING",
                    f"required section {skipped.name!r} is missing",
                    section=skipped.name,
                )

    def trailer(self, body: memoryview, expected: bytes, offset: int) -> Trailer:
        """Verify the stream digest, that every required section came and every byte was covered."""
        if bytes(body) != expected:
            self.fail(
                "DIGEST_MISMATCH",
                "stream digest does not match the TRAILER",
                offset=offset,
                value=bytes(body).hex(),
                allowed=expected.hex(),
            )
        self._check_required(self._next_section, len(self.layout.sections))
        for index, coverage in enumerate(self.coverage):
            gap = coverage.first_gap()
            if gap is not None:
                self.fail(
                    "BULK_INCOMPLETE",
                    f"region {self.layout.regions[index].name!r} not covered from byte {gap}",
                    region=index,
                    offset=gap,
                )
        return Trailer(bytes(body))

    def reset(self) -> None:
        """Reset every region to its creation contents and drop what was staged."""
        for region in self.regions:
            region.reset()
        for coverage in self.coverage:
            coverage.reset()
        self.staged.clear()
