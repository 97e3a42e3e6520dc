"""Public helpers for device authors' tests: a migrate round-trip and a cross-release matrix.

Both run the source and the destination in one process through the real
codec — the same records an agent would send over a socket — and compare
against *unmigrated* runs:

* :func:`migrate_round_trip` runs ``steps`` seeded work steps on a source,
  starts pre-copy after ``migrate_at - precopy_steps`` steps, keeps working
  between pre-copy rounds (so memory is dirtied under the send), stops and
  copies, loads the stream into a destination of another (or the same)
  release, resumes it and finishes the steps there. It checks that the
  destination's digest at switch-over equals the source's, and that the
  output log and the final digest equal those of unmigrated runs on *both*
  releases.
* :func:`cross_release_matrix` does that for every ordered pair of releases
  and every configuration worth trying (every published version, the init
  configuration, one configuration that is no version, the *boundary
  configurations* the document implies — see :func:`boundary_configs` — and
  any the caller adds). A pair the compatibility check refuses must fail
  before any BULK record, with the check's reasons, and the destination must
  refuse the configuration too. In strict mode (the default) a configuration
  an older release accepts that a newer one refuses is a failure: a release
  that strands old devices is red.
* :func:`assert_layout_published` checks that a release's declaration and the
  state layout its document publishes are the same.

Example::

    from devmig.testing import cross_release_matrix
    report = cross_release_matrix([MyDeviceV1, MyDeviceV2], steps=200)
    report.raise_for_failures()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devmig._errors import ConfigError, Problem
from devmig.compat import check
from devmig.device import Device
from devmig.migration import State
from devmig.model import Config, DeviceModel, IntParam, expand, version_of
from devmig.state import RoundEndSignal

__all__ = [
    "MatrixCell",
    "MatrixReport",
    "RoundTrip",
    "assert_layout_published",
    "boundary_configs",
    "configs_to_try",
    "cross_release_matrix",
    "migrate_round_trip",
    "run_unmigrated",
]

HostFactory = Callable[[str], Mapping[str, Any]]
"""Returns the host-only settings for a device; called with ``"source"``, ``"destination"`` or a run name."""


def _no_host(_role: str) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class RunResult:
    """An unmigrated run: its output log and final state digest."""

    log: list[tuple[Any, ...]]
    digest: bytes


def run_unmigrated(
    cls: type[Device], config: Config | str, *, seed: int, steps: int, host: Mapping[str, Any] | None = None
) -> RunResult:
    """Run ``steps`` seeded steps on one device that never migrates."""
    device = _create(cls, config, host, seed)
    try:
        device.step(steps)
        return RunResult(list(device.log), device.digest())
    finally:
        device.close()



def _create(cls: type[Device], config: Config | str, host: Mapping[str, Any] | None, seed: int) -> Device:
    if isinstance(config, Config):
        device = cls.create_canonical(config, host=host)
        device.seed = seed
        return device
    return cls.create(config, host=host, seed=seed)


@dataclass
class RoundTrip:
    """What one migrate round-trip did and saw.

    Attributes:
        config: the canonical configuration migrated.
        log: the source's log up to the switch-over, then the destination's.
        digest_source: the source's state digest when it stopped.
        digest_destination: the destination's digest right after loading.
        digest_final: the destination's digest after the last step.
        stream_bytes: bytes of the stream; rounds: pre-copy rounds sent.
        destination: the destination device (still open).
    """

    config: Config
    log: list[tuple[Any, ...]]
    digest_source: bytes
    digest_destination: bytes
    digest_final: bytes
    stream_bytes: int
    rounds: int
    destination: Device


def migrate_round_trip(
    source_cls: type[Device],
    destination_cls: type[Device],
    config: Config | str | None = None,
    *,
    seed: int = 0,
    steps: int = 100,
    migrate_at: int = 50,
    precopy_rounds: int = 2,
    steps_per_round: int = 5,
    chunk_bytes: int = 1 << 16,
    host: HostFactory = _no_host,
) -> RoundTrip:
    """Migrate a device from one release to another in one process, through the real codec.

    Args:
        source_cls, destination_cls: the releases.
        config: the configuration string (on the source) or a canonical
            configuration; ``None`` for the init values.
        seed: the workload seed.
        steps: total steps of work; the switch-over happens after ``migrate_at``.
        precopy_rounds: pre-copy rounds while the source keeps working,
            ``steps_per_round`` steps after each round.
        chunk_bytes: how much to read from the source at a time.
        host: host-only settings per role.

    Returns:
        A :class:`RoundTrip`. It does *not* compare against unmigrated runs;
        :func:`cross_release_matrix` does.

    Raises:
        ConfigError: the destination refuses the configuration (nothing streamed).
        StreamError: the destination refused the stream.
    """
    source = _create(source_cls, config or "", host("source"), seed)
    canonical = source.config
    destination = destination_cls.create_canonical(canonical, host=host("destination"))
    destination.set_state(State.RESUMING)
    pre_steps = min(migrate_at, precopy_rounds * steps_per_round)
    source.step(migrate_at - pre_steps)
    sent = 0
    rounds = 0

    def pump() -> bool:
        """Move source data to the destination; True at a round's end, False at the stream's."""
        nonlocal sent
        while True:
            chunk = source.read_data(chunk_bytes)
            if isinstance(chunk, RoundEndSignal):
                return True
            if chunk == []:
                return False
            for buf in chunk:
                destination.write_data(buf)
                sent += len(buf)

    if precopy_rounds and source.flags & source.flags.PRE_COPY:
        source.set_state(State.PRE_COPY)
        done = 0
        while rounds < precopy_rounds:
            pump()
            rounds += 1
            step_now = min(steps_per_round, pre_steps - done)
            if step_now:
                source.step(step_now)
                done += step_now
        if done < pre_steps:
            source.step(pre_steps - done)
    else:
        source.step(pre_steps)
    source.set_state(State.STOP_COPY)
    digest_source = source.digest()
    pump()
    destination.set_state(State.STOP)
    digest_destination = destination.digest()
    source.set_state(State.STOP)
    destination.set_state(State.RUNNING)
    destination.step(steps - migrate_at)
    log = list(source.log) + list(destination.log)
    source.close()
    return RoundTrip(
        canonical, log, digest_source, digest_destination, destination.digest(), sent, rounds, destination
    )


def configs_to_try(source: DeviceModel, destination: DeviceModel) -> list[tuple[str, str]]:
    """Return ``(label, option string)`` pairs worth migrating from ``source``'s model.

    Every version the source publishes (whether the destination accepts it is
    for the check to say), the init configuration, and one configuration
    that equals no version: the init values with one parameter moved to
    another allowed value.
    """
    out = [(f"version={v.name}", f"version={v.name}") for v in source.versions]
    out.append(("init", ""))
    init = expand(source, "")
    for name, param in sorted(source.params.items()):
        for candidate in _other_values(param, init.full(source)[name]):
            text = ",".join(_replace(init, name, candidate))
            try:
                config = expand(source, text)
            except ConfigError:
                continue
            if version_of(source, config) is None:
                out.append((f"no-version:{text}", text))
                return out
    return out


def boundary_configs(model: DeviceModel) -> list[tuple[str, str]]:
    """Return ``(label, option string)`` for the boundary configurations a document implies.

    One parameter at a time from the init configuration: both ends and the
    step neighbours of every allowed range, every allowed string, both
    booleans, and each constraint's edges (a ``min`` or ``max`` and the value
    beside it, each literal and ``in`` value). Only configurations the model
    accepts are kept, each once (labels ``boundary:name=value``).
    """
    init = expand(model, "")
    full = init.full(model)
    seen = {init.string}
    out: list[tuple[str, str]] = []
    edges: dict[str, list[Any]] = {}
    for constraint in model.constraints:
        for part in (constraint.when, constraint.require):
            for name, cond in part.items():
                edges.setdefault(name, []).extend(_edge_values(cond))
    for name, param in sorted(model.params.items()):
        values: list[Any] = []
        if isinstance(param, IntParam):
            for r in param.allowed:
                step = r.step or 1
                values += [r.min, r.min + step, r.last - step, r.last]
        else:
            values += list(param.allowed)
        values += [v for v in edges.get(name, ()) if param.allows(v)]
        for value in dict.fromkeys(values):
            if not param.allows(value) or (type(value) is type(full[name]) and value == full[name]):
                continue
            text = ",".join(_replace(init, name, value))
            try:
                config = expand(model, text)
            except ConfigError:
                continue
            if config.string not in seen:
                seen.add(config.string)
                out.append((f"boundary:{name}={_fmt(value)}", text))
    return out


def _edge_values(cond: Any) -> list[Any]:
    if isinstance(cond, (bool, int, str)):
        return [cond]
    if hasattr(cond, "in_"):
        return list(cond.in_)
    out = []
    for bound, beside in ((getattr(cond, "min", None), -1), (getattr(cond, "max", None), 1)):
        if bound is not None:
            out += [bound, bound + beside]
    return out


def assert_layout_published(cls: type[Device], configs: Sequence[str] = ()) -> None:
    """Check that a release's declaration equals the state layout its document publishes.

    Compares the layout generated from ``cls.state`` with the document's
    ``"state"`` as written, then resolves both for the init configuration,
    every version, every boundary configuration and ``configs``.

    Raises:
        AssertionError: naming the first difference (regenerate the document
            with ``devmig state-layout``), or the document publishes no layout.
    """
    from devmig.state import declaration_difference

    model = cls.model()
    generated = cls.published_layout()
    if generated is None:
        raise AssertionError(f"{cls.__name__}: the declaration uses a Python callable: {cls.state.callables}")
    if model.state is None:
        raise AssertionError(f"{cls.__name__}: the document publishes no state layout (devmig state-layout)")
    if generated != model.state:
        raise AssertionError(f"{cls.__name__}: the document's state layout is not the generated one")
    texts = ["", *(f"version={v.name}" for v in model.versions), *(t for _, t in boundary_configs(model)), *configs]
    for text in texts:
        full = expand(model, text).full(model)
        found = declaration_difference(cls.state, model.state, full)
        if found is not None:
            raise AssertionError(f"{cls.__name__} [{text!r}]: " + found.describe("the declaration", "the document"))


def _replace(config: Config, name: str, value: Any) -> list[str]:
    items = dict(config.items)
    items[name] = value
    return [f"{k}={_fmt(v)}" for k, v in sorted(items.items())]


def _other_values(param: Any, current: Any) -> list[Any]:
    if param.type_name == "bool":
        return [v for v in param.allowed if v is not current]
    if param.type_name == "str":
        return [v for v in param.allowed if v != current]
    values = []
    for r in param.allowed:
        for v in (r.min, r.last, r.min + (r.step or 1)):
            if v != current and r.contains(v) and v not in values:
                values.append(v)
    return values


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).replace(",", ",,")


@dataclass
class MatrixCell:
    """One (source release, destination release, configuration) of the matrix."""

    source: str
    destination: str
    label: str
    config: str
    outcome: str
    """``migrated``, ``refused`` (by the check, before any BULK record), ``skipped``
    (its regions exceed ``max_region_bytes``) or ``FAILED``."""
    reasons: tuple[Problem, ...] = ()
    failure: str = ""


@dataclass
class MatrixReport:
    """The cells of a cross-release matrix run."""

    cells: list[MatrixCell] = field(default_factory=list)

    @property
    def failures(self) -> list[MatrixCell]:
        """The cells that failed."""
        return [c for c in self.cells if c.outcome == "FAILED"]

    def count(self, outcome: str) -> int:
        """How many cells ended with ``outcome``."""
        return sum(1 for c in self.cells if c.outcome == outcome)

    @property
    def configs(self) -> list[str]:
        """Every configuration label tried, in order (``boundary:...`` for the generated ones)."""
        return list(dict.fromkeys(c.label for c in self.cells))

    def render(self) -> str:
        """Return one line per cell: ``source -> destination [label] outcome``."""
        lines = []
        for c in self.cells:
            line = f"{c.source} -> {c.destination} [{c.label}] {c.outcome}"
            if c.outcome == "refused":
                line += " " + ",".join(p.code for p in c.reasons)
            elif c.failure:
                line += f": {c.failure}"
            lines.append(line)
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise ``AssertionError`` listing every failed cell."""
        if self.failures:
            lines = [f"{c.source} -> {c.destination} [{c.label}]: {c.failure}" for c in self.failures]
            raise AssertionError(f"{len(lines)} matrix cell(s) failed:\n" + "\n".join(lines))


