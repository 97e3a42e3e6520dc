"""Published state layouts of the reference devices (DESIGN §4, §7).

* The declarations moved from Python callables to §7 expressions without
  changing one byte of state: every recorded digest (made from the code
  before the rewrite, ``state_recording.py``) is reproduced, the layouts equal
  the legacy declarations' for every recorded configuration, and a device on
  the legacy declaration writes the very same stream.
* Every shipped example carries exactly the layout its release's class generates.
* A device refuses creation when its declaration and its document's layout differ.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import xxhash
from legacy_declarations import LEGACY
from state_recording import RECORDING, SEED, STEPS, classes, configs, host_for

from devmig._errors import StreamError
from devmig.device import Device, DeviceError, with_published_layouts
from devmig.devices import NicV3
from devmig.devices._layouts import example_with_layouts, names
from devmig.examples import __file__ as examples_init
from devmig.migration import State
from devmig.model import load_document
from devmig.state import FieldSpec, RegionSpec, SectionSpec, StateDeclaration, published_layout

EXAMPLES = Path(examples_init).parent
RECORDED: dict[str, dict[str, dict[str, str]]] = json.loads(RECORDING.read_text())


def _key(cls: type[Device]) -> str:
    return f"{cls.implementation().render()} {cls.model_id}"


def _run(cls: type[Device], config: Any, directory: Path) -> tuple[str, bytes]:
    device = cls(config, host=host_for(cls, directory), seed=SEED)
    try:
        device.step(STEPS)
        digest = device.digest().hex()
        device.set_state(State.STOP)
        return digest, device.save_stream()
    finally:
        device.close()


@pytest.mark.parametrize("cls", classes(), ids=_key)
def test_rewritten_declarations_keep_state_byte_for_byte(cls: type[Device]) -> None:
    legacy_state = LEGACY[cls.implementation().name]
    legacy = type(f"Legacy{cls.__name__}", (cls,), {"state": legacy_state, "_full_declaration": None})
    recorded = RECORDED[_key(cls)]
    seen = set()
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs(cls):
            full = config.full(cls.model())
            assert cls.state.layout(full) == legacy_state.layout(full), config.string
            digest, stream = _run(cls, config, Path(tmp))
            assert digest == recorded[config.string]["digest"], config.string
            legacy_digest, legacy_stream = _run(legacy, config, Path(tmp))
            assert (legacy_digest, legacy_stream) == (digest, stream), config.string
            if xxhash.xxh3_128_hexdigest(stream) != recorded[config.string]["stream"]:
                pytest.fail(f"{config.string}: the stream differs from the one recorded before the rewrite")
            seen.add(config.string)
    assert seen == set(recorded), "the recorded configurations are the ones tried"


@pytest.mark.parametrize("name", names())
def test_shipped_examples_carry_the_generated_layouts(name: str) -> None:
    implementation, release = name.split("/", 1)
    text = (EXAMPLES / implementation / f"{release}.json").read_text(encoding="utf-8")
    assert example_with_layouts(name) == text, "run tools/gen_state_layouts.py"
    doc = load_document(text)
    assert all(m.state is not None for m in doc.models) == ("broken" not in release)


def test_no_reference_declaration_uses_a_callable() -> None:
    for cls in classes():
        assert cls.state.callables == [], cls
        assert cls.published_layout() == cls.model().state


def _nic_doc(edit: Any) -> Any:
    raw = json.loads((EXAMPLES / "acme-nic" / "3.0.0.json").read_text())
    edit(raw["models"][0]["state"])
    return load_document(raw)


@pytest.mark.parametrize(
    ("edit", "config", "loc", "message"),
    [
        (
            lambda s: s["sections"][0]["fields"][0].update(type="u16[]"),
            "",
            ("state", "section", "queues", "field", "rx_index"),
            "type u32[]",
        ),
        (lambda s: s["sections"][3].pop("when"), "version=1", ("state", "section", "rss"), "is in"),
        (
            lambda s: s["sections"][3]["fields"][1].update(max={"param": "rx-table-size", "plus": 1}),
            "",
            ("state", "section", "rss", "field", "table"),
            "max 128",
        ),
        (lambda s: s["sections"][5].update(optional=False), "", ("state", "section", "stats"), "optional"),
    ],
)
def test_a_device_refuses_a_document_whose_layout_differs(
    edit: Any, config: str, loc: tuple[str, ...], message: str
) -> None:
    """The layouts differ for ``config`` (the rss case only where rss is off: elsewhere they agree)."""
    doc = _nic_doc(edit)
    mismatched = type("MismatchedNic", (NicV3,), {"document_source": doc, "_document": None})
    if config:
        mismatched.create("").close()  # rss on: the layouts agree there
    with pytest.raises(DeviceError) as caught:
        mismatched.create(config)
    problem = caught.value.problems[0]
    assert problem.code == "STATE_LAYOUT_MISMATCH"
    assert problem.loc == loc
    assert message in problem.message


def test_a_declaration_with_a_callable_publishes_none_and_validate_warns(tmp_path: Path) -> None:
    declaration = StateDeclaration([SectionSpec("s", [FieldSpec("x", "u8[]", max=lambda c: 4)])])
    assert published_layout(declaration, {}) is None
    assert declaration.callables == ["section s field x max"]
    source = (EXAMPLES / "acme-nic" / "3.0.0.json").read_text()
    callable_nic = type("CallableNic", (NicV3,), {"state": declaration, "_full_declaration": None})
    stripped = with_published_layouts(source, [callable_nic])
    assert "state" not in json.loads(stripped)["models"][0]
    assert with_published_layouts(stripped, [NicV3]) == source


def test_a_declaration_reading_an_undefined_parameter_states_its_off_value() -> None:
    bare = StateDeclaration([SectionSpec("t", [FieldSpec("n", "u64")], when={"tso": True})])
    with pytest.raises(StreamError) as caught:
        published_layout(bare, {"rss": "bool"})
    assert caught.value.code == "DECLARATION_INVALID"
    assert "tso" in str(caught.value)
    with_off = StateDeclaration(bare.sections, off_values={"tso": False})
    layout = published_layout(with_off, {"rss": "bool"})
    assert layout is not None and layout.sections == ()
    on = StateDeclaration(bare.sections, off_values={"tso": True})
    layout = published_layout(on, {"rss": "bool"})
    assert layout is not None and layout.sections[0].when is None


def test_off_values_fold_into_size_expressions() -> None:
    declaration = StateDeclaration(
        [SectionSpec("s", [FieldSpec("a", "u8[]", max={"param": "later", "div": 2, "times": "depth", "plus": 1})])],
        [RegionSpec("r", {"when": {"later": {"min": 4}}, "then": {"param": "depth", "times": "later"}})],
        off_values={"later": 6},
    )
    layout = published_layout(declaration, {"depth": "int"})
    assert layout is not None
    data = layout.to_json()
    assert data["sections"][0]["fields"][0]["max"] == {"param": "depth", "times": 3, "plus": 1}
    assert data["regions"][0]["size"] == {"param": "depth", "times": 6}
    from devmig.model import resolve_layout

    for depth in (0, 1, 7):
        ours = declaration.layout({"depth": depth}).resolved()
        assert resolve_layout(layout, {"depth": depth}) == ours
