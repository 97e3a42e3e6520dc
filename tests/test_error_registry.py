"""The one table of error codes (devmig._codes) covers every code the source raises.

The source is read with ``ast`` (tests/support/source_tree.py): every code-shaped string passed as
a code to ``Problem``, ``DevmigError`` and its subclasses, or a problem helper
(``manager_error(code, ...)``, ``Migration.fail(code, ...)``), must be a row of the table; the
docs' copy of the table is checked by tests/docs/test_error_codes.py.
"""

from __future__ import annotations

import ast

import pytest
import source_tree

from devmig import DevmigError, StreamError
from devmig._codes import AREAS, CODES, UNLISTED_STATUS, Code, code_info, status_of
from devmig._errors import ConfigError, Problem

DESIGN_7 = {
    "option strings": ["SYNTAX", "DUPLICATE_PARAM", "VERSION_UNKNOWN", "PARAM_UNKNOWN", "TYPE_MISMATCH",
                       "VALUE_NOT_ALLOWED", "CONSTRAINT_VIOLATED"],
    "documents": ["JSON_SYNTAX", "SCHEMA", "INIT_NOT_ALLOWED", "INIT_CONSTRAINT_VIOLATED", "VERSION_DUPLICATE",
                  "VERSION_PARAM_UNKNOWN", "VERSION_VALUE_NOT_ALLOWED", "VERSION_CONSTRAINT_VIOLATED",
                  "CONSTRAINT_PARAM_UNKNOWN"],
    "compatibility": ["MODEL_UNKNOWN", "PARAM_UNKNOWN", "VALUE_NOT_ALLOWED", "CONSTRAINT_VIOLATED",
                      "OFF_VALUE_MISMATCH", "STATE_LAYOUT_MISMATCH", "NO_MIGRATION_INFO"],
    "providers": ["BACKEND_REFUSED", "LOST", "KERNEL_DEVICE_DATA_BY_VMM", "PROVIDER_CONFLICT"],
    "release diff (state layout)": ["STATE_SECTION_REMOVED", "STATE_SECTION_ADDED", "STATE_FIELD_REMOVED",
                                    "STATE_FIELD_ADDED", "STATE_FIELD_TYPE_CHANGED", "STATE_FIELD_MAX_CHANGED",
                                    "STATE_REGION_CHANGED", "STATE_CONDITION_CHANGED"],
}
"""The codes DESIGN §7 (and §3's state-layout diff rules) name."""


def test_every_code_the_source_raises_is_in_the_table() -> None:
    raised = source_tree.codes_in_source()
    assert len(raised) > 100, "the scan found too few codes: it no longer sees the source's problem builders"
    missing = {code: where[:3] for code, where in sorted(raised.items()) if code not in CODES}
    assert not missing, f"codes raised but not in src/devmig/_codes.py (add one line each): {missing}"


@pytest.mark.parametrize("area", sorted(DESIGN_7))
def test_the_designs_codes_are_in_the_table(area: str) -> None:
    assert [code for code in DESIGN_7[area] if code not in CODES] == []


def test_every_row_is_well_formed() -> None:
    for name, code in CODES.items():
        assert name == code.name and source_tree.CODE_SHAPE.fullmatch(name), name
        assert code.status is None or 400 <= code.status < 600, name
        assert code.where in AREAS and code.meaning and not code.meaning.endswith("."), name
        assert code.status is not None or not code.retryable, name


