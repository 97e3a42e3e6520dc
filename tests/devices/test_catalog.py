"""The reference catalog: every model a release's document defines has a class that serves it."""

from __future__ import annotations

import pytest

from devmig.device import Device
from devmig.devices import CATALOG, OTHER_MODELS, model_classes

RELEASES = [cls for classes in CATALOG.values() for cls in classes]


@pytest.mark.parametrize("release", RELEASES, ids=lambda c: f"{c.implementation().name}-{c.implementation().release}")
def test_every_model_of_a_release_is_served(release: type[Device]) -> None:
    served = model_classes(release)
    document = release.document()
    assert set(served) == {m.model for m in document.models}
    assert served[release.model_id] is release
    for model_id, cls in served.items():
        assert cls.implementation() == release.implementation()
        assert cls.document() == document  # one release, one document, whichever model a class serves
        assert cls.model().model == model_id


def test_other_models_belong_to_catalog_releases() -> None:
    for name, classes in OTHER_MODELS.items():
        for cls in classes:
            release = cls.implementation()
            assert release.name == name
            assert any(c.implementation() == release for c in CATALOG[name]), cls
            assert cls.model_id not in {c.model_id for c in CATALOG[name]}  # another model, not a duplicate release


def test_the_lite_accelerator_is_served_by_2_0_0_and_later_only() -> None:
    lite = "example.org/devices/accel-lite"
    assert [lite in model_classes(c) for c in CATALOG["acme-accel"]] == [False, True, True]
