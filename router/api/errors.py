"""Every failure of a request becomes the contract's error body:
``{"error": {"code", "message"}}``, with the status ``router.errors.ANSWERS`` gives it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from domicile.audit.errors import AuditError
from domicile.router.errors import ApiError, answer_of
from domicile.router.responses import error_response
from domicile.shards import errors as e

log = logging.getLogger("domicile.api")


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(e.DomicileError)
    @app.exception_handler(AuditError)
    async def domain_error(request: Request, exc: e.DomicileError | AuditError) -> Response:
        answer = answer_of(type(exc))
        status = 500 if answer is None else answer.status
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        if isinstance(exc, e.NoPermittedRegion):
            request.app.state.metrics.refused.labels(exc.jurisdiction).inc()
        if status == 500:
            log.error(
                "%s error %s (request %s)",
                "unmapped" if answer is None else "internal",
                exc.code,
                _rid(request),
            )
        return error_response(status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if request.method in ("POST", "PUT", "PATCH") and not (
            media == "application/json" or media.endswith("+json")
        ):
            return error_response(
                415,
                "unsupported_media_type",
                f"the body must be application/json, not {media or 'unspecified'}",
            )
        if first.get("type") == "json_invalid":
            return error_response(422, "malformed_json", "the request body is not valid JSON")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Type only: messages of driver errors can quote raw subject data.
        log.error("internal error %s (request %s)", type(exc).__name__, _rid(request))
        return error_response(500, "internal_error", "internal error; see the server log")


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))
