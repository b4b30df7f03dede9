"""How `citeqa serve` runs uvicorn: the limits a client meets before the app does.

uvicorn picks httptools when it is installed, and httptools reads a header of any
size (a 64 MiB one held the event loop for seconds, measured in docs/security.md).
So the server speaks HTTP through h11, whose `max_incomplete_event_size` (uvicorn's
`h11_max_incomplete_event_size`) caps the request line plus headers: past it the
client gets 400 and the connection is closed.

Neither parser times out a client that never finishes its headers: uvicorn's
keep-alive timer runs only between requests and any byte received cancels it. So
the protocol below gives every connection `header_timeout` seconds, from when it
opens or its last response ends, to deliver a whole request head; a connection
that sends nothing, or trickles its headers, gets 408 and is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from rag.settings import Settings

_TIMEOUT_BODY = b"request header not received in time"
_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class HeaderDeadline(H11Protocol):
    """h11 with a deadline on each request head (see the module docstring)."""

    header_timeout = 10.0  # set per server by `protocol(settings)`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # a request head came in whole: the app has it
            self._disarm()

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()
        if self.cycle is before and not self.transport.is_closing():
            self._arm()  # the next request on this connection gets the same time
        elif self.cycle is not before:
            self._disarm()  # a pipelined request was already whole

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed, or handed over (a WebSocket upgrade)
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: not ours to cut
        self.transport.write(_TIMEOUT_408)
        self.transport.close()


def protocol(settings: Settings) -> type[HeaderDeadline]:
    """The protocol class for one server, carrying its settings' deadline."""
    timeout = settings.api.header_timeout
    return type("HeaderDeadline", (HeaderDeadline,), {"header_timeout": timeout})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `citeqa serve` passes to uvicorn.run besides the app, host and port."""
    proxies = settings.api.trusted_proxies
    return {
        "http": protocol(settings),
        "h11_max_incomplete_event_size": settings.api.max_header_bytes,
        # X-Forwarded-For names the client only when a configured proxy sent it;
        # uvicorn's default would believe any local process.
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or None,
    }
