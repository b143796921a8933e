"""The coalescing transport: one write per response, nothing held back, nothing reordered;
and the protocol's keep-alive timer, which closes idle connections only.

The transport is tested over a real socket pair on a uvloop loop, and the protocol under a
real uvicorn server with raw sockets as the client.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
import uvloop

from app.api.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport


class CountingTransport(asyncio.Transport):
    """Passes writes on to uvloop's transport and counts them."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def over_socket_pair(test: Any) -> tuple[list[bytes], bytes]:
    """Run ``test(transport)`` on a uvloop loop; the writes that reached uvloop and what the peer read."""
    ours, theirs = socket.socketpair()

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, sock=ours)
        counting = CountingTransport(transport)
        try:
            await test(CoalescingTransport(counting, loop))
        except BaseException:
            transport.abort()  # else the failed check hangs in the loop's close
            raise
        return counting.writes

    with theirs:
        writes = uvloop.run(main())
        return writes, read_all(theirs)


def test_a_head_and_body_written_in_one_step_go_out_in_one_write() -> None:
    async def test(transport: CoalescingTransport) -> None:
        transport.write(b"HEAD\r\n\r\n")
        assert transport.get_write_buffer_size() == 8  # held, and counted as buffered
        transport.write(b"body")
        transport.close()

    writes, received = over_socket_pair(test)
    assert writes == [b"HEAD\r\n\r\nbody"]
    assert received == b"HEAD\r\n\r\nbody"


def test_a_lone_write_is_sent_when_the_step_ends() -> None:
    async def test(transport: CoalescingTransport) -> None:
        transport.write(b"head only")
        await asyncio.sleep(0)
        assert transport.get_write_buffer_size() == 0
        transport.write(b"|next")
        transport.write(b"|and more")
        transport.write(b"|last")
        transport.close()

    writes, received = over_socket_pair(test)
    assert writes == [b"head only", b"|next|and more", b"|last"]
    assert received == b"head only|next|and more|last"


def test_a_held_write_is_sent_before_close_and_dropped_by_abort() -> None:
    async def closed(transport: CoalescingTransport) -> None:
        transport.write(bytearray(b"closing"))
        transport.close()
        assert transport.is_closing()

    assert over_socket_pair(closed) == ([b"closing"], b"closing")

    async def aborted(transport: CoalescingTransport) -> None:
        transport.write(b"never sent")
        transport.abort()
        await asyncio.sleep(0)

    assert over_socket_pair(aborted) == ([], b"")


# -- under uvicorn ---------------------------------------------------------------------------

BODY_MAY_GO = threading.Event()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    if scope["path"] == "/slow-body":  # the head, then the body once the client has the head
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await asyncio.to_thread(BODY_MAY_GO.wait, 10)
        await send({"type": "http.response.body", "body": b"done"})
        return
    body = scope["path"].encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(timeout_keep_alive: float = 5) -> Iterator[int]:
    # log_config=None: leave the process's logging as the other tests expect it
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=CoalescingHttpToolsProtocol,
        lifespan="off",
        log_config=None,
        timeout_keep_alive=timeout_keep_alive,  # type: ignore[arg-type]  # seconds, int or float
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def test_pipelined_requests_get_their_answers_whole_and_in_order() -> None:
    with serving() as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(b"GET /r%d HTTP/1.1\r\nhost: x\r\n\r\n" % i for i in range(5)))
        sock.sendall(b"GET /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        received = read_all(sock)
    bodies = [part.rsplit(b"\r\n\r\n", 1)[-1] for part in received.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"/r0", b"/r1", b"/r2", b"/r3", b"/r4", b"/last"]


def test_a_head_without_its_body_is_not_held_back() -> None:
    BODY_MAY_GO.clear()
    with serving() as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /slow-body HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        try:
            head = sock.recv(65536)  # times out if the head waits for the body
        finally:
            BODY_MAY_GO.set()
        assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
        assert read_all(sock) == b"done"


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_a_close_after_the_answer_sends_it_first(method: str) -> None:
    with serving() as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"{method} /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        received = read_all(sock)
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert received.endswith(b"\r\n\r\n" if method == "HEAD" else b"\r\n\r\n/x")


def ask(sock: socket.socket, path: str) -> bytes:
    """One request on a kept-alive connection; its body."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    received = b""
    while not received.endswith(path.encode()):
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before the answer to {path}"
        received += chunk
    return received.rsplit(b"\r\n\r\n", 1)[-1]


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    with serving(timeout_keep_alive=0.5) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        assert ask(sock, "/one") == b"/one"
        time.sleep(0.2)
        assert ask(sock, "/two") == b"/two"  # still open, and the wait starts over
        assert closed_by_server(sock, within=5)


def test_a_connection_in_use_outlives_the_keep_alive_timeout() -> None:
    # one timer per connection: when it fires, the last answer was less than a timeout ago
    with serving(timeout_keep_alive=0.4) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        for i in range(8):
            assert ask(sock, f"/r{i}") == f"/r{i}".encode()
            time.sleep(0.15)
        assert closed_by_server(sock, within=5)


def test_a_request_slower_than_the_keep_alive_timeout_is_answered() -> None:
    BODY_MAY_GO.clear()
    with serving(timeout_keep_alive=0.2) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        assert ask(sock, "/first") == b"/first"  # arms the timer
        sock.sendall(b"GET /slow-body HTTP/1.1\r\nhost: x\r\n\r\n")
        time.sleep(0.6)  # three timeouts while the answer is under way
        BODY_MAY_GO.set()
        sock.settimeout(5)
        received = b""
        while not received.endswith(b"done"):
            chunk = sock.recv(65536)
            assert chunk, "closed while answering"
            received += chunk
        assert closed_by_server(sock, within=5)
