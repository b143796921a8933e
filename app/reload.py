"""Hot reload of the mapping folder, on SIGHUP and when its files change.

A Kubernetes ConfigMap update writes the new files into a fresh hidden folder and swaps the
``..data`` symlink the visible files point through, in one rename. The folder is watched by
polling a fingerprint (each mapping file's resolved path, inode, mtime and size) every
``RELAY_RELOAD_INTERVAL`` seconds rather than with inotify (``watchfiles``): the swap changes
the resolved paths even when mtimes are kept, polling works the same on every volume type
(inotify misses changes on network and some overlay mounts, and events on the symlink's
target folder), and a few ``stat`` calls every few seconds cost nothing.

A new set is compiled and its examples run in a worker thread; only a set that passes is
swapped in, as one attribute assignment on the event loop, so each request plans with one
set or the other, never a mix. A broken set is refused, logged with file and line, counted,
and the old set keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from app.mapping.loader import MappingLoadError, MappingSet
from app.metrics import RelayMetrics
from app.settings import ConfigError

log = structlog.get_logger("app.reload")

Fingerprint = tuple[tuple[Any, ...], ...]


def fingerprint(directory: Path) -> Fingerprint:
    """What changes when any mapping file of the folder changes, is added, removed or re-linked."""
    try:
        files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])  # as the loader sees them
    except OSError:
        return (("missing",),)
    entries: list[tuple[Any, ...]] = []
    for path in files:
        try:
            stat = path.stat()
            entries.append((path.name, os.path.realpath(path), stat.st_ino, stat.st_mtime_ns, stat.st_size))
        except OSError:  # a dangling symlink, or a file removed meanwhile
            entries.append((path.name, None))
    return tuple(entries)


class MappingReloader:
    """Reloads the mappings on SIGHUP and on a change of the folder's fingerprint."""

    def __init__(
        self,
        directory: Path,
        load: Callable[[], MappingSet],
        swap: Callable[[MappingSet], None],
        metrics: RelayMetrics,
        *,
        interval: float,
        served: Fingerprint,
    ) -> None:
        """``load`` compiles and checks a set (raising ``MappingLoadError`` or ``ConfigError``);
        ``swap`` puts it in service; ``served`` is the fingerprint taken before the first load."""
        self.directory = directory
        self.interval = interval
        self._load = load
        self._swap = swap
        self._metrics = metrics
        self._attempted = served  # the last fingerprint loaded, or refused (not retried until it changes)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._signal = False

    def start(self) -> None:
        """Handle SIGHUP (where the loop can: the main thread) and poll the folder."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._signal = True
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            log.info("sighup_reload_unavailable", detail="not the main thread; the folder is still watched")
        if self.interval > 0:
            self._spawn(self._watch())

    async def stop(self) -> None:
        if self._signal:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def reload(self, reason: str) -> bool:
        """Load, check and swap in the folder's set; False (old set kept) when it is refused."""
        async with self._lock:
            seen = await asyncio.to_thread(fingerprint, self.directory)
            self._attempted = seen
            started = time.perf_counter()
            try:
                mappings = await asyncio.to_thread(self._load)
            except MappingLoadError as exc:
                issues = [{"file": str(i.file), "line": i.line, "reason": i.reason} for i in exc.issues]
                return self._refused(reason, issues)
            except ConfigError as exc:
                return self._refused(reason, [{"file": str(self.directory), "line": 0, "reason": str(exc)}])
            except Exception as exc:  # a bug must not stop reloads or the old set from serving
                log.exception("mappings_reload_crashed", reason=reason)
                return self._refused(reason, [{"file": str(self.directory), "line": 0, "reason": repr(exc)}])
            self._swap(mappings)
            self._metrics.mapping_reloads.labels("succeeded").inc()
            self._metrics.mapping_reload_ok.set(1)
            self._metrics.mapping_reload_time.set(time.time())
            self._metrics.mappings_loaded.set(len(mappings))
            log.info(
                "mappings_reloaded",
                reason=reason,
                mappings=[m.name for m in mappings.mappings],
                took_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            return True

    def _refused(self, reason: str, issues: list[dict[str, Any]]) -> bool:
        self._metrics.mapping_reloads.labels("failed").inc()
        self._metrics.mapping_reload_ok.set(0)
        log.error(
            "mappings_reload_failed",
            reason=reason,
            issues=issues,
            detail="the new mapping set was refused; the previous set keeps serving",
        )
        return False

    def _on_sighup(self) -> None:
        self._spawn(self.reload("sighup"))

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if await asyncio.to_thread(fingerprint, self.directory) != self._attempted:
                    await self.reload("folder_changed")
            except Exception:
                log.exception("mappings_watch_failed")
