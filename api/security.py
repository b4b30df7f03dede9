"""Who may call: bearer keys for reads and writes, and rate limits per client.

Keys are compared in constant time (`hmac.compare_digest` over every
configured key, no early exit) and never logged. The limits use the `limits`
library's moving window in memory, keyed only on what the server verified:

* a request is counted against the key it authenticated with, or, when it
  needed none (reads without CITEQA_API_KEYS), against its peer address. A
  token that was not checked names nobody, so it buys no budget of its own;
* a wrong key is counted against the peer address (`auth_failure_limit`).
  Past that budget, every keyed request from the address is refused with 429
  before its key is even compared, so the answer says nothing about the key.

The peer address is the TCP peer, or the client a trusted proxy names in
X-Forwarded-For: uvicorn rewrites it only for peers in
CITEQA_API__TRUSTED_PROXIES (`citeqa serve` turns proxy headers off when that
list is empty).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from api.errors import Forbidden, RateLimited, Unauthorized
from rag.settings import Settings

_BEARER = {"WWW-Authenticate": "Bearer"}


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _matches(token: str, keys: list[str]) -> bool:
    found = False
    given = token.encode()
    for key in keys:
        # Every key is compared, so the time taken says nothing about which one matched.
        found |= hmac.compare_digest(given, key.encode())
    return found


def _key_id(token: str) -> str:
    """A verified key's bucket name (the key itself is never kept as a name)."""
    return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def _limits(spec: str) -> list[RateLimitItem]:
    spec = spec.strip()
    return parse_many(spec) if spec else []


class Guard:
    def __init__(self, settings: Settings) -> None:
        self.admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        self.readers = [k.get_secret_value() for k in settings.api_keys]
        self.limits = _limits(settings.api.rate_limit)
        self.failure_limits = _limits(settings.api.auth_failure_limit)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    @staticmethod
    def address(request: Request) -> str:
        return "addr:" + (request.client.host if request.client else "unknown")

    def read(self, request: Request) -> str:
        """Reads are open unless CITEQA_API_KEYS is set; then a reader or the admin key.
        Returns who to count the request against."""
        address = self.address(request)
        if not self.readers:
            return address  # open reads: a token would prove nothing, so it is ignored
        token = _token(request)
        if token is None:
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>'", headers=_BEARER
            )
        self._refuse_if_guessing(address)
        if not _matches(token, self.readers + ([self.admin] if self.admin else [])):
            self._failed(address)
            raise Unauthorized("invalid API key", headers=_BEARER)
        return _key_id(token)

    def write(self, request: Request) -> str:
        """Writes need the admin key, and are off when none is configured."""
        if not self.admin:
            raise Forbidden("writes are disabled: set CITEQA_ADMIN_KEY to enable them")
        token = _token(request)
        if token is None:
            raise Unauthorized(
                "missing admin key: send 'Authorization: Bearer <key>'", headers=_BEARER
            )
        address = self.address(request)
        self._refuse_if_guessing(address)
        if not _matches(token, [self.admin]):
            if _matches(token, self.readers):
                raise Forbidden("this key may read but not write")
            self._failed(address)
            raise Unauthorized("invalid admin key", headers=_BEARER)
        return _key_id(token)

    def throttle(self, who: str) -> None:
        """Count one request against `who` (from `read` or `write`); 429 past the limit."""
        for item in self.limits:
            if not self.limiter.hit(item, who):
                self._too_many(item, (who,), "rate limit exceeded")

    def _refuse_if_guessing(self, address: str) -> None:
        for item in self.failure_limits:
            if not self.limiter.test(item, "authfail", address):
                self._too_many(item, ("authfail", address), "too many invalid API keys")

    def _failed(self, address: str) -> None:
        for item in self.failure_limits:
            self.limiter.hit(item, "authfail", address)

    def _too_many(self, item: RateLimitItem, ids: tuple[str, ...], message: str) -> None:
        reset, _ = self.limiter.get_window_stats(item, *ids)
        wait = max(1, math.ceil(reset - time.time()))
        raise RateLimited(
            f"{message} from this client ({item}); retry in {wait}s",
            headers={"Retry-After": str(wait)},
        )


class RedactQuery(logging.Filter):
    """Drops the query string from uvicorn's access log lines: a client may put a key
    (or anything else private) in a URL, and the log must not keep it. The path stays;
    `?<redacted>` marks that there was a query."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(
                a.split("?", 1)[0] + "?<redacted>" if isinstance(a, str) and "?" in a else a
                for a in args
            )
        return True


ACCESS_LOG_FILTER = RedactQuery()


def redact_access_log() -> None:
    """Idempotent; called by the app factory and again at startup, after uvicorn has
    configured its loggers."""
    logging.getLogger("uvicorn.access").addFilter(ACCESS_LOG_FILTER)