def cross_release_matrix(
    releases: Sequence[type[Device]],
    *,
    seed: int = 1,
    steps: int = 120,
    migrate_at: int = 60,
    precopy_rounds: int = 2,
    steps_per_round: int = 5,
    chunk_bytes: int = 1 << 20,
    host: Callable[[type[Device], str], Mapping[str, Any]] | None = None,
    configs: Sequence[str] = (),
    boundaries: bool = True,
    max_region_bytes: int = 256 << 20,
    strict: bool = True,
) -> MatrixReport:
    """Migrate between every ordered pair of releases (older→newer and newer→older).

    For each pair and each configuration of :func:`configs_to_try` (with
    ``boundaries``, also :func:`boundary_configs` of the source's document),
    and each of ``configs``: when the
    compatibility check accepts, migrate and require the output log and the
    final digest to equal unmigrated runs on *both* releases, and the
    digests to agree at switch-over; when it refuses, require the destination
    to refuse the canonical configuration too (the check passes ⇔ the
    destination accepts) — the migration fails before any BULK record, with
    the check's reasons.

    Args:
        releases: the release classes of one device model, oldest first.
        chunk_bytes: how much to read from a source at a time.
        configs: extra option strings to try (on each source; those a source
            refuses are skipped there).
        boundaries: add the boundary configurations each document implies.
        max_region_bytes: a configuration whose regions together exceed this
            on the source is skipped (a cell ``skipped``): a 4 GiB region
            would take minutes and gigabytes.
        strict: a configuration an older release accepts that a newer one
            refuses fails its cell (``stranded``), even though the check
            predicted it; a refusal the check does not predict exactly (its
            codes and parameters) fails in either mode.
        host: host-only settings per ``(release class, role)``; the roles are
            ``"probe"`` (a destination created only to see whether it accepts
            the configuration), ``"baseline"`` (an unmigrated run),
            ``"source"`` and ``"destination"`` — a destination is asked for
            right after its source, so the two may share storage.

    Returns:
        A :class:`MatrixReport`; call :meth:`MatrixReport.raise_for_failures`.
    """
    report = MatrixReport()
    host_for = host or (lambda _cls, _role: {})
    baselines: dict[tuple[str, str], RunResult] = {}

    def baseline(cls: type[Device], config: Config) -> RunResult:
        key = (cls.implementation().release, config.string)
        if key not in baselines:
            baselines[key] = run_unmigrated(cls, config, seed=seed, steps=steps, host=host_for(cls, "baseline"))
        return baselines[key]

    for i, src in enumerate(releases):
        src_model = src.model()
        for j, dst in enumerate(releases):
            tries = configs_to_try(src_model, dst.model())
            if boundaries:
                known = {t for _, t in tries}
                tries += [(label, t) for label, t in boundary_configs(src_model) if t not in known]
            tries += [(f"extra:{t}", t) for t in configs]
            for label, text in tries:
                cell = MatrixCell(src.implementation().release, dst.implementation().release, label, text, "")
                try:
                    config = expand(src_model, text)
                except ConfigError:
                    continue  # an extra configuration this source refuses
                report.cells.append(cell)
                if src.declaration().layout(config.full(src_model)).region_bytes > max_region_bytes:
                    cell.outcome = "skipped"
                    cell.failure = f"regions above max_region_bytes={max_region_bytes}"
                    continue
                try:
                    _run_cell(cell, src, dst, text, baseline, seed, steps, migrate_at, precopy_rounds,
                              steps_per_round, chunk_bytes, host_for)
                except Exception as exc:  # a failing cell is data for the report
                    cell.outcome = "FAILED"
                    cell.failure = f"{type(exc).__name__}: {exc}"
                if strict and cell.outcome == "refused" and i < j:
                    cell.outcome = "FAILED"
                    cell.failure = (
                        "stranded: the newer release refuses a configuration the older one accepts ("
                        + "; ".join(f"{p.code} {'.'.join(map(str, p.loc))}" for p in cell.reasons) + ")"
                    )
    return report


