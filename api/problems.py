"""One shape for every refusal the API answers, and its place in the OpenAPI schema.

Every 4xx and 5xx body is an RFC 9457 problem (``application/problem+json``): ``status``,
``title`` and a one-sentence ``detail`` naming the problem; a 422 adds ``errors`` (one per
field: where, what, a short quote of the input) and a 409 names the record in the way
(``conversation_id`` or ``customer_id``), so a client can resume or merge instead of parsing
sentences.

``document_refusals`` writes the answers each route can give into the schema from what the
route is (behind the key, takes a body, has path ids) plus what it declares with
``refusals(...)``; the Schemathesis test (tests/test_api_schema.py) fails on any status or
body a route gives that its schema does not say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

MEDIA_TYPE = "application/problem+json"
BEARER = "ApiKey"
_REF = "#/components/schemas/{model}"


class FieldError(BaseModel):
    loc: list[str | int] = Field(
        description="Where the problem is: body, query, path, then field names."
    )
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(description="A stable code for the kind of problem.")
    input: Any = Field(default=None, description="The refused input, or its first characters.")


class Problem(BaseModel):
    """The body of every refusal (RFC 9457 problem details)."""

    type: str = "about:blank"
    status: int
    title: str = Field(description="The HTTP status phrase.")
    detail: str = Field(description="One sentence naming the problem.")
    errors: list[FieldError] = Field(default_factory=list, description="422: each field refused.")
    conversation_id: str | None = Field(
        default=None, description="409: the conversation in the way."
    )
    customer_id: str | None = Field(default=None, description="409: the customer who owns it.")


def problem(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    refers_to: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, detail, errors=errors, refers_to=refers_to),
        status_code=status,
        headers=dict(headers or {}),
        media_type=MEDIA_TYPE,
    )


def problem_body(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    refers_to: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "status": status,
        "title": HTTPStatus(status).phrase,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update(refers_to or {})
    return body


# What each status means on a route, for the schema.
_MEANING = {
    400: "The body cannot be read as what this route takes.",
    401: "Missing or unknown API key (Authorization: Bearer <key>).",
    403: "The request is not signed by the provider this route expects.",
    404: "Nothing with that id.",
    409: "Conflicts with the current state or with an existing record (the body names it).",
    413: "The body is over the size limit.",
    415: "A content type this route does not take.",
    422: "A field is missing or invalid (errors lists each).",
    503: "The database or the broker is unavailable; retry after Retry-After seconds.",
}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's own refusals, beyond what ``document_refusals`` infers (``responses=``)."""
    return {status: {"description": _MEANING[status]} for status in statuses}


def document_refusals(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The app's ``openapi`` with every refusal a route can give, each a ``Problem``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        for name, sub in components["Problem"].pop("$defs", {}).items():
            components[name] = sub
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        # /docs' Authorize button: every /v1 route takes the API key as a bearer token.
        schema["components"]["securitySchemes"] = {
            BEARER: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key (DORMOUSE_API_KEYS, or the one `make up` prints).",
            }
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                _document(path, method, operation)
        app.openapi_schema = schema
        return schema

    return openapi


def _document(path: str, method: str, operation: dict[str, Any]) -> None:
    answers = operation.setdefault("responses", {})
    takes_body = "requestBody" in operation
    inferred = {422, 503}
    if path.startswith("/v1/"):
        inferred |= {401}
        operation["security"] = [{BEARER: []}]
        if method != "get":  # any write can meet a unique constraint or a state that refuses it
            inferred |= {409}
    if takes_body:
        inferred |= {400, 413, 415}
    if "{" in path:
        inferred |= {404}
    for status in inferred:
        answers.setdefault(str(status), {"description": _MEANING[status]})
    for status, answer in answers.items():
        if int(status) >= 400:
            answer["content"] = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
