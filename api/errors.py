"""Errors the API can answer with, and the one place they become HTTP responses.

Every error body has OpenAI's shape, `{"error": {"message", "type", "param",
"code"}}`, so any OpenAI client can show it; no traceback ever reaches a client.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.index.store import StoreUnavailable

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers
        if code is not None:
            self.code = code


class NotFound(ApiError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class Unauthorized(ApiError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(ApiError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class Conflict(ApiError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class TooLarge(ApiError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(ApiError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ServiceUnavailable(ApiError):
    status = 503
    type = "service_unavailable"
    code = "unavailable"


# An absolute filesystem path in a message (not the path part of a URL: that follows a
# host, so a word character or a colon precedes its slash).
_ABS_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"<>:,;()]+/)*[^\s/'\"<>:,;()]+/?")
_QUOTED_PATH = re.compile(r"(['\"])/[^'\"\n]*\1")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact_paths(text: str) -> str:
    """`text` with absolute filesystem paths replaced by `<path>`, and credentials in
    URLs removed: for messages that reach clients."""
    text = _QUOTED_PATH.sub(lambda m: f"{m.group(1)}<path>{m.group(1)}", text)
    return without_userinfo(_ABS_PATH.sub("<path>", text))


def without_userinfo(text: str) -> str:
    return _USERINFO.sub("", text)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.message, exc.type, exc.param, exc.code), exc.status, headers=exc.headers
        )

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("store unavailable: %s", exc)
        return JSONResponse(
            error_body(
                f"the vector store is unavailable: {redact_paths(str(exc))}",
                "service_unavailable",
                code="store_unavailable",
            ),
            503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        message = (
            f"{param}: {first.get('msg')}" if param else str(first.get("msg", "invalid request"))
        )
        return JSONResponse(
            error_body(message, "invalid_request_error", param, "invalid_value"), 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            error_body(str(exc.detail), type_, code=str(exc.status_code)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body("internal error", "server_error", code="internal"), 500)
