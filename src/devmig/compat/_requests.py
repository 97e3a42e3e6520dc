"""What the fleet algorithms are asked about: devices that run, and devices to create."""

from __future__ import annotations

from dataclasses import dataclass

from devmig.model import Config, DeviceModel

__all__ = ["DeviceRequest", "NewDevice", "RunningDevice"]


@dataclass(frozen=True, slots=True)
class RunningDevice:
    """A device that runs somewhere now, to be moved.

    Attributes:
        model: the model id.
        config: its canonical configuration (fixed at creation).
        source_model: the definition of the model it runs on now (rule 5 of
            DESIGN §3 compares its off values with each destination's).
        current_host: the host it runs on (never a destination), if known.

    Raises:
        ValueError: ``config`` or ``source_model`` is of another model.
    """

    model: str
    config: Config
    source_model: DeviceModel
    current_host: str | None = None

    def __post_init__(self) -> None:
        if self.config.model != self.model or self.source_model.model != self.model:
            raise ValueError(
                f"device of model {self.model!r} has a configuration of {self.config.model!r} "
                f"and a definition of {self.source_model.model!r}"
            )


@dataclass(frozen=True, slots=True)
class NewDevice:
    """A device to create: a model and an option string (``version=2,rx-queues=8``).

    It is expanded on the newest release in the fleet that defines the model,
    and that definition is its source for rule 5.

    Attributes:
        model: the model id.
        config: the option string (``""``: the init values).
    """

    model: str
    config: str = ""


DeviceRequest = RunningDevice | NewDevice
