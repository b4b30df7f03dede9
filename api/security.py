"""Who may call: bearer keys for reads and writes, and a rate limit per client.

Keys are compared in constant time (`hmac.compare_digest` over every
configured key, no early exit) and never logged. The rate limit uses the
`limits` library's moving window in memory: per API key when one is sent,
else per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time

from fastapi import Request
from limits import parse_many
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


class Guard:
    def __init__(self, settings: Settings) -> None:
        self.admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        self.readers = [k.get_secret_value() for k in settings.api_keys]
        spec = settings.api.rate_limit.strip()
        self.limits = parse_many(spec) if spec else []
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def read(self, request: Request) -> None:
        """Reads are open unless CITEQA_API_KEYS is set; then a reader or the admin key."""
        if not self.readers:
            return
        token = _token(request)
        if token is None:
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>'", headers=_BEARER
            )
        if not _matches(token, self.readers + ([self.admin] if self.admin else [])):
            raise Unauthorized("invalid API key", headers=_BEARER)

    def write(self, request: Request) -> None:
        """Writes need the admin key, and are off when none is configured."""
        if not self.admin:
            raise Forbidden("writes are disabled: set CITEQA_ADMIN_KEY to enable them")
        token = _token(request)
        if token is None:
            raise Unauthorized(
                "missing admin key: send 'Authorization: Bearer <key>'", headers=_BEARER
            )
        if not _matches(token, [self.admin]):
            if _matches(token, self.readers):
                raise Forbidden("this key may read but not write")
            raise Unauthorized("invalid admin key", headers=_BEARER)

    def throttle(self, request: Request) -> None:
        if not self.limits:
            return
        token = _token(request)
        if token is not None:
            who = "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
        else:
            who = "addr:" + (request.client.host if request.client else "unknown")
        for item in self.limits:
            if not self.limiter.hit(item, who):
                reset, _ = self.limiter.get_window_stats(item, who)
                wait = max(1, math.ceil(reset - time.time()))
                raise RateLimited(
                    f"rate limit of {item} exceeded; retry in {wait}s",
                    headers={"Retry-After": str(wait)},
                )
