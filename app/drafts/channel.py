"""What passes between the relay and its draft worker: length-prefixed messages over two pipes.

The worker's side blocks; the relay's side (``send``, ``receive``) gives up at a deadline, so a
worker that is stuck or dead never holds the relay's thread for longer than that.
"""

from __future__ import annotations

import math
import os
import select
import struct
import time
from dataclasses import dataclass

from app.settings import Settings

FRAME = struct.Struct(">I")  # each message's length
READY = b"ready"
# The first byte of each answer: the preview's JSON, a problem document, or "out of memory"
# (the worker exits after sending it).
ANSWER, PROBLEM, EXHAUSTED = b"A", b"P", b"X"


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker is started with (the first message, pickled: it comes from its parent)."""

    settings: Settings
    memory_bytes: int  # address space on top of what the worker has once it is ready
    cpu_seconds: int  # CPU time per draft; the relay's wall-clock deadline normally comes first
    answer_limit: int  # bytes


def read_message(fd: int) -> bytes | None:
    """The next message (blocking); None when the other side has closed the pipe."""
    header = _read_blocking(fd, FRAME.size)
    if header is None:
        return None
    return _read_blocking(fd, FRAME.unpack(header)[0])


def write_message(fd: int, data: bytes) -> None:
    """Write a whole message (blocking)."""
    view = memoryview(FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def send(fd: int, data: bytes, deadline: float) -> None:
    """Write a whole message to a non-blocking pipe; ``TimeoutError`` at ``deadline``
    (``time.monotonic``), ``EOFError`` when the reader is gone."""
    view = memoryview(FRAME.pack(len(data)) + data)
    while view:
        _wait(fd, select.POLLOUT, deadline)
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
        except BrokenPipeError:
            raise EOFError("the worker is gone") from None


def receive(fd: int, deadline: float, limit: int) -> bytes:
    """Read a whole message of at most ``limit`` bytes from a non-blocking pipe; ``TimeoutError``
    at ``deadline``, ``EOFError`` when the writer is gone, ``ValueError`` when it is longer."""
    (size,) = FRAME.unpack(_read_until(fd, FRAME.size, deadline))
    if size > limit:
        raise ValueError(f"a message of {size} bytes; at most {limit} expected")
    return _read_until(fd, size, deadline)


def _read_blocking(fd: int, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _read_until(fd: int, size: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < size:
        _wait(fd, select.POLLIN, deadline)
        try:
            chunk = os.read(fd, size - len(data))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("the worker is gone")
        data += chunk
    return bytes(data)


def _wait(fd: int, events: int, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    poller = select.poll()
    poller.register(fd, events)
    if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
        raise TimeoutError
