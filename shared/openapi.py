"""Every error an operation can answer, declared in its OpenAPI document as RFC 9457 problem details.

Routes declare the errors of their own logic (404, 409, 412, …); the errors the platform itself produces
for any operation — malformed input, missing or insufficient credentials, an oversized body, a write
arriving faster than the caller's rate limit — are added here, so clients and generated tests see every
status code an operation can return and the one body shape (`application/problem+json`) they all share.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from shared.errors import PROBLEM_JSON, ProblemDetail

WRITES = {"post", "put", "patch", "delete"}
_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetail"}
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def platform_errors(method: str, path: str, operation: dict[str, Any]) -> dict[int, str]:
    """The statuses any operation shaped like this one can answer, with why."""
    errors: dict[int, str] = {}
    takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
    if takes_input:
        errors[400] = "Bad Request: malformed JSON, a cursor or header this API did not issue."
        errors[422] = "Validation failed: the request does not match the schema."
    if operation.get("security"):
        errors[401] = "Unauthorized: credentials missing, expired or not valid."
        errors[403] = "Forbidden: the caller's roles do not grant this action."
    if "{" in path:
        errors[404] = "Not Found: no such resource."
    if operation.get("requestBody"):
        errors[413] = "Payload Too Large: the body exceeds the configured limit."
    if method in WRITES:
        errors[409] = "Conflict: the change collides with the resource's state or a concurrent change."
        errors[429] = "Too Many Requests: the caller's write rate limit; retry after `Retry-After` seconds."
    return errors


def _problem(description: str, status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": dict(_PROBLEM_REF)}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds until a write will be accepted again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


def declare_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Rewrite `document` in place: every error response is a problem document, none is missing."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem = ProblemDetail.model_json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    schemas.update(problem.pop("$defs", {}))
    schemas["ProblemDetail"] = problem
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for status, response in list(responses.items()):
                if status[0] in "45":
                    response["content"] = {PROBLEM_JSON: {"schema": dict(_PROBLEM_REF)}}
                    if response.get("description") in (None, "", "Validation Error"):
                        response["description"] = HTTPStatus(int(status)).phrase
            for code, description in platform_errors(method, path, operation).items():
                responses.setdefault(str(code), _problem(description, code))
            operation["responses"] = dict(sorted(responses.items()))
    if not any(name in str(document["paths"]) for name in _FASTAPI_VALIDATION):
        for name in _FASTAPI_VALIDATION:
            schemas.pop(name, None)
    return document


def document_problems(app: FastAPI) -> None:
    """Make `app.openapi()` return the document with its problem responses declared."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
