"""Model documents and host reports built from the shipped examples, shared by the fleet and dashboard tests."""

from __future__ import annotations

from devmig._examples import load_example
from devmig.model import HOST_REPORT_FORMAT, HostReport, ModelDocument


def nic_with_wol(release: str, off: str) -> ModelDocument:
    """acme-nic 2.0.0's document as ``release``, plus a ``wol`` parameter whose off value is ``off``.

    Two such releases with different off values disagree on the model itself (rule 5): a device that ran
    on one can move to the other only one way.
    """
    doc = load_example("acme-nic/2.0.0").model_dump(mode="json", by_alias=True)
    doc["implementation"]["release"] = release
    doc["models"][0]["params"]["wol"] = {"description": "Wake-on-LAN", "type": "str",
                                         "allowed": ["none", "magic"], "off": off, "init": off}
    return ModelDocument.model_validate(doc)


def host_report(host: str, *docs: ModelDocument) -> HostReport:
    """A host report of ``host`` serving ``docs``."""
    return HostReport.model_validate({"format": HOST_REPORT_FORMAT, "host": host, "implementations": list(docs)})