def _run_cell(
    cell: MatrixCell,
    src: type[Device],
    dst: type[Device],
    text: str,
    baseline: Callable[[type[Device], Config], RunResult],
    seed: int,
    steps: int,
    migrate_at: int,
    precopy_rounds: int,
    steps_per_round: int,
    chunk_bytes: int,
    host_for: Callable[[type[Device], str], Mapping[str, Any]],
) -> None:
    config = expand(src.model(), text)
    verdict = check(src.model(), config, dst.document())
    refusal: tuple[Problem, ...] = ()
    try:
        dst.create_canonical(config, host=host_for(dst, "probe")).close()
        accepted = True
    except ConfigError as exc:
        accepted = False
        refusal = tuple(exc.problems)
    # rules 5 and 6 compare the two releases' models: a destination alone cannot refuse by them
    creation_rules = [p for p in verdict.reasons if p.context.get("rule") not in (5, 6)]
    if not verdict.compatible and not creation_rules and accepted:
        cell.outcome = "refused"
        cell.reasons = verdict.reasons
        return
    if verdict.compatible != accepted:
        cell.outcome = "FAILED"
        cell.failure = f"check says compatible={verdict.compatible} but the destination accepted={accepted}"
        return
    if not verdict.compatible:
        predicted = sorted({(p.code, p.loc) for p in creation_rules})
        actual = sorted({(p.code, p.loc) for p in refusal})
        if predicted != actual:
            cell.outcome = "FAILED"
            cell.failure = f"the destination refused with {actual}, the check predicted {predicted}"
            return
        cell.outcome = "refused"
        cell.reasons = verdict.reasons
        return
    trip = migrate_round_trip(
        src, dst, config, seed=seed, steps=steps, migrate_at=migrate_at, precopy_rounds=precopy_rounds,
        steps_per_round=steps_per_round, chunk_bytes=chunk_bytes,
        host=lambda role: host_for(src if role == "source" else dst, role),
    )
    problems = []
    if trip.digest_source != trip.digest_destination:
        problems.append("digest at switch-over differs")
    for cls in (src, dst):
        base = baseline(cls, config)
        if trip.log != base.log:
            first = next((i for i, (a, b) in enumerate(zip(trip.log, base.log, strict=False)) if a != b),
                         min(len(trip.log), len(base.log)))
            problems.append(f"log differs from unmigrated {cls.implementation().release} at entry {first}")
        if trip.digest_final != base.digest:
            problems.append(f"final digest differs from unmigrated {cls.implementation().release}")
    trip.destination.close()
    if problems:
        cell.outcome = "FAILED"
        cell.failure = "; ".join(problems)
    else:
        cell.outcome = "migrated"
