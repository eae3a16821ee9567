"""The error answers in the OpenAPI schema: every operation documents the 4xx codes it can give, with
the body they carry (docs/api-errors.md).

FastAPI documents only a route's success and its schema-validation 422 (as a list), while the engine
also raises 400-429 with a string ``detail``. Rather than repeat the same ``responses=`` on ~40
decorators, this derives them from what each route is: authenticated (401, 403, 429), has path
parameters (404), takes a body (408, 413), writes (409), and patches the 422 body to what it really
is (a string or a list). A test runs schemathesis' response checks against the result.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

ERROR = "ErrorAnswer"
REASONS = {
    400: "Malformed request: invalid Content-Length, JSON nested too deeply, an invalid cursor.",
    401: "No API key, or an unknown, malformed or revoked one.",
    403: "The key lacks this route's scope, or the credential may not act for this resource.",
    404: "The resource named in the path does not exist.",
    408: "The request body was not received in time; the connection is closed.",
    409: "The request conflicts with the stored state.",
    413: "The body (or the batch) is larger than the configured limit.",
    422: "The body or a parameter is invalid (text no database can store included): the engine's reason "
    "(a string) or the schema check's list.",
    429: "Rate limit, or too many failed key checks; retry after `Retry-After` seconds.",
    503: "A service this route needs is not available.",
}
WRITES = {"post", "put", "patch", "delete"}
UNAUTHENTICATED = ("/healthz", "/readyz", "/metrics")
# What the rules cannot see: a resource named in the body rather than the path.
EXTRA = {("post", "/v1/devices"): {404}}  # customer_id of a customer that does not exist
NEVER_CONFLICT = ("/v1/locations", "/v1/customers/{customer_id}/link-tokens")  # nothing to conflict with


def _error_schema() -> dict[str, Any]:
    return {
        "title": ERROR,
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": {"anyOf": [
            {"type": "string", "description": "the reason"},
            {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"},
             "description": "FastAPI's schema check: one entry per problem"},
            {"type": "object", "required": ["message"], "description": "a campaign's problems, each named",
             "properties": {"message": {"type": "string"},
                            "reasons": {"type": "array", "items": {"type": "string"}}}},
        ]}},
    }  # fmt: skip


def _has_scope(route: RouteContext) -> bool:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if getattr(dep.call, "required_scope", None):
            return True
        stack.extend(dep.dependencies)
    return False


def error_codes(route: RouteContext, method: str, operation: dict[str, Any]) -> set[int]:
    """The error codes an operation can answer (see the module docstring for the rules)."""
    codes = {400, 422}  # every route: the body guard's 400s and 422s; FastAPI's or the engine's 422
    path = route.path_format or ""
    body = "requestBody" in operation or method in WRITES
    if _has_scope(route):
        codes |= {401, 403, 429}
    if "twilio" in path:
        codes |= {403}  # the signature check
    if "{" in path:
        codes.add(404)
    if body:
        codes |= {408, 413}
    if method in WRITES and path not in NEVER_CONFLICT:
        codes.add(409)
    if path in ("/v1/locations", "/readyz"):
        codes.add(503)
    codes |= EXTRA.get((method, path), set())
    if path in UNAUTHENTICATED:
        codes -= {401, 403, 409, 422}
    return codes


def _answer(code: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": REASONS[code],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR}"}}},
    }
    if code == 429:
        answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    if code == 401:
        answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return answer


def document_errors(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that adds the error answers (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes,
        )  # fmt: skip
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components[ERROR] = _error_schema()
        components.setdefault("ValidationError", _validation_error_schema())
        paths = schema.get("paths", {})
        for route in iter_route_contexts(app.routes):
            if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
                continue
            for method in route.methods or ():
                operation = paths.get(route.path_format or "", {}).get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                for code in sorted(error_codes(route, method.lower(), operation)):
                    documented = responses.get(str(code), {})
                    answer = _answer(code)
                    if documented.get("description") and code != 422:
                        answer["description"] = documented["description"]
                    responses[str(code)] = answer
                for code, documented in responses.items():  # errors a route declared itself: same body
                    if code[:1] in "45" and "content" not in documented:
                        documented["content"] = _answer(400)["content"]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _validation_error_schema() -> dict[str, Any]:
    return {
        "title": "ValidationError", "type": "object", "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"}, "type": {"type": "string"},
        },
    }  # fmt: skip
