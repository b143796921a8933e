"""The draft worker: ``python -m app.drafts.worker READ_FD WRITE_FD``, started by ``DraftRunner``.

It reads its ``WorkerConfig``, limits its own address space, then previews one request body
at a time. A draft that runs out of memory is answered ``EXHAUSTED`` and the worker exits; one
that runs past its CPU time is ended by the kernel (``RLIMIT_CPU``), also when the relay that
started it is gone. Either way the relay starts another.
"""

from __future__ import annotations

import os
import pickle  # nosec B403 - loads only its config, written by the relay that started it
import resource
import signal
import sys
import traceback
from pathlib import Path

import orjson

from app.drafts.channel import (
    ANSWER,
    EXHAUSTED,
    FRAME,
    PROBLEM,
    READY,
    WorkerConfig,
    read_message,
    write_message,
)
from app.drafts.preview import preview_draft
from app.payloads import PayloadLimits
from app.problems import Problem
from app.relay import build_destinations

NICENESS = 10  # where the worker shares a core with its relay, ingest and delivery come first
EXHAUSTED_MESSAGE = FRAME.pack(len(EXHAUSTED)) + EXHAUSTED  # built before memory can run out


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the relay, which stops us
    read_fd, write_fd = int(argv[0]), int(argv[1])
    message = read_message(read_fd)
    if message is None:
        return 0
    config: WorkerConfig = pickle.loads(message)  # nosec B301 - written by the relay that started us
    settings = config.settings
    destinations = build_destinations(settings)
    limits = PayloadLimits(
        max_events=settings.relay_max_batch_events,
        max_depth=settings.relay_max_json_depth,
        max_string_length=settings.relay_max_string_length,
    )
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a draft ended by a limit leaves no core file
    os.nice(NICENESS)
    _limit_memory(config.memory_bytes)
    write_message(write_fd, READY)
    while (body := read_message(read_fd)) is not None:
        _limit_cpu(config.cpu_seconds)
        try:
            reply = ANSWER + preview_draft(body, destinations, limits, config.answer_limit)
        except Problem as problem:
            reply = PROBLEM + orjson.dumps(problem.to_dict())
        except RecursionError:
            detail = "The draft nests deeper than a preview can follow"
            reply = PROBLEM + orjson.dumps(Problem("draft_too_costly", detail).to_dict())
        except MemoryError:
            os.write(write_fd, EXHAUSTED_MESSAGE)
            return 1
        except Exception:  # a bug, not the draft: the relay answers internal_error
            traceback.print_exc()
            reply = PROBLEM + orjson.dumps(Problem("internal_error").to_dict())
        write_message(write_fd, reply)
    return 0


def _limit_memory(extra: int) -> None:
    """Address space: what the worker holds now (its code and libraries) plus ``extra``.

    Measured rather than fixed, because the size of an interpreter with its libraries differs
    between builds and machines. Only where ``/proc`` says it (Linux, the relay's platform).
    """
    status = Path("/proc/self/status")
    if not status.exists():
        return
    for line in status.read_text().splitlines():
        if line.startswith("VmSize:"):
            now = int(line.split()[1]) * 1024
            resource.setrlimit(resource.RLIMIT_AS, (now + extra, now + extra))
            return


def _limit_cpu(seconds: int) -> None:
    """End the worker (SIGXCPU) if this draft uses more than ``seconds`` of CPU."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + seconds if hard == resource.RLIM_INFINITY else min(used + seconds, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
