"""The OpenAPI document: FastAPI's, completed where it cannot see by itself. The hot routes
check their key themselves, so they state their scope (``secured``); every operation that needs
a key says which scope and answers 401, 403 and 429 (failed authentications throttled); every
operation takes ``X-Request-Id``; and every error answer is the contract's JSON body, not
FastAPI's validation shape nor a text route's media type."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from domicile.router.api.models import error_response
from domicile.router.auth import BEARER

_REQUEST_ID = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "an id for the request, echoed in the answer and the logs (made when absent)",
    "schema": {"type": "string"},
}


def secured(scope: str) -> dict[str, Any]:
    """``openapi_extra`` of a route that checks its key itself (``authorize``)."""
    return {"security": [{BEARER.scheme_name: [scope]}]}


_ERROR_BODY_REF = {"$ref": "#/components/schemas/ErrorBody"}
_ERROR_BODY = {"application/json": {"schema": _ERROR_BODY_REF}}


def _response(status: int) -> dict[str, Any]:
    response = error_response(status)
    response.pop("model")
    return {**response, "content": _ERROR_BODY}


def _complete(operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    for requirement in operation.get("security", []):
        for scope in requirement.get(BEARER.scheme_name, []):
            needs = f"Needs an API key with the scope `{scope}`."
            operation["description"] = f"{operation.get('description', '')}\n\n{needs}".strip()
        for status in ("401", "403", "429"):
            responses.setdefault(status, _response(int(status)))
    if "422" in responses:  # FastAPI's own is its validation shape, which is never answered
        responses["422"] = _response(422)
    for status, response in responses.items():
        # The error body is JSON, whatever media type the route's successful answers have.
        media = response.get("content", {}).values()
        if int(status) >= 400 and any(m.get("schema") == _ERROR_BODY_REF for m in media):
            response["content"] = _ERROR_BODY
    operation.setdefault("parameters", []).append(_REQUEST_ID)


def document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    for operations in doc["paths"].values():
        for operation in operations.values():
            _complete(operation)
    schemas = doc.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
