"""How long a running relay's event loop was held: a thread asking ``/healthz`` every 50 ms
and timing each answer, and the process's memory from ``/proc``.

Every request shares the relay's one event loop, so while one request's work holds it,
``/healthz`` waits: the worst wait is how long the loop was blocked (plus a little noise)."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path
from types import TracebackType


class LoopProbe:
    """``with LoopProbe(port, pid) as probe: ...``, then ``probe.worst`` (seconds),
    ``probe.answered`` and ``probe.growth_mib`` (the most resident memory seen, over what it
    was at the start; sampled apart from the requests, which wait while the loop is held)."""

    def __init__(self, port: int, pid: int, interval: float = 0.05) -> None:
        self.port = port
        self.pid = pid
        self.interval = interval
        self.waits: list[float] = []
        self.failures = 0
        self.rss_before = self.rss_peak = memory_kib(pid)["VmRSS"]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name="loop-probe", daemon=True),
            threading.Thread(target=self._sample_memory, name="memory-probe", daemon=True),
        ]

    def __enter__(self) -> LoopProbe:
        for thread in self._threads:
            thread.start()
        time.sleep(2 * self.interval)  # a first answer, before the test's request goes out
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        time.sleep(2 * self.interval)  # the answer to a probe sent just before the end
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    @property
    def growth_mib(self) -> float:
        return (self.rss_peak - self.rss_before) / 1024

    @property
    def worst(self) -> float:
        return max(self.waits, default=0.0)

    @property
    def answered(self) -> int:
        return len(self.waits)

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.waits.append(time.perf_counter() - started)
                else:
                    self.failures += 1
            except (OSError, http.client.HTTPException):
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def _sample_memory(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.rss_peak = max(self.rss_peak, memory_kib(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return  # the process is gone


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (the most it has been resident) in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values
