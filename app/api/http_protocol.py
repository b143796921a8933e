"""uvicorn's httptools protocol with less work per request: each response's head and body
sent in one system call, and one keep-alive timer per connection instead of one per response.

uvicorn writes a response's status line and headers on ``http.response.start`` and the body
on ``http.response.body``, and uvloop sends each write at once: two ``write`` calls and two
TCP segments per response, each a trip through the kernel's network stack on the serving
core. ``CoalescingTransport`` holds the first write of a loop step and sends it with the next
one, or at the end of the step when none follows (bench/RESULTS.md, seventeenth session).

uvicorn also arms a keep-alive timer (``call_later``) after each response and cancels it when
the next request's data arrives. ``CoalescingHttpToolsProtocol`` notes the time a response
left the connection idle instead, and one timer per connection checks that when it fires:
it closes a connection idle for ``timeout_keep_alive`` seconds, as uvicorn does, and is
armed again otherwise.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport(asyncio.Transport):
    """A transport that joins a held write with the next one; everything else is passed on."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is None:
            self._held = bytes(data)  # a copy: the caller may reuse a mutable buffer
            self._loop.call_soon(self._send_held)
        else:
            held, self._held = self._held, None
            self._transport.write(held + data)

    def _send_held(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def writelines(self, list_of_data: Any) -> None:
        self._send_held()
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._send_held()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self._send_held()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a ``CoalescingTransport``, with a lazy
    keep-alive timer."""

    # loop.time() when the last response left the connection with nothing to do; None while
    # a request is being read or answered
    _idle_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn calls this when data arrives: the connection is busy, the timer stays armed
        self._idle_since = None

    def on_response_complete(self) -> None:
        # uvicorn's, but arming the timer only when none is armed
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        """Close the connection if it has been idle for the keep-alive timeout; else check again
        when it could be (a busy connection's next response arms the timer)."""
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_due)
        else:
            self.timeout_keep_alive_handler()
