"""RFC 9457 problem details: the only error shape any Kefu API returns."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.db_errors import CONNECTION_ERRORS, database_unreachable

log = logging.getLogger("kefu.errors")

PROBLEM_JSON = "application/problem+json"

TYPE_BASE = "https://kefu.dev/problems/"


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ProblemDetail(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(default="about:blank", examples=[f"{TYPE_BASE}validation"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[ValidationIssue] | None = None
    allowed: list[str] | None = Field(
        default=None, description="For an illegal transition: the allowed actions."
    )


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title or HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extensions = extensions


def not_found(what: str, ident: object) -> Problem:
    return Problem(404, f"{what} {ident} does not exist", slug="not-found")


def conflict(detail: str, *, allowed: Sequence[str] | None = None) -> Problem:
    extras: dict[str, Any] = {} if allowed is None else {"allowed": list(allowed)}
    return Problem(409, detail, slug="conflict", **extras)


def problem_response(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"{TYPE_BASE}{slug}" if slug else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extensions.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _issues(errors: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in errors
    ]


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(
        exc.status,
        title=exc.title,
        detail=exc.detail,
        slug=exc.slug,
        instance=request.url.path,
        headers=exc.headers,
        **exc.extensions,
    )


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return problem_response(
            400,
            title="Malformed JSON",
            detail="The request body is not valid JSON.",
            slug="malformed-json",
            instance=request.url.path,
        )
    return problem_response(
        422,
        title="Validation failed",
        detail="The request does not match the schema.",
        slug="validation",
        instance=request.url.path,
        errors=_issues(errors),
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    detail = (
        exc.detail
        if isinstance(exc.detail, str) and exc.detail != HTTPStatus(exc.status_code).phrase
        else None
    )
    return problem_response(exc.status_code, detail=detail, instance=request.url.path, headers=headers)


async def _on_integrity(request: Request, exc: Exception) -> JSONResponse:
    # A unique key taken by a concurrent request: the transaction rolled back whole, and a retry will see
    # the other request's result. Not a server fault, and nothing was half-written.
    log.info("integrity conflict on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        409,
        detail="The request conflicts with a change made at the same moment; retry it.",
        slug="concurrent-conflict",
        instance=request.url.path,
    )


def _retry_shortly(request: Request, *, slug: str, detail: str) -> JSONResponse:
    """503 with `Retry-After`: nothing was done, and the same request will very likely succeed soon."""
    return problem_response(
        503, detail=detail, slug=slug, instance=request.url.path, headers={"Retry-After": "1"}
    )


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_unreachable(exc):
        return await _on_unexpected(request, exc)
    # The server is restarting, unreachable or out of connections: nothing was committed, and the same
    # request will very likely succeed in a moment — tell the client so instead of reporting a fault.
    log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
    return _retry_shortly(
        request,
        slug="database-unavailable",
        detail="The database is briefly unavailable; nothing was changed. Retry shortly.",
    )


async def _on_pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
    # Every pooled connection stayed in use for the pool's whole timeout: the service is saturated. Nothing
    # was done, and backing off is what helps it recover, so this is "busy", not a fault.
    log.warning("no free database connection on %s %s: %s", request.method, request.url.path, exc)
    return _retry_shortly(
        request, slug="service-busy", detail="The service is at capacity; nothing was changed. Retry shortly."
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        500, detail="An unexpected error occurred; it has been logged.", instance=request.url.path
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(IntegrityError, _on_integrity)
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(PoolTimeout, _on_pool_exhausted)
    # A connection that fails while being opened reaches the app as the driver's or the socket's own error.
    for unreachable in CONNECTION_ERRORS:
        app.add_exception_handler(unreachable, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)


# For `responses=` in route declarations, so the OpenAPI documents the problem shape.
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": ProblemDetail,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }
