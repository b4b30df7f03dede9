"""ASGI middleware: request body limits, request text checks, Prometheus metrics.

The body limit is enforced both on Content-Length (refused before reading)
and on the bytes actually received (for chunked uploads), so no request can
make the server buffer more than the limit; either way the answer is a 413.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import unquote_to_bytes

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: ASGIApp, *, default: int, per_path: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.per_path = per_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _send_413(send, limit)
            return
        received = 0
        over = False  # the body went past the limit
        started = False  # a response start went out
        replaced = False  # ... and it was our 413, not the app's answer

        async def limited_receive() -> Message:
            nonlocal received, over
            if over:
                raise _TooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                if over and not started:
                    # The app saw our exception while reading the body and answered
                    # something else (FastAPI turns any body-read error into a 400):
                    # the answer to an oversized body is a 413, chunked or not.
                    started = replaced = True
                    await _send_413(send, limit)
                    return
                started = True
            elif replaced:
                return  # the body of the answer we replaced
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not started:
                await _send_413(send, limit)


async def _send_413(send: Send, limit: int) -> None:
    body = error_body(
        f"request body larger than {limit} bytes",
        "invalid_request_error",
        code="request_too_large",
    )
    await _send_json(send, 413, body, close=True)


async def _send_json(send: Send, status: int, body: dict, *, close: bool = False) -> None:
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff); a pair is fine, a lone one
# decodes to a str no UTF-8 encoder (tokenizer, store, response) will take.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _is_json(content_type: bytes | None) -> bool:
    """What FastAPI parses as JSON: no content type, application/json, */*+json."""
    if not content_type:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def bad_query_param(query: bytes) -> str | None:
    """The name of the first query parameter whose name or value is not UTF-8."""
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        for piece in (name, value):
            try:
                unquote_to_bytes(piece.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError:
                return unquote_to_bytes(name).decode("utf-8", "replace") or "query"
    return None


class JsonTooDeep(ValueError):
    """A JSON body nested deeper than Python's parser (or our walk over it) can go."""


def bad_json_text(body: bytes) -> tuple[str | None, str] | None:
    """(field, why) when a JSON body holds text that is not Unicode, else None.
    The field is dotted like validation errors name it (`messages.0.content`).
    Raises JsonTooDeep for a body nested too deeply to parse or walk."""
    why = "text is not valid Unicode (an unpaired surrogate, or bytes that are not UTF-8)"
    try:
        text = body.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        # Bad bytes become lone surrogates here, so the walk below can name their field.
        text = body.decode("utf-8", "surrogateescape")
        utf8 = False
    if utf8 and not _SURROGATE_ESCAPE.search(body):
        return None  # the common case: no \uD800-\uDFFF escape, nothing to parse
    try:
        data = json.loads(text)
        path = _surrogate_path(data, [])
    except RecursionError as exc:
        # json.loads (and the walk) recurse once per level: '[[[[...' is not a 500.
        raise JsonTooDeep("the JSON body is nested too deeply") from exc
    except ValueError:
        # Not JSON: the route's validation says so; but bad bytes are named here.
        return None if utf8 else (None, why)
    if path is None:
        return None if utf8 else (None, why)  # only escaped backslashes or proper pairs
    return ".".join(path) or None, why


def _surrogate_path(value: Any, path: list[str]) -> list[str] | None:
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = _SURROGATE.sub("\ufffd", key)
            if name != key:
                return [*path, name]
            found = _surrogate_path(item, [*path, key])
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _surrogate_path(item, [*path, str(i)])
            if found is not None:
                return found
    return None


class UnicodeCheck:
    """Text that cannot be UTF-8 never reaches a route: an unpaired surrogate in a JSON
    string (`"\\ud800"`), a JSON body that is not UTF-8, or a query parameter whose
    percent-escapes are not UTF-8 is a 422 naming the field, not a 500 from deep in
    the tokenizer. Runs inside BodyLimit, so a buffered body is within the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string") or b""
        name = bad_query_param(query) if query else None
        if name is not None:
            await _send_422(send, name, "the query parameter is not valid UTF-8")
            return
        headers = dict(scope.get("headers") or [])
        if scope.get("method") not in _BODY_METHODS or not _is_json(headers.get(b"content-type")):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            problem = bad_json_text(body)
        except JsonTooDeep as exc:
            error = error_body(str(exc), "invalid_request_error", code="invalid_json")
            await _send_json(send, 400, error)
            return
        if problem is not None:
            await _send_422(send, *problem)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_422(send: Send, param: str | None, why: str) -> None:
    message = f"{param}: {why}" if param else why
    body = error_body(message, "invalid_request_error", param, "invalid_encoding")
    await _send_json(send, 422, body)


class HeaderLimit:
    """More request headers than `max_count`, or more header bytes than `max_bytes`, is
    a 431. `citeqa serve` already closes a connection whose head passes the byte cap
    (api/server.py); this holds under any server the app runs in."""

    def __init__(self, app: ASGIApp, *, max_count: int, max_bytes: int) -> None:
        self.app = app
        self.max_count = max_count
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers") or []
            size = sum(len(k) + len(v) + 4 for k, v in headers)
            if len(headers) > self.max_count or size > self.max_bytes:
                what = (
                    f"more than {self.max_count} headers"
                    if len(headers) > self.max_count
                    else f"headers larger than {self.max_bytes} bytes"
                )
                body = error_body(
                    f"request has {what}", "invalid_request_error", code="headers_too_large"
                )
                await _send_json(send, 431, body, close=True)
                return
        await self.app(scope, receive, send)


class NoSniff:
    """`X-Content-Type-Options: nosniff` on every response: a browser takes each body
    as the type it is served as (JSON stays JSON, never a script or a page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_header)


class Metrics:
    """Request counts and latency per route, plus the answer stages' times."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "citeqa_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "citeqa_request_seconds",
            "HTTP request latency by route (until the response starts, for streams).",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "citeqa_stage_seconds",
            "Time per answer stage: embed, dense, bm25, retrieve, generate, verify, total.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "citeqa_answers",
            "Answers by outcome: answered, refused, degraded.",
            ["outcome"],
            registry=self.registry,
        )

    def observe_answer(self, timings: dict[str, float], refused: bool, degraded: bool) -> None:
        for stage in ("embed", "dense", "bm25", "retrieve", "generate", "verify", "total"):
            if stage in timings:
                self.stages.labels(stage).observe(timings[stage])
        outcome = "refused" if refused else "degraded" if degraded else "answered"
        self.answers.labels(outcome).inc()


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                self._record(scope, status["code"], time.perf_counter() - t0)
            await send(message)

        await self.app(scope, receive, tracking_send)

    def _record(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        route = scope.get("route")
        # The route template, never the raw path: paper ids must not explode the labels.
        name = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "GET")
        self.metrics.requests.labels(name, method, str(status)).inc()
        self.metrics.latency.labels(name, method).observe(seconds)
