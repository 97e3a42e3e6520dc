"""The device SDK: one base class tying a model, its state and the VFIO v2 state machine.

Theory of operation
-------------------
A device implementation subclasses :class:`Device` and declares, as class
attributes, the model document of its release (``document_source``), the model it
implements (``model_id``) and its state (``state``: a
:class:`~devmig.state.StateDeclaration`). It implements four hooks:

* :meth:`Device.setup` — initialise internal state for ``self.params`` (the
  full configuration) right after creation;
* :meth:`Device.work` — one step of guest-visible work while running, driven
  by a seeded generator (never by wall-clock time), appending what the guest
  could observe to ``self.log``;
* :meth:`Device.save_sections` / :meth:`Device.load_sections` — the values of
  the active sections, and applying loaded ones.

Bulk memory lives in ``self.regions`` (one :class:`~devmig.state.Region` per
declared region); work that writes there marks pages dirty.

The SDK drives migration. Saving: ``RUNNING → PRE_COPY`` starts a stream
(HEADER, then pre-copy rounds from live memory, copied before each send),
``→ STOP_COPY`` sends the rest zero-copy, then the sections and the trailer;
:meth:`Device.read_data` hands out the bytes. Loading: ``→ RESUMING`` builds a
decoder for *this* device's model and canonical configuration;
:meth:`Device.write_data` (or the zero-copy :meth:`Device.get_buffer` /
:meth:`Device.buffer_updated` pair) feeds it; bulk lands in place, sections are
staged; ``RESUMING → STOP`` commits them only if the trailer validated. Any
failure restores the sections, resets the regions to their creation contents
and leaves the device in RESUMING with a fresh decoder — as created, ready for
a valid stream.

The SDK adds one section of its own, ``devmig``, holding the work step counter
and the workload seed, so that a migrated device continues the same seeded
workload from where its source stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from devmig._errors import DevmigError, Problem, StreamError
from devmig.migration import MigrationFlags, State, StateMachine, transition_path
from devmig.model import (
    Config,
    DeviceModel,
    Implementation,
    ModelDocument,
    PublishedLayout,
    Value,
    expand,
    parse_canonical,
)
from devmig.state import (
    NEED_DATA,
    Buffer,
    FieldSpec,
    PrecopySource,
    Region,
    RegionFill,
    RoundEndSignal,
    SectionSpec,
    StateDeclaration,
    StateLayout,
    StreamDecoder,
    StreamEncoder,
    Trailer,
    declaration_difference,
    published_layout,
    state_digest,
)

__all__ = ["Device", "DeviceError", "PrecopyInfo", "SDK_SECTION", "with_published_layouts"]

SDK_SECTION = SectionSpec(
    "devmig",
    [FieldSpec("steps", "u64"), FieldSpec("seed", "u64")],
)
"""The SDK's own section: the work step counter and the workload seed."""

_RUNNING_STATES = frozenset({State.RUNNING, State.PRE_COPY})

_STEP_STRIDE = 1 << 40
"""64-bit outputs of the seed's PCG64 stream reserved for one step (far more than a step draws)."""


class _StepGenerators:
    """The generator of step ``k`` of a seed: the seed's PCG64 stream advanced by ``k`` strides.

    A step's numbers depend on the seed and the step number alone (so a
    migrated device, told both, continues exactly), but neither a
    ``SeedSequence`` nor a ``Generator`` is built per step: one bit generator
    is reset to the seed's base state and advanced (PCG64 jumps ahead in
    O(log k)), about 10 µs instead of 50 µs for ``default_rng``.
    """

    __slots__ = ("_base", "_bits", "generator", "seed")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._bits = np.random.PCG64(np.random.SeedSequence(seed))
        self._base = self._bits.state
        self.generator = np.random.Generator(self._bits)

    def at(self, step: int) -> np.random.Generator:
        """Return the generator positioned at step ``step`` (valid until the next call)."""
        self._bits.state = self._base
        self._bits.advance(step * _STEP_STRIDE)
        return self.generator


class DeviceError(DevmigError):
    """A device refused an operation in its current state (e.g. work while stopped)."""

    default_code = "DEVICE_STATE"


@dataclass(frozen=True, slots=True)
class PrecopyInfo:
    """What ``VFIO_MIG_GET_PRECOPY_INFO`` reports: bytes still to send."""

    initial_bytes: int
    dirty_bytes: int


