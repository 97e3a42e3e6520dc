"""Errors as HTTP problem details (RFC 9457) carrying the core's problems.

Every :class:`DevmigError` that reaches the HTTP edge of the agent or the
manager becomes ``application/problem+json`` with ``code`` and ``errors``
(each with ``code``, ``loc``, ``value``, ``allowed``, ``hint``). Its status is
its first code's, looked up in the one table of codes
(:data:`devmig._codes.CODES`): a route never chooses one.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from devmig._errors import DevmigError, Problem

__all__ = ["ProblemDetail", "excerpt", "problem_response", "status_for"]

_TITLES = {
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    409: "Conflict",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}


def status_for(error: DevmigError) -> int:
    """Return the HTTP status of an error: its first code's (:attr:`DevmigError.status`)."""
    return error.status


ProblemDetail = dict[str, Any]


def problem_response(error: DevmigError) -> JSONResponse:
    """Render an error as a problem-details response, with its code's status."""
    status = error.status
    body: ProblemDetail = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Bad Request"),
        "status": status,
        "detail": excerpt(str(error), MAX_DETAIL),
        "code": error.code,
        "errors": [excerpt(p.to_dict()) for p in error.problems[:MAX_PROBLEMS]],
    }
    if len(error.problems) > MAX_PROBLEMS:
        body["errors_omitted"] = len(error.problems) - MAX_PROBLEMS
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


async def devmig_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI handler for :class:`DevmigError`."""
    assert isinstance(exc, DevmigError)
    return problem_response(exc)


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI handler for request-shape errors: the same problem format, code ``REQUEST_INVALID``."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        Problem("REQUEST_INVALID", tuple(str(p) for p in err.get("loc", ())), str(err.get("msg", "invalid")),
                value=_scalar(err.get("input")))
        for err in exc.errors()
    ]
    return problem_response(DevmigError(problems))


MAX_EXCERPT = 200
"""Characters of a string a problem answer quotes (a value, a message, a hint): the input is not echoed whole."""
MAX_DETAIL = 1000
"""Characters of the ``detail`` line."""
MAX_PROBLEMS = 100
"""Problems an answer lists (``errors_omitted`` counts the rest)."""
_MAX_ITEMS = 50


def excerpt(value: Any, limit: int = MAX_EXCERPT) -> Any:
    """Return ``value`` with every string cut to ``limit`` characters and every list or mapping to 50 items.

    A cut string ends with ``…(+N characters)``, a cut list with ``"…(+N items)"``; an integer past
    64 bits becomes its (cut) hex string: a problem answer quotes a bounded excerpt of its input,
    whatever the input's size.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return excerpt(hex(value), limit)  # JSON would need its decimal digits (Python refuses past 4300)
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}…(+{len(value) - limit} characters)"
    if isinstance(value, (list, tuple)):
        items = [excerpt(v, limit) for v in value[:_MAX_ITEMS]]
        return items + ([f"…(+{len(value) - _MAX_ITEMS} items)"] if len(value) > _MAX_ITEMS else [])
    if isinstance(value, dict):
        out = {excerpt(str(k), limit): excerpt(v, limit) for k, v in list(value.items())[:_MAX_ITEMS]}
        if len(value) > _MAX_ITEMS:
            out["…"] = f"+{len(value) - _MAX_ITEMS} items"
        return out
    return value


def _scalar(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else None


async def http_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI handler for Starlette's own errors (no route, wrong method): the same problem format.

    Starlette raises only these two here; any other becomes ``HTTP_ERROR`` (400).
    """
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return problem_response(DevmigError.of(code, str(exc.detail)))
