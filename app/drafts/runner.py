"""The relay's side of draft previews: one worker process, asked from one thread, replaced when
a draft breaks a limit.

Drafts are compiled and rendered in a separate process because the work a draft asks for is
not bounded by its size (an expression can double a list at each step), and a thread of the
relay's own process could neither be stopped nor kept from its memory. The worker is a fresh
interpreter (``python -m app.drafts.worker``, not a fork of the relay, whose threads and sockets
it must not inherit), started on the first draft and stopped with the relay. The event loop
only awaits: the exchange runs in a thread of its own, with a deadline.
"""

from __future__ import annotations

import asyncio
import math
import os
import pickle  # nosec B403 - only dumps, for the worker this process starts; never loads
import subprocess  # nosec B404 - starts our own worker module, no shell, no caller input
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import structlog

from app.drafts.channel import ANSWER, EXHAUSTED, PROBLEM, READY, WorkerConfig, receive, send
from app.problems import Problem
from app.settings import Settings

log = structlog.get_logger("app.drafts")

ANSWER_LIMIT = 8 * 1024 * 1024  # bytes: a page shows far less, and the relay holds each answer whole
START_TIMEOUT = 60.0  # seconds for a new interpreter to import the compiler on a starved machine
MAX_WAITING = 8  # drafts running or queued; more are answered `overloaded` at once
APP_ROOT = Path(__file__).resolve().parents[2]  # where `app` is imported from, for the worker too


class DraftRunner:
    """Previews drafts in a worker process, one at a time, within time, memory and size limits."""

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.relay_draft_timeout
        self._config = WorkerConfig(
            settings=settings,
            memory_bytes=settings.relay_draft_memory_bytes,
            cpu_seconds=math.ceil(self._timeout) + 1,
            answer_limit=ANSWER_LIMIT,
        )
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="draft-worker")
        self._worker: _Worker | None = None  # used only from that thread
        self._waiting = 0

    async def preview(self, body: bytes) -> bytes:
        """The answer's JSON for a ``POST /v1/preview/draft`` body; raises ``Problem``."""
        if self._waiting >= MAX_WAITING:
            raise Problem("overloaded", "Too many draft previews are waiting", retry_after=1.0)
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._exchange, body)
        finally:
            self._waiting -= 1

    async def aclose(self) -> None:
        """Stop the worker (a draft running is ended) and the thread."""
        worker = self._worker
        if worker is not None:
            worker.process.kill()  # the exchange in flight, if any, sees the pipe close
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)
        self._stop_worker()  # the thread has ended: nothing else uses the worker now

    def _exchange(self, body: bytes) -> bytes:
        if self._worker is None:
            self._worker = _Worker.start(self._config)
        worker = self._worker
        try:
            reply = worker.ask(body, time.monotonic() + self._timeout)
        except TimeoutError:
            self._stop_worker()
            raise _too_costly(f"took longer than RELAY_DRAFT_TIMEOUT ({self._timeout:g} s)") from None
        except (EOFError, ValueError):
            self._stop_worker()
            raise _too_costly("was stopped at its CPU or memory limit") from None
        kind, data = reply[:1], reply[1:]
        if kind == ANSWER:
            return data
        if kind == PROBLEM:
            raise Problem.from_dict(orjson.loads(data))
        self._stop_worker()
        if kind == EXHAUSTED:
            raise _too_costly("needed more memory than RELAY_DRAFT_MEMORY_BYTES")
        raise Problem("internal_error", "The draft worker answered something unexpected")

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None


class _Worker:
    """One worker process and the two pipes to it (non-blocking on this side)."""

    def __init__(self, process: subprocess.Popen[bytes], to_worker: int, from_worker: int) -> None:
        self.process = process
        self._to_worker = to_worker
        self._from_worker = from_worker

    @classmethod
    def start(cls, config: WorkerConfig) -> _Worker:
        """Start a worker and wait until it is ready; ``internal_error`` when it does not start."""
        worker_reads, to_worker = os.pipe()
        from_worker, worker_writes = os.pipe()
        try:
            process = subprocess.Popen(  # nosec B603 - a fixed argv: this interpreter, our module
                [sys.executable, "-m", "app.drafts.worker", str(worker_reads), str(worker_writes)],
                pass_fds=(worker_reads, worker_writes),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # the channel is the pipes; stderr is the relay's
                cwd=APP_ROOT,
            )
        except OSError as exc:
            for fd in (worker_reads, to_worker, from_worker, worker_writes):
                os.close(fd)
            raise Problem("internal_error", f"The draft worker cannot start: {exc}") from None
        os.close(worker_reads)
        os.close(worker_writes)
        os.set_blocking(to_worker, False)
        os.set_blocking(from_worker, False)
        worker = cls(process, to_worker, from_worker)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            send(to_worker, pickle.dumps(config), deadline)
            ready = receive(from_worker, deadline, len(READY))
        except (TimeoutError, EOFError, ValueError):
            ready = b""
        if ready != READY:
            worker.stop()
            raise Problem("internal_error", "The draft worker did not start")
        log.info("draft_worker_started", pid=process.pid)
        return worker

    def ask(self, body: bytes, deadline: float) -> bytes:
        """Send a request body and read the reply, both by ``deadline``."""
        send(self._to_worker, body, deadline)
        return receive(self._from_worker, deadline, ANSWER_LIMIT + 1)

    def stop(self) -> None:
        """Kill the process, reap it, and close the pipes."""
        self.process.kill()
        self.process.wait()
        os.close(self._to_worker)
        os.close(self._from_worker)


def _too_costly(what: str) -> Problem:
    return Problem("draft_too_costly", f"The draft {what}")
