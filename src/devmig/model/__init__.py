"""Model documents, parameters, constraints and configurations (sans-IO core).

Load a document with :func:`load_document` (or a host report with
:func:`load_host_report`), then create configurations with :func:`expand`::

    doc = load_document(text)
    nic = doc.find("example.org/devices/nic")
    config = expand(nic, "version=2,rx-table-size=48")
    config.string        # 'rss=on,rx-queues=4,rx-table-size=48'
    version_of(nic, config)  # None: no published version equals it
"""

from devmig.model._conditions import condition_holds, render_condition
from devmig.model._config import (
    Config,
    check_full,
    constraint_problems,
    expand,
    parse_canonical,
    version_of,
)
from devmig.model._document import (
    HOST_REPORT_FORMAT,
    MODEL_DOCUMENT_FORMAT,
    BoolParam,
    Condition,
    Constraint,
    DeviceModel,
    HostReport,
    Implementation,
    InSet,
    IntParam,
    IntRange,
    ModelDocument,
    Param,
    Range,
    StrParam,
    VersionSpec,
)
from devmig.model._json import parse_json
from devmig.model._layout import (
    ConditionalSize,
    LayoutDifference,
    LayoutField,
    LayoutRegion,
    LayoutSection,
    PublishedLayout,
    ResolvedField,
    ResolvedLayout,
    ResolvedSection,
    ScaledSize,
    Size,
    UnresolvableLayout,
    layout_difference,
    layout_params,
    render_size,
    resolve_layout,
    resolve_size,
    when_holds,
)
from devmig.model._layout_text import with_layouts
from devmig.model._options import OptionItem, convert_value, format_options, split_options
from devmig.model._schema import host_report_schema, model_document_schema
from devmig.model._validate import load_any, load_document, load_host_report
from devmig.model._values import TypeName, Value, format_value, same_value, type_of

__all__ = [
    "HOST_REPORT_FORMAT",
    "MODEL_DOCUMENT_FORMAT",
    "BoolParam",
    "Condition",
    "ConditionalSize",
    "Config",
    "Constraint",
    "DeviceModel",
    "HostReport",
    "Implementation",
    "InSet",
    "IntParam",
    "IntRange",
    "LayoutDifference",
    "LayoutField",
    "LayoutRegion",
    "LayoutSection",
    "ModelDocument",
    "OptionItem",
    "Param",
    "PublishedLayout",
    "Range",
    "ResolvedField",
    "ResolvedLayout",
    "ResolvedSection",
    "ScaledSize",
    "Size",
    "StrParam",
    "TypeName",
    "UnresolvableLayout",
    "Value",
    "VersionSpec",
    "check_full",
    "condition_holds",
    "constraint_problems",
    "convert_value",
    "expand",
    "format_options",
    "format_value",
    "host_report_schema",
    "layout_difference",
    "layout_params",
    "load_any",
    "load_document",
    "load_host_report",
    "model_document_schema",
    "parse_canonical",
    "parse_json",
    "render_condition",
    "render_size",
    "resolve_layout",
    "resolve_size",
    "same_value",
    "split_options",
    "type_of",
    "version_of",
    "when_holds",
    "with_layouts",
]
