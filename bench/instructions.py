"""Instructions per ingest request, relay vs bare route, counted by callgrind: a noise-free ratio.

``bench/ingest.py`` measures what issue 3 asks (requests per second over HTTP), but on a shared,
starved machine its rounds swing by 2x and a 10 % change cannot be seen. Instructions executed
do not depend on the neighbours. This script drives each app **in-process** (the ASGI app called
directly, no HTTP server, no sockets): ``N`` posts of the purchase event, 32 at a time, under
``valgrind --tool=callgrind``, once with a short run and once with a long one; the difference
divided by the extra requests is the cost of one request without start-up and shutdown.

* ``relay``: ``create_app`` as ``bench/ingest.py --variant deliver`` serves it (the order mapping,
  202 mode, a SQLite file, ``RELAY_LOG_LEVEL=warning``), each event with its own id. Zendesk's
  rate limit is 1/min and its URL a closed port, so the dispatcher sends (at most) one attempt
  in either run: what is counted is ingest.
* ``bare``: ``bench/bare_app.py``'s FastAPI route (parse the body, answer 202).

What it does not count: uvicorn's HTTP parsing and socket writes (the same for both sides in
real serving, so the in-process ratio is harsher than the HTTP one) and time in the kernel (the
SQLite file's writes and fsyncs, thread wake-ups). Use it to see whether a change to the relay's
own code helps; quote ``bench/ingest.py`` for the criterion.

    .venv/bin/python bench/instructions.py                 # both sides, about 10 minutes
    .venv/bin/python bench/instructions.py --side relay    # one side

Needs ``valgrind`` (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess  # nosec B404 - runs valgrind on this script, arguments are ours
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PURCHASE = ROOT / "mappings" / "examples" / "purchase.json"
ORDER_MAPPING = ROOT / "mappings" / "zendesk-order-completed.yaml"
TOKEN = "bench-token"  # nosec B105 - a benchmark's own token
CONCURRENCY = 32


def relay_app(folder: Path) -> Any:
    """The relay as ``bench/ingest.py --variant deliver`` serves it (see the module docstring)."""
    sys.path.insert(0, str(ROOT))
    from app.api.app import create_app
    from app.logs import configure_logging
    from app.settings import Settings

    maps = folder / "maps"
    maps.mkdir()
    shutil.copy2(ORDER_MAPPING, maps / ORDER_MAPPING.name)
    shutil.copytree(ROOT / "mappings" / "examples", maps / "examples")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        relay_mappings_dir=str(maps),
        relay_ingest_tokens=[TOKEN],
        relay_store=f"sqlite:///{folder / 'relay.db'}",
        relay_log_level="warning",
        relay_max_pending=10**9,
        zendesk_base_url="http://127.0.0.1:9",
        zendesk_oauth_token="bench-oauth-token",  # nosec B106 - never sent anywhere that answers
        zendesk_rate_limit_per_minute=1,
    )
    configure_logging(settings.relay_log_level, settings.relay_log_format, settings.secret_values())
    return create_app(settings)


def bare_app() -> Any:
    sys.path.insert(0, str(ROOT / "bench"))
    from bare_app import app

    return app


async def drive(app: Any, count: int) -> dict[int, int]:
    """Post ``count`` purchase events to ``app`` (each with its own id), 32 at a time."""
    template = PURCHASE.read_bytes()
    old_id = re.search(rb'"_id"\s*:\s*"([^"]+)"', template)
    assert old_id is not None
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {TOKEN}".encode())]
    headers.append((b"content-type", b"application/json"))
    statuses: dict[int, int] = {}

    async def post(index: int) -> None:
        body = template.replace(old_id.group(1), str(uuid.UUID(int=index + 1)).encode())
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/events",
            "raw_path": b"/v1/events",
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # no disconnect while the app answers
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    async def worker(first: int) -> None:
        for index in range(first, count, CONCURRENCY):
            await post(index)

    async with app.router.lifespan_context(app):
        await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))
    return statuses


def run_driver(side: str, count: int) -> None:
    import uvloop

    with tempfile.TemporaryDirectory(prefix="aep-relay-instr-") as folder:
        app = relay_app(Path(folder)) if side == "relay" else bare_app()
        statuses = uvloop.run(drive(app, count))
    if set(statuses) != {202} or statuses[202] != count:
        sys.exit(f"{side}: expected {count} answers 202, got {statuses}")


def instructions(side: str, count: int, out: Path) -> int:
    """Total instructions (all threads) of one driver run under callgrind."""
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        str(Path(__file__).resolve()),
        "--drive",
        side,
        "--count",
        str(count),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # nosec B603
    if done.returncode != 0:
        sys.exit(f"{side} x {count} failed:\n{done.stderr[-3000:]}")
    total = 0
    for part in out.parent.glob(out.name + "*"):  # one file per thread with --separate-threads
        found = re.search(r"^(?:summary|totals): (\d+)", part.read_text(), re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=["relay", "bare", "both"], default="both")
    parser.add_argument("--short", type=int, default=200, help="requests in the short run")
    parser.add_argument("--long", type=int, default=1200, help="requests in the long run")
    parser.add_argument("--drive", choices=["relay", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        run_driver(args.drive, args.count)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    sides = ["relay", "bare"] if args.side == "both" else [args.side]
    per_request: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="aep-relay-callgrind-") as folder:
        for side in sides:
            short = instructions(side, args.short, Path(folder) / f"{side}.short.out")
            long = instructions(side, args.long, Path(folder) / f"{side}.long.out")
            per_request[side] = (long - short) / (args.long - args.short)
            print(f"{side}: {per_request[side]:,.0f} instructions per request "
                  f"({args.short} requests: {short:,}; {args.long}: {long:,})", flush=True)  # fmt: skip
    if len(per_request) == 2:
        ratio = per_request["bare"] / per_request["relay"]
        print(f"bare/relay instructions per request: {ratio:.2f}x "
              "(in-process; the HTTP ratio of bench/ingest.py is milder, see the docstring)")  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the same dict layouts in every run
    main()
