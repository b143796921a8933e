"""A TCP proxy on loopback that, on demand, cuts a connection instead of passing on a reply.

The request reaches the server and runs there; only its answer is lost, as when a server is
killed between running a command and sending its reply. ``with ReplyDroppingProxy(port) as
proxy: proxy.drop_next_reply()`` -- the next reply from the server closes that connection.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class ReplyDroppingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._drop = threading.Event()
        self.dropped = 0
        self._sockets: list[socket.socket] = []

    def drop_next_reply(self) -> None:
        self._drop.set()

    def __enter__(self) -> ReplyDroppingProxy:
        threading.Thread(target=self._accept, daemon=True, name="reply-dropping-proxy").start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self._drop.is_set():
                    self._drop.clear()
                    self.dropped += 1
                    break
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            sock.close()