def test_the_statuses_clients_rely_on() -> None:
    """The statuses docs/api.md's conventions promise (the old per-app tables, merged)."""
    expected = {
        "AUTH_REQUIRED": 401,
        "AUTH_FAILED": 401,
        "DEVICE_NOT_FOUND": 404,
        "MODEL_UNKNOWN": 404,
        "HOST_UNKNOWN": 404,
        "POOL_UNKNOWN": 404,
        "MIGRATION_UNKNOWN": 404,
        "DRAIN_UNKNOWN": 404,
        "DEVICE_BUSY": 409,
        "TOO_LATE": 409,
        "LEASE_HELD": 409,
        "INCOMPATIBLE": 409,
        "STRANDED": 409,
        "HOST_CONFLICT": 409,
        "VERSION_UNKNOWN": 422,
        "REQUEST_INVALID": 422,
        "RECORD_CORRUPT": 422,
        "AGENT_UNREACHABLE": 502,
        "DESTINATION_UNREACHABLE": 502,
        "DB_UNAVAILABLE": 503,
        "JOURNAL_FAILED": 503,
        "TIMEOUT": 504,
        "INSUFFICIENT_RESOURCES": 507,
        "BODY_TOO_LARGE": 413,
        "BODY_TIMEOUT": 408,
        "IMAGE_IN_USE": 409,
        "IMAGE_OUTSIDE": 422,
        "URL_INVALID": 422,
    }
    assert {name: CODES[name].status for name in expected} == expected


def test_an_error_looks_its_status_up_by_its_first_code() -> None:
    assert DevmigError.of("DEVICE_BUSY", "busy").status == 409
    assert DevmigError.of("DEVICE_BUSY", "busy").retryable
    assert ConfigError([Problem("VALUE_NOT_ALLOWED", ("config", "rss"), "no")]).status == 422
    assert StreamError("TRUNCATED", "short").status == 422
    assert DevmigError("no code").status == 400 and DevmigError("no code").code == "ERROR"
    assert DevmigError.of("A_NEWER_PEERS_CODE", "?").status == UNLISTED_STATUS
    assert status_of("STATE_FIELD_ADDED") == UNLISTED_STATUS  # a diff rule id is never an error answer
    assert code_info("NOPE").where == "unlisted"


def test_of_builds_one_problem() -> None:
    error = ConfigError.of("PARAM_UNKNOWN", "no such parameter", loc=("config", "x"), value="x",
                           allowed=["rss"], hint="rss?", context={"file": "a.json"})
    assert isinstance(error, ConfigError)
    assert error.problems == (Problem("PARAM_UNKNOWN", ("config", "x"), "no such parameter", "x", ["rss"],
                                      "rss?", {"file": "a.json"}),)


def test_the_scan_finds_codes_in_each_way_they_are_passed() -> None:
    source = '''
SPENT = "SECRET_REUSED"

class Problem:
    code: str
    loc: tuple

class Failure:
    code: str
    message: str

class Refusal(Exception):
    def __init__(self, message, code="REFUSED_DEFAULT"): ...

def helper(message, code, *, hint=None): ...

def run(flag):
    Problem("LITERAL_CODE", (), "m")
    helper("not a code", "HELPER_CODE")
    helper("m", "A_CODE" if flag else "B_CODE")
    Failure(SPENT, "m")
    DevmigError("message", code="KEYWORD_CODE")
    Refusal("not a code either", "CLASS_CODE")
    out.fail(error, EXIT_NO)
    print("NOT_PASSED_AS_A_CODE")
'''
    tree = ast.parse(source)
    takers = source_tree.code_takers([tree])
    constants = source_tree.string_constants([tree])
    found = {code for _, code in source_tree.codes_of(tree, takers, constants)}
    assert found == {"SECRET_REUSED", "REFUSED_DEFAULT", "LITERAL_CODE", "HELPER_CODE", "A_CODE", "B_CODE",
                     "KEYWORD_CODE", "CLASS_CODE"}


def test_a_code_defined_twice_is_refused() -> None:
    import devmig._codes as codes

    with pytest.raises(ValueError, match="defined twice"):
        codes._index([Code("X_Y", 400, "general", "x"), Code("X_Y", 409, "general", "y")])


def test_the_release_diffs_rules_are_rows_with_the_same_meaning() -> None:
    """compat.RULES still spells its rules' meanings (the diff's own table); they must be the registry's."""
    from devmig.compat import RULES

    assert {rule: CODES[rule].meaning if rule in CODES else None for rule in RULES} == dict(RULES)
    assert all(CODES[rule].where == "release diff" and CODES[rule].status is None for rule in RULES)