class Device:
    """Base class of a device implementation release.

    Subclasses set the class attributes ``document_source``, ``model_id`` and
    ``state`` and implement the hooks. Create devices with :meth:`create`
    (from a configuration string) or :meth:`create_canonical` (from the
    canonical configuration a migration source sent); never call the
    constructor with an unchecked configuration.
    """

    document_source: ClassVar[ModelDocument | Callable[[], ModelDocument]]
    """The model document this release publishes, or a function loading it (called once)."""
    model_id: ClassVar[str]
    """The model this class implements (one of the document's models)."""
    state: ClassVar[StateDeclaration]
    """The device's state declaration (without the SDK's ``devmig`` section)."""
    flags: ClassVar[MigrationFlags] = MigrationFlags.STOP_COPY | MigrationFlags.P2P | MigrationFlags.PRE_COPY
    """The migration features the device provides."""

    # -- creation ------------------------------------------------------------

    @classmethod
    def document(cls) -> ModelDocument:
        """The model document this release publishes (loaded on first use)."""
        cached: ModelDocument | None = cls.__dict__.get("_document")
        if cached is None:
            source = cls.document_source
            cached = source if isinstance(source, ModelDocument) else source()
            cls._document = cached  # type: ignore[attr-defined]
        return cached

    @classmethod
    def implementation(cls) -> Implementation:
        """This release's ``{"name", "release"}``."""
        return cls.document().implementation

    @classmethod
    def model(cls) -> DeviceModel:
        """The definition of ``model_id`` in this release's document."""
        found = cls.document().find(cls.model_id)
        if found is None:  # a packaging mistake of the device author
            raise DeviceError(f"{cls.__name__}: document has no model {cls.model_id!r}")
        return found

    @classmethod
    def declaration(cls) -> StateDeclaration:
        """The full state declaration: the SDK's section, then the device's."""
        cached: StateDeclaration | None = cls.__dict__.get("_full_declaration")
        if cached is None:
            cached = StateDeclaration(
                sections=[SDK_SECTION, *cls.state.sections],
                regions=list(cls.state.regions),
                off_values=cls.state.off_values,
            )
            cls._full_declaration = cached  # type: ignore[attr-defined]
        return cached

    @classmethod
    def published_layout(cls) -> PublishedLayout | None:
        """The state layout this release's document should publish for its model (DESIGN §4, §7).

        Generated from ``state`` (the SDK's ``devmig`` section is not
        published); ``None`` when the declaration uses a Python callable.

        Raises:
            StreamError: ``DECLARATION_INVALID`` when the declaration reads a
                parameter the document does not define without stating its off value.
        """
        return published_layout(cls.state, cls.model())

    @classmethod
    def create(
        cls, config: str | Mapping[str, Any] | None = None, *, host: Mapping[str, Any] | None = None, seed: int = 0
    ) -> Self:
        """Create a device from a configuration string (or mapping).

        Args:
            config: ``version=2,rx-table-size=48``, a mapping, or ``None`` for
                the init values.
            host: host-only settings (not parameters), e.g. an image path.
            seed: the workload seed.

        Raises:
            ConfigError: with every problem; no device exists afterwards.
        """
        return cls(expand(cls.model(), config), host=host, seed=seed)

    @classmethod
    def create_canonical(
        cls, config: Config | Mapping[str, Any], *, host: Mapping[str, Any] | None = None
    ) -> Self:
        """Create a migration destination from a source's canonical configuration.

        Raises:
            ConfigError: the configuration is not acceptable to this release.
        """
        values = config.values if isinstance(config, Config) else config
        return cls(parse_canonical(cls.model(), values), host=host, seed=0)

    def __init__(self, config: Config, *, host: Mapping[str, Any] | None = None, seed: int = 0) -> None:
        model = self.model()
        self.config: Config = config
        self.params: dict[str, Value] = config.full(model)
        self.host: dict[str, Any] = dict(host or {})
        self.seed = int(seed)
        self.steps = 0
        self._generators: _StepGenerators | None = None
        self.log: list[tuple[Any, ...]] = []
        self.layout: StateLayout = self.declaration().layout(self.params)
        if model.state is not None:
            self._check_published(model)
        self.regions: list[Region] = [
            Region.for_layout(r, fill=self.region_fill(r.name)) for r in self.layout.regions
        ]
        self.machine = StateMachine(self.flags)
        self._encoder: StreamEncoder | None = None
        self._precopy: PrecopySource | None = None
        self._pending: list[Buffer] = []
        self._save_done = False
        self._decoder: StreamDecoder | None = None
        self._restore: dict[str, dict[str, Any]] | None = None
        self._loaded = False
        self._discards = (0, 0)
        self.setup()

    def _check_published(self, model: DeviceModel) -> None:
        """Refuse creation when the declaration and the document's layout differ for this configuration."""
        assert model.state is not None
        found = declaration_difference(self.state, model.state, self.params)
        if found is None:
            return
        raise DeviceError(
            [
                Problem(
                    "STATE_LAYOUT_MISMATCH",
                    found.loc,
                    f"{type(self).__name__}: "
                    + found.describe("the declaration", f"{self.implementation().render()}'s document")
                    + f" ({self.config.string or 'off values'})",
                    value=found.left,
                    allowed=found.right,
                    hint="regenerate the document's layout from the declaration (devmig state-layout)",
                )
            ]
        )

    # -- hooks ---------------------------------------------------------------

    def setup(self) -> None:
        """Initialise internal state from ``self.params``; called once at creation."""

    def close(self) -> None:
        """Release host resources the device holds (files, ...); the default holds none.

        Called when the device is deleted or released after a migration; the
        device must not be used afterwards.
        """

    def region_fill(self, name: str) -> RegionFill | None:
        """Return the creation contents of region ``name`` (``None``: zeros)."""
        return None

    def work(self, rng: np.random.Generator) -> None:
        """Do one step of work while running; append what the guest observes to ``self.log``.

        ``rng`` is this step's generator: its numbers depend on the seed and
        the step number only. Draw from it during the call; do not keep it.
        """
        raise NotImplementedError

    def save_sections(self) -> dict[str, dict[str, Any]]:
        """Return the values of the device's active sections (not ``devmig``)."""
        raise NotImplementedError

    def load_sections(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        """Apply loaded sections (validated against the layout) to the device.

        Raise :class:`~devmig.StreamError` (``SECTION_INVALID``) to refuse values
        that are well-typed but inconsistent; the SDK then restores the device.
        To report every inconsistency found at once, build the error with
        :func:`devmig.state.error_from_problems`.
        """
        raise NotImplementedError

    # -- running -------------------------------------------------------------

    @property
    def state_name(self) -> State:
        """The device's VFIO migration state."""
        return self.machine.state

    @property
    def running(self) -> bool:
        """Whether the device does work (RUNNING or PRE_COPY)."""
        return self.machine.state in _RUNNING_STATES

    def step(self, n: int = 1) -> None:
        """Run ``n`` steps of seeded work.

        Raises:
            DeviceError: ``DEVICE_STOPPED`` when the device is not running.
        """
        if not self.running:
            raise DeviceError(
                [
                    Problem(
                        "DEVICE_STOPPED",
                        ("state",),
                        f"the device is in {self.machine.state.name}; work needs RUNNING or PRE_COPY",
                        value=self.machine.state.name,
                        allowed=["RUNNING", "PRE_COPY"],
                    )
                ]
            )
        generators = self._generators
        if generators is None or generators.seed != self.seed:
            generators = self._generators = _StepGenerators(self.seed)
        for _ in range(n):
            self.work(generators.at(self.steps))
            self.steps += 1

    def all_sections(self) -> dict[str, dict[str, Any]]:
        """Return every active section's values, the SDK's ``devmig`` section first."""
        out = {"devmig": {"steps": self.steps, "seed": self.seed}}
        out.update(self.save_sections())
        return out

    def digest(self) -> bytes:
        """The state digest (DESIGN §4): independent of release, rounds and compression."""
        return state_digest(self.layout, self.all_sections(), self.regions)

    # -- the state machine -----------------------------------------------------

    def set_state(self, target: State) -> list[State]:
        """Move to ``target`` through the kernel's intermediate states; return the path.

        Raises:
            TransitionError: the transition is refused (nothing changes).
            StreamError: ``RESUMING → STOP`` with a stream that did not load
                completely; the device is then as created and stays RESUMING.
        """
        path = transition_path(self.machine.state, target, self.flags)
        if self.machine.state == State.RESUMING and path:
            self._commit()
        current = self.machine.state
        for nxt in path:
            self._on_arc(current, nxt)
            current = nxt
        self.machine.set_state(target)
        return path

    def _on_arc(self, current: State, nxt: State) -> None:
        if nxt in (State.PRE_COPY, State.STOP_COPY) and self._encoder is None:
            self._start_save()
        if current in (State.STOP_COPY, State.PRE_COPY, State.PRE_COPY_P2P) and nxt in (
            State.RUNNING,
            State.RUNNING_P2P,
            State.STOP,
        ):
            self._end_save()
        if nxt == State.RESUMING:
            self._start_load()

    # -- saving ----------------------------------------------------------------

    def _start_save(self) -> None:
        impl = self.implementation()
        self._encoder = StreamEncoder(
            self.config.model,
            self.config.values,
            self.layout,
            {"implementation": impl.name, "release": impl.release},
        )
        for region in self.regions:
            region.clear_dirty(0, region.page_count)
        self._precopy = PrecopySource(self.regions, self._encoder)
        self._pending = [self._encoder.header()]
        self._save_done = False

    def _end_save(self) -> None:
        self._encoder = None
        self._precopy = None
        self._pending = []
        self._save_done = False

    def precopy_info(self) -> PrecopyInfo:
        """Bytes still to send, like ``VFIO_MIG_GET_PRECOPY_INFO`` (PRE_COPY states only)."""
        if self._precopy is None or self.machine.state not in (State.PRE_COPY, State.PRE_COPY_P2P):
            raise DeviceError("precopy_info needs PRE_COPY or PRE_COPY_P2P", code="DEVICE_STATE")
        return PrecopyInfo(self._precopy.initial_bytes, self._precopy.dirty_bytes)

    def stop_copy_size(self) -> int:
        """Estimate of the bytes STOP_COPY will produce (``VFIO_DEVICE_FEATURE_MIG_DATA_SIZE``)."""
        if self._precopy is not None:
            return self._precopy.stop_copy_size()
        encoder = StreamEncoder(self.config.model, self.config.values, self.layout)
        return PrecopySource(self.regions, encoder).stop_copy_size()

    def read_data(self, max_bytes: int = 1 << 20) -> list[Buffer] | RoundEndSignal:
        """Return the next stream bytes as buffers (``writelines``-ready).

        In PRE_COPY: records from live memory, or :data:`~devmig.state.ROUND_END`
        when the round has no more data for now. In STOP_COPY: the rest, then
        the sections and the trailer, then ``[]`` at the end of the stream.

        Raises:
            DeviceError: outside PRE_COPY, PRE_COPY_P2P and STOP_COPY.
        """
        state = self.machine.state
        if self._precopy is None or state not in (State.PRE_COPY, State.PRE_COPY_P2P, State.STOP_COPY):
            raise DeviceError(
                [Problem("DEVICE_STATE", ("state",), f"no migration data to read in {state.name}",
                         value=state.name, allowed=["PRE_COPY", "PRE_COPY_P2P", "STOP_COPY"])]
            )
        if self._pending:
            out, self._pending = self._pending, []
            return out
        stopped = state == State.STOP_COPY
        if stopped and self._save_done:
            return []
        records = self._precopy.next_records(max_bytes, stopped=stopped)
        if stopped and records == []:
            self._save_done = True
            return [self._precopy.finish(self.all_sections())]
        return records

    def save_stream(self) -> bytes:
        """Return a whole stream of the current state (the device must be stopped).

        A convenience for saving to a file and for tests: walks ``STOP →
        STOP_COPY``, reads everything, and returns to STOP.
        """
        self.set_state(State.STOP_COPY)
        parts: list[bytes] = []
        while True:
            chunk = self.read_data(1 << 22)
            if chunk == [] or isinstance(chunk, RoundEndSignal):
                break
            parts.extend(bytes(b) for b in chunk)
        self.set_state(State.STOP)
        return b"".join(parts)

    # -- loading ---------------------------------------------------------------

    def _new_decoder(self) -> StreamDecoder:
        return StreamDecoder(self.config.model, self.config.values, self.layout, self.regions)

    def _start_load(self) -> None:
        self._restore = self.all_sections()
        self._decoder = self._new_decoder()
        self._loaded = False
        self._discards = (0, 0)

    def _abort_load(self) -> None:
        for region in self.regions:
            region.reset()
        if self._restore is not None:
            self._apply(self._restore)
        self._keep_discards()
        self._decoder = self._new_decoder()
        self._loaded = False

    def _keep_discards(self) -> None:
        self._discards = self.load_discards
        self._decoder = None

    @property
    def load_discards(self) -> tuple[int, int]:
        """``LIVE`` records discarded since ``→ RESUMING``, and their bytes (DESIGN §4).

        A pre-copy record that a write at the source tore arrives with a wrong
        digest; the load discards it and the page comes again. Counted over
        every attempt (a refused stream's too) until the next ``→ RESUMING``.
        """
        records, nbytes = self._discards
        decoder = self._decoder
        if decoder is not None:
            records += decoder.discarded_records
            nbytes += decoder.discarded_bytes
        return records, nbytes

    def _apply(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        sdk = sections.get("devmig", {})
        self.steps = int(sdk.get("steps", self.steps))
        self.seed = int(sdk.get("seed", self.seed))
        self.load_sections({k: v for k, v in sections.items() if k != "devmig"})

    def _require_resuming(self) -> StreamDecoder:
        if self.machine.state != State.RESUMING or self._decoder is None:
            raise DeviceError(
                [Problem("DEVICE_STATE", ("state",), f"cannot load in {self.machine.state.name}",
                         value=self.machine.state.name, allowed=["RESUMING"])]
            )
        return self._decoder

    def write_data(self, data: Buffer) -> None:
        """Feed stream bytes while RESUMING.

        Raises:
            StreamError: the stream is refused; the device is then as created
                and a valid stream may be written from its start.
        """
        decoder = self._require_resuming()
        try:
            decoder.receive_data(data)
            self._drain(decoder)
        except StreamError:
            self._abort_load()
            raise

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Zero-copy receive: a buffer to read the next stream bytes into (often region memory)."""
        return self._require_resuming().get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        """Zero-copy receive: ``nbytes`` were written into the last :meth:`get_buffer`."""
        decoder = self._require_resuming()
        try:
            decoder.buffer_updated(nbytes)
            self._drain(decoder)
        except StreamError:
            self._abort_load()
            raise

    def _drain(self, decoder: StreamDecoder) -> None:
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, Trailer):
                self._loaded = True

    @property
    def load_complete(self) -> bool:
        """Whether a whole valid stream (up to its trailer) has been written."""
        return self._loaded

    def _commit(self) -> None:
        decoder = self._decoder
        if decoder is None:
            return
        try:
            if not self._loaded:
                decoder.end_of_input()  # raises TRUNCATED naming where the stream stopped
            staged = decoder.staged_sections()
            self._apply(staged)
        except DevmigError:
            self._abort_load()
            raise
        self._keep_discards()
        self._restore = None

    def load_stream(self, data: bytes | Sequence[Buffer]) -> None:
        """Load a whole stream: ``→ RESUMING``, write, ``→ STOP``.

        Raises:
            StreamError: the stream is refused; the device is as created, in RESUMING.
        """
        if self.machine.state != State.RESUMING:
            self.set_state(State.RESUMING)
        for part in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
            self.write_data(part)
        self.set_state(State.STOP)


def with_published_layouts(text: str, classes: Sequence[type[Device]]) -> str:
    """Return a model document's text with each class's generated ``"state"`` written in.

    Args:
        text: the document's JSON text, as its author wrote it; everything but
            the ``"state"`` members is kept as it is.
        classes: device classes whose models the document defines (each
            class's ``model_id``); a class whose declaration uses a callable
            removes its model's layout.

    Raises:
        DocumentError: the text is not a model document naming those models.
        StreamError: ``DECLARATION_INVALID`` (see :meth:`Device.published_layout`).
    """
    from devmig.model import with_layouts

    layouts: dict[str, Any] = {}
    for cls in classes:
        layout = cls.published_layout()
        layouts[cls.model_id] = None if layout is None else layout.to_json()
    return with_layouts(text, layouts)
