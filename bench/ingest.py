"""Ingest benchmark: ``POST /v1/events`` on the relay against a bare FastAPI route, a raw ASGI
callable and the relay a user would write by hand.

Not a test. Starts, as real processes on free loopback ports, for each variant:

* the relay (``python -m app.cli serve``) with the variant's mappings (below), the SQLite store
  in a temporary folder and ``RELAY_LOG_LEVEL=warning``;
* ``bench/bare_app.py``: one FastAPI route that parses the same JSON with orjson and answers 202;
* ``bench/raw_asgi_app.py``: a raw ASGI callable (no framework) that does the same under the
  same ``uvicorn.run`` arguments: the floor of what uvicorn can do per request;
* ``bench/handwritten_app.py`` (``ignored`` and ``deliver`` only): what a user would write instead
  (issue 27): FastAPI, the order mapping evaluated with the reference ``jmespath``, ``sqlite3``
  with ``synchronous=FULL`` and one commit per request, its store in the variant's folder;
  ``ignored`` answers 200 ``ignored``, ``deliver`` 202 ``queued``.

Variants (the workload and how the relay is configured). Issue 3 specifies the measurement as
"throughput and p50/p99 latency of POST /v1/events with the order mapping, in default (202)
mode with the SQLite store, against a bare FastAPI route that parses the same JSON and answers
202": that is ``deliver``, the variant the matched-event targets apply to. The others change
one thing at a time, for comparison:

* ``ignored``: the anonymous page view ``mappings/examples/pageview-anonymous.json`` (bare XDM
  shape), which matches none of the shipped mappings (``mappings/``): the relay answers
  ``200`` with status ``ignored`` and stores nothing (no Zendesk credentials: nothing is ever
  queued). Targets: relay/bare >= 1.5x (>= 1.3x, issue 27) and p99.
* ``deliver`` (issue 3's measurement): the purchase ``mappings/examples/purchase.json`` with
  the order mapping only (a mappings folder in the variant's temporary folder holding a copy
  of ``mappings/zendesk-order-completed.yaml`` and of ``mappings/examples/``, which the
  mapping's ``examples:`` refer to and the relay runs at start-up) and ``ZENDESK_BASE_URL``
  pointing at ``bench/fake_zendesk.py``: matched, rendered, validated, durably stored in
  SQLite and answered ``202`` queued, one delivery per answer. The relay runs with its
  defaults (the default 202 mode): the dispatcher sends at Zendesk's pace
  (``ZENDESK_RATE_LIMIT_PER_MINUTE`` unset: 250/min, the Events API's quota on the smaller
  plans; 1000/min on the largest) in the background, so the backlog grows during the run
  and is not drained between rounds; ``RELAY_MAX_PENDING`` is raised so that the backlog
  bound is not reached (see ``MAX_PENDING``). Targets: relay/bare >= 0.8x (issue 3),
  >= 1.2x (issue 5) and >= 0.7x (issue 27); relay/handwritten >= 4x (issue 27); p99.
* ``deliver-unthrottled``: ``deliver`` with ``ZENDESK_RATE_LIMIT_PER_MINUTE=6000000`` (a pace
  no Zendesk plan allows): the dispatcher leases, sends and records deliveries as fast as it
  can, competing with ingest for the relay's core, and the bench waits for the backlog to
  drain after each relay round. No target: the cost of sending while ingesting.
* ``fanout``: the purchase with all the shipped mappings (``mappings/``), unthrottled and
  drained like ``deliver-unthrottled`` (what ``deliver`` measured before it followed issue 3's
  wording). A purchase fans out to Zendesk (``zendesk-order-completed``: ``queued``) and to
  Yotpo (``yotpo-order-completed``, which has no credentials here: ``dry_run``): two results
  and two stored deliveries per answer. No target.
* ``dry-run``: the purchase with the order mapping only and no Zendesk credentials: the same
  work as ``deliver``, the delivery stored with status ``dry_run`` and answered ``200``. No
  target; kept for comparison with earlier runs.
* ``redis-deliver`` and ``redis-dry-run``: ``deliver`` and ``dry-run`` with the relay on the
  Redis store (``RELAY_STORE=redis://...``) instead of SQLite: the bench starts its own
  ``redis-server`` (``--appendonly yes --appendfsync always --save ''``, as the tests and the
  operations guide run it) on a free loopback port with its data in the variant's temporary
  folder, pins it to ``--client-cores`` (the core *not* used by the relay, beside wrk and the
  fake Zendesk) and stops it after the variant. Its store is read with redis-py (``ZCARD`` of
  ``{aep-relay}:due:<dest>``, ``:lease:<dest>``, ``:done`` and ``:dead``) where the SQLite
  variants read the database file. No target: compare with ``deliver`` / ``dry-run``. Skipped,
  with a message, when ``redis-server`` is not installed and no ``--variant`` asks for them.

For ``ignored`` and ``deliver`` the relay's p99 latency must also not be above the bare
route's, nor above 1.2x it (issue 27) (median of the rounds' p99, at the ``--connections``
used: 32 by default).

Then it runs the same load generator (wrk, ``bench/post_events.lua``: the example's body with
a unique random UUID as event id per request, as Adobe's Web SDK gives its events,
``text/plain``) with the same connection count against each server, alternating
relay/bare/raw(/handwritten) for several rounds, and prints requests/s, p50/p99 latency and
status counts per round, the ratios relay/bare, relay/handwritten, relay/raw and bare/raw
(median of the per-round ratios) and a table of the targets with PASS/BELOW. After each relay
round of the unthrottled variants (``deliver-unthrottled``, ``fanout``) it waits for the
relay's backlog to drain; for ``deliver`` and ``redis-deliver`` it only reads the backlog left
(it drains at 250/min). Any non-2xx answer, any answer other than the expected status (relay: 200 ignored /
202 queued / 200 dry_run, checked once by body too; bare and raw: 202; hand-written: as above,
and 200 duplicate for an event sent twice) or socket error fails the run; for the storing
variants the relay's store must hold at least one delivery per result for every answer and the
hand-written app's a row per answer; for ``ignored`` both must stay empty.
Servers are pinned to ``--server-cores`` and wrk (and the fake Zendesk and redis-server) to
``--client-cores`` with ``taskset``.

    .venv/bin/python bench/ingest.py                      # all variants; 3 x 10 s
    .venv/bin/python bench/ingest.py --variant deliver --variant redis-deliver
    .venv/bin/python bench/ingest.py --variant ignored --rounds 5
    .venv/bin/python bench/ingest.py --profile /tmp/prof  # plus a py-spy profile of the relay

Method and latest results: ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
MAPPINGS = ROOT / "mappings"  # every shipped mapping (`ignored`, `fanout`)
ORDER_MAPPING = MAPPINGS / "zendesk-order-completed.yaml"  # issue 3's "order mapping"
EXAMPLES = MAPPINGS / "examples"
EXAMPLE = EXAMPLES / "purchase.json"
EXAMPLE_ID = "a1b2c3d4-0000-4000-8000-000000000001"
ANONYMOUS = EXAMPLES / "pageview-anonymous.json"  # matches no mapping: answered `ignored`
ANONYMOUS_ID = "d4e5f6a7-0000-4000-8000-000000000004"
TOKEN = "bench-token"
HEADERS = {"Content-Type": "text/plain", "Authorization": f"Bearer {TOKEN}"}  # as wrk sends them
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_PREFIX = "aep-relay"  # RELAY_REDIS_PREFIX; the store's keys are `{aep-relay}:...`
# ZENDESK_RATE_LIMIT_PER_MINUTE of the unthrottled variants: the dispatcher sends as fast as it
# can (no Zendesk plan allows this pace; the Events API allows 250-1000 requests/min).
UNTHROTTLED_PER_MINUTE = "6000000"
# RELAY_MAX_PENDING of the throttled variants (`deliver`, `redis-deliver`). At Zendesk's pace
# (250/min by default) the backlog cannot drain during the run, and the defaults give the relay
# 33 s of load per variant (3 s warm-up + 3 x 10 s): at the targets' rates (thousands of answers
# a second) that queues well over the default bound of 100,000 pending deliveries, past which
# the relay answers 503 and the bench would measure the refusal instead of ingest. The bound is
# checked on every enqueue whatever its value (a compare with a counter the SQLite store keeps
# in memory; in the Redis store's enqueue script, a ZCARD per destination), so raising it costs
# nothing per request.
MAX_PENDING = "10000000"


@dataclass(frozen=True)
class Target:
    """relay/``over`` throughput at least ``ratio``; with ``p99``, relay p99 at most ``ratio`` x
    ``over``'s (medians of the rounds)."""

    ratio: float
    source: str = ""  # e.g. "issue 3"; shown beside the target
    over: str = "bare"  # the side the relay is compared with
    p99: bool = False


@dataclass(frozen=True)
class Variant:
    """A workload and how the relay is configured for it."""

    name: str
    label: str
    example: Path
    example_id: str
    zendesk: bool  # relay gets (fake) Zendesk credentials: matched events are queued (202)
    stores: bool  # each relay answer stores one delivery per result (see outcomes)
    relay_status: int  # the HTTP status of every relay answer
    # The statuses of the results in the relay's answer (one per matching mapping, any order).
    # With the order mapping only: Zendesk (queued, or dry_run without credentials). With all
    # the shipped mappings a purchase fans out to Yotpo too (dry_run: the bench gives it no
    # credentials).
    outcomes: tuple[str, ...]
    targets: tuple[Target, ...]  # (): no target
    # bench/handwritten_app.py's status for every answer (202 queued, each a row in its store;
    # 200 ignored, none); None: the variant does not run it
    handwritten_status: int | None = None
    store: str = "sqlite"  # the relay's store: "sqlite" (a file) or "redis" (a redis-server of its own)
    all_mappings: bool = False  # serve every shipped mapping; else the order mapping only
    # Zendesk variants: ZENDESK_RATE_LIMIT_PER_MINUTE=UNTHROTTLED_PER_MINUTE and wait for the
    # backlog to drain after each relay round; else the relay's default pace (250/min), not
    # drained, with RELAY_MAX_PENDING=MAX_PENDING.
    unthrottled: bool = False

    @property
    def deliveries_per_answer(self) -> int:
        """Deliveries the relay stores for each answer (one per result) in the storing variants."""
        return len(self.outcomes) if self.stores else 0

    @property
    def drains(self) -> bool:
        """The bench waits for the relay's backlog to drain after each relay round."""
        return self.zendesk and self.unthrottled


ISSUE_3, ISSUE_5 = Target(0.8, "issue 3"), Target(1.2, "issue 5")
P99 = (Target(1.0, p99=True), Target(1.2, "issue 27", p99=True))
VARIANTS = {
    v.name: v
    for v in (
        Variant("ignored", "ignored events (anonymous page view, all mappings, 200 ignored)", ANONYMOUS,
                ANONYMOUS_ID, zendesk=False, stores=False, relay_status=200, outcomes=("ignored",),
                targets=(Target(1.5), Target(1.3, "issue 27"), *P99), all_mappings=True,
                handwritten_status=200),
        Variant("deliver", "matched events (purchase, order mapping, 202 queued, SQLite, Zendesk pace)",
                EXAMPLE, EXAMPLE_ID, zendesk=True, stores=True, relay_status=202, outcomes=("queued",),
                targets=(ISSUE_3, ISSUE_5, Target(0.7, "issue 27"), Target(4.0, "issue 27", "handwritten"),
                         *P99), handwritten_status=202),
        Variant("deliver-unthrottled", "matched events (purchase, order mapping, 202 queued, SQLite, "
                "unthrottled dispatcher, drained)", EXAMPLE, EXAMPLE_ID, zendesk=True, stores=True,
                relay_status=202, outcomes=("queued",), targets=(), unthrottled=True),
        Variant("fanout", "matched events (purchase, all mappings: Zendesk + Yotpo, 202 queued + dry_run, "
                "SQLite, unthrottled dispatcher, drained)", EXAMPLE, EXAMPLE_ID, zendesk=True, stores=True,
                relay_status=202, outcomes=("dry_run", "queued"), targets=(),
                all_mappings=True, unthrottled=True),
        Variant("dry-run", "matched events, dry run (purchase, order mapping, 200 dry_run, SQLite)", EXAMPLE,
                EXAMPLE_ID, zendesk=False, stores=True, relay_status=200, outcomes=("dry_run",),
                targets=()),
        Variant("redis-deliver", "matched events (purchase, order mapping, 202 queued, Redis store, "
                "Zendesk pace)", EXAMPLE, EXAMPLE_ID, zendesk=True, stores=True, relay_status=202,
                outcomes=("queued",), targets=(), store="redis"),
        Variant("redis-dry-run", "matched events, dry run (purchase, order mapping, 200 dry_run, "
                "Redis store)", EXAMPLE, EXAMPLE_ID, zendesk=False, stores=True, relay_status=200,
                outcomes=("dry_run",), targets=(), store="redis"),
    )
}  # fmt: skip
BASELINE_STATUS = 202


class BenchError(RuntimeError):
    """The benchmark could not run or a run was invalid (errors, non-2xx answers)."""


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cmd: Sequence[str], cores: str | None) -> list[str]:
    """``cmd`` under ``taskset -c cores`` (exec'd, so the pid is the command's own)."""
    return ["taskset", "-c", cores, *cmd] if cores else list(cmd)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "ZENDESK_"))}
    env.update(extra)
    return env


class Server:
    """A server process on a loopback port, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.name, self.cmd, self.env, self.port, self.log = name, cmd, env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, probe: urllib.request.Request, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(probe, timeout=1.0) as answer:
                    if 200 <= answer.status < 300:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not become ready:\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def redis_server(work: Path, cores: str | None) -> Server:
    """A ``redis-server`` of the variant's own: free loopback port, data in ``work/redis``, AOF
    fsync'd before every answer (the durability the SQLite store gives), no RDB snapshots.
    ``Server.stop`` sends SIGTERM: Redis flushes the AOF and exits."""
    port = free_port()
    data = work / "redis"
    data.mkdir()
    cmd = [
        REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
    ]  # fmt: skip
    server = Server("redis-server", pinned(cmd, cores), clean_env(), port, work / "redis.log")
    server.url = f"redis://127.0.0.1:{port}/0"
    return server


def wait_redis(server: Server, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            raise BenchError(f"redis-server exited with {server.process.returncode}:\n{server.tail()}")
        client = redis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            if client.ping():
                return
        except redis.RedisError:
            pass
        finally:
            client.close()
        time.sleep(0.05)
    raise BenchError(f"redis-server did not answer PING:\n{server.tail()}")


# -- one wrk run -----------------------------------------------------------------------------


@dataclass
class Run:
    """One load-generator run against one server."""

    variant: str
    side: str
    round: int
    seconds: float
    requests: int
    rps: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    server_cpu: float  # cores busy (1.0 = one core) over the run
    client_cpu: float
    drain_seconds: float | None = None
    drained: int | None = None
    backlog: int | None = None  # deliveries pending or in flight after the run (not drained)
    store_cpu: float | None = None  # redis-server's cores busy over the run (Redis variants)

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU time per answered request (robust to CPU stolen by neighbours)."""
        return self.server_cpu * self.seconds * 1000 / self.requests if self.requests else float("nan")

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= int(status) < 300)

    @property
    def socket_error_count(self) -> int:
        return sum(self.socket_errors.values())


@dataclass
class Config:
    rounds: int
    seconds: float
    warmup: float
    connections: int
    threads: int
    server_cores: str | None
    client_cores: str | None
    timeout: float
    relay_log_level: str = "warning"
    breakdown: bool = False


def make_template(example: Path, event_id: str, out: Path) -> Path:
    """The example payload with its event id replaced by wrk's ``@ID@`` placeholder.

    Works on the text (the body stays byte for byte the example's), then checks that the
    placeholder sits where the relay reads the event id: ``xdm._id`` (Adobe's envelope shape)
    or a top-level ``_id`` (bare XDM shape, e.g. ``pageview-anonymous.json``)."""
    text = example.read_text(encoding="utf-8")
    if text.count(event_id) != 1:
        raise BenchError(f"{example} no longer holds the event id {event_id!r} exactly once")
    template = text.replace(event_id, "@ID@")
    probe = json.loads(template.replace("@ID@", "bench-probe-id"))
    found = [
        where
        for where, doc in (("xdm._id", probe.get("xdm")), ("_id", probe))
        if isinstance(doc, dict) and doc.get("_id") == "bench-probe-id"
    ]
    if not found:
        raise BenchError(f"{example}: the event id is neither at xdm._id nor at a top-level _id")
    out.write_text(template, encoding="utf-8")
    return out


def run_wrk(
    cfg: Config,
    server: Server,
    template: Path,
    salt: str,
    seconds: float,
    variant: str,
    side: str,
    rnd: int,
    path: str = "/v1/events",
    store_server: Server | None = None,
) -> Run:
    cmd = pinned(
        [
            "wrk", f"-t{cfg.threads}", f"-c{cfg.connections}", f"-d{seconds:g}s",
            f"--timeout={cfg.timeout:g}s", "--latency", "-s", str(BENCH / "post_events.lua"),
            f"{server.url}{path}", "--", str(template), salt, TOKEN,
        ],
        cfg.client_cores,
    )  # fmt: skip
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server = server.cpu_seconds()
    before_store = store_server.cpu_seconds() if store_server is not None else 0.0
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    server_cpu = server.cpu_seconds() - before_server
    store_cpu = store_server.cpu_seconds() - before_store if store_server is not None else None
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    duration = data["duration_us"] / 1e6
    lat = data["latency_us"]
    socket_errors = {k: v for k, v in data["errors"].items() if k != "status"}
    return Run(
        variant=variant,
        side=side,
        round=rnd,
        seconds=duration,
        requests=data["requests"],
        rps=data["requests"] / duration,
        mean_ms=lat["mean"] / 1000,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        statuses={str(k): int(v) for k, v in data["statuses"].items()},
        socket_errors=socket_errors,
        server_cpu=server_cpu / wall,
        client_cpu=client_cpu / wall,
        store_cpu=store_cpu / wall if store_cpu is not None else None,
    )


# -- the relay's store -----------------------------------------------------------------------


STORED = ("dry_run", "delivered", "pending", "in_flight", "done")  # count as stored
# (`done` is the Redis store's set of delivered and dry-run deliveries; SQLite tells them apart)


def store_counts(db: Path) -> dict[str, int]:
    """Deliveries in the relay's SQLite store by status (read-only, beside the running relay)."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()
    finally:
        conn.close()
    return {str(status): int(n) for status, n in rows}


def table_rows(db: Path, table: str) -> int:
    """Rows of a table in a SQLite file (read-only); 0 when the file does not exist."""
    if not db.exists():
        return 0
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def redis_counts(url: str, prefix: str = REDIS_PREFIX) -> dict[str, int]:
    """Deliveries in the relay's Redis store, read like ``RedisStore`` keeps them (see
    ``app/delivery/redis_scripts.py``): ``pending`` = ``ZCARD due:<dest>``, ``in_flight`` =
    ``ZCARD lease:<dest>`` (their sum is ``ZCARD age:<dest>``), ``done`` (delivered or dry run:
    one set) and ``dead``. One ``MULTI``, so a delivery moving between sets is counted once."""
    key = f"{{{prefix}}}:"
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        destinations = sorted(d.decode() if isinstance(d, bytes) else str(d)
                              for d in client.smembers(f"{key}dests"))  # fmt: skip
        pipe = client.pipeline(transaction=True)
        for destination in destinations:
            pipe.zcard(f"{key}due:{destination}")
            pipe.zcard(f"{key}lease:{destination}")
        pipe.zcard(f"{key}done")
        pipe.zcard(f"{key}dead")
        replies = [int(n) for n in pipe.execute()]
    finally:
        client.close()
    counts = {
        "pending": sum(replies[0:-2:2]),
        "in_flight": sum(replies[1:-2:2]),
        "done": replies[-2],
        "dead": replies[-1],
    }
    return {status: n for status, n in counts.items() if n}


def wait_drained(counts_of: Callable[[], dict[str, int]], timeout: float) -> tuple[float, int]:
    """Wait until no delivery is pending or in flight; (seconds waited, backlog at start)."""
    started = time.monotonic()
    backlog = None
    while True:
        counts = counts_of()
        active = counts.get("pending", 0) + counts.get("in_flight", 0)
        if backlog is None:
            backlog = active
        if active == 0:
            return time.monotonic() - started, backlog
        if time.monotonic() - started > timeout:
            raise BenchError(f"relay still has {active} deliveries queued after {timeout:g} s")
        time.sleep(0.2)


# -- one variant -----------------------------------------------------------------------------


@dataclass
class VariantResult:
    variant: str
    runs: list[Run] = field(default_factory=list)
    store: dict[str, int] = field(default_factory=dict)
    relay_answers: int = 0
    handwritten_answers: int = 0
    handwritten_rows: int | None = None  # rows in the hand-written app's store after the variant
    fake_zendesk_accepted: int | None = None
    profile: dict[str, Any] | None = None
    breakdown: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def started(servers: list[Server]) -> Iterator[None]:
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in reversed(servers):
            server.stop()


def order_mappings(folder: Path) -> Path:
    """``folder``, made to hold issue 3's "order mapping" and the samples its examples read."""
    folder.mkdir()
    shutil.copy2(ORDER_MAPPING, folder / ORDER_MAPPING.name)
    shutil.copytree(EXAMPLES, folder / EXAMPLES.name)
    return folder


def baseline(name: str, script: str, cfg: Config, work: Path, *args: str) -> Server:
    """A baseline app of ``bench/`` on a free port, pinned to the servers' cores."""
    port = free_port()
    cmd = [sys.executable, str(BENCH / script), "--port", str(port), *args]
    return Server(name, pinned(cmd, cfg.server_cores), clean_env(), port, work / f"{name}.log")


def run_variant(
    spec: Variant, cfg: Config, workdir: Path, profile_dir: Path | None, gil_only: bool = True
) -> VariantResult:
    variant = spec.name
    work = workdir / variant
    work.mkdir()
    template = make_template(spec.example, spec.example_id, work / f"{spec.example.stem}.template.json")
    db = work / "relay.db"
    mappings = MAPPINGS if spec.all_mappings else order_mappings(work / "mappings")

    servers: list[Server] = []
    fake: Server | None = None
    store_server: Server | None = None
    relay_env = clean_env(
        RELAY_INGEST_TOKENS=TOKEN,
        RELAY_STORE=f"sqlite:///{db}",
        RELAY_LOG_LEVEL=cfg.relay_log_level,
        RELAY_MAPPINGS_DIR=str(mappings),
    )
    counts_of: Callable[[], dict[str, int]] = partial(store_counts, db)
    if spec.store == "redis":
        store_server = redis_server(work, cfg.client_cores)  # not on the relay's core
        servers.append(store_server)
        relay_env.update(RELAY_STORE=store_server.url, RELAY_REDIS_PREFIX=REDIS_PREFIX)
        counts_of = partial(redis_counts, store_server.url)
    if spec.zendesk:
        fake_port = free_port()
        fake = Server(
            "fake-zendesk",
            pinned(
                [sys.executable, str(BENCH / "fake_zendesk.py"), "--port", str(fake_port)], cfg.client_cores
            ),
            clean_env(),
            fake_port,
            work / "fake_zendesk.log",
        )
        servers.append(fake)
        relay_env.update(ZENDESK_BASE_URL=fake.url, ZENDESK_OAUTH_TOKEN="bench-zendesk-token")
        if spec.unthrottled:
            relay_env.update(ZENDESK_RATE_LIMIT_PER_MINUTE=UNTHROTTLED_PER_MINUTE)
        else:  # the relay's default pace; the backlog grows, see MAX_PENDING
            relay_env.update(RELAY_MAX_PENDING=MAX_PENDING)
    relay_port = free_port()
    relay = Server(
        "relay",
        pinned([sys.executable, "-m", "app.cli", "serve", "--port", str(relay_port)], cfg.server_cores),
        relay_env,
        relay_port,
        work / "relay.log",
    )
    bare, raw = baseline("bare", "bare_app.py", cfg, work), baseline("raw", "raw_asgi_app.py", cfg, work)
    sides = {"relay": relay, "bare": bare, "raw": raw}
    expected = {"relay": spec.relay_status, "bare": BASELINE_STATUS, "raw": BASELINE_STATUS}
    handwritten_db = work / "handwritten.db"
    if spec.handwritten_status is not None:
        sides["handwritten"] = baseline("handwritten", "handwritten_app.py", cfg, work,
                                        "--db", str(handwritten_db), "--token", TOKEN)  # fmt: skip
        expected["handwritten"] = spec.handwritten_status
    servers += sides.values()
    result = VariantResult(variant)
    with started(servers):
        if store_server is not None:
            wait_redis(store_server)
        if fake is not None:
            fake.wait_ready(urllib.request.Request(f"{fake.url}/count"))
        relay.wait_ready(urllib.request.Request(f"{relay.url}/healthz"))
        for server in sides.values():
            if server is not relay:  # `{}` matches nothing: 202, or 200 ignored
                server.wait_ready(
                    urllib.request.Request(f"{server.url}/v1/events", data=b"{}", headers=HEADERS)
                )
        pids = ", ".join(f"{side} pid {server.pid} :{server.port}" for side, server in sides.items())
        print(f"\n== variant {variant}: {spec.label}\n   {pids}")
        if store_server is not None:
            print(
                f"   redis-server pid {store_server.pid} :{store_server.port} "
                f"(cores {cfg.client_cores or 'any'}, AOF fsync always)"
            )
        salt = secrets.token_hex(4)
        probe_relay(relay, template, f"{salt}-probe", spec)
        result.relay_answers += 1
        if "handwritten" in sides:
            probe_handwritten(sides["handwritten"], template, f"{salt}-probe", spec.handwritten_status == 202)
            result.handwritten_answers += 1  # the duplicate stores nothing

        def drain(run: Run | None) -> None:
            if not spec.zendesk:
                return
            if not spec.drains:  # sent at Zendesk's pace: the backlog only grows; note its size
                if run is not None:
                    counts = counts_of()
                    run.backlog = counts.get("pending", 0) + counts.get("in_flight", 0)
                    print(f"         backlog of {run.backlog} deliveries left (sent at Zendesk's pace)")
                return
            waited, backlog = wait_drained(counts_of, timeout=300)
            if run is not None:
                run.drain_seconds, run.drained = waited, backlog
                print(f"         backlog of {backlog} deliveries drained in {waited:.1f} s")

        drain(None)
        if cfg.warmup > 0:
            for side, server in sides.items():
                warm = run_wrk(cfg, server, template, f"{salt}-warm-{side}", cfg.warmup,
                               variant, side, 0, store_server=store_server)  # fmt: skip
                _check(warm, expected[side])
                if server is relay:
                    result.relay_answers += warm.requests
                    drain(None)
                elif side == "handwritten":
                    result.handwritten_answers += warm.requests
            print(f"   warmed up ({cfg.warmup:g} s each)")
        for rnd in range(1, cfg.rounds + 1):
            for side, server in sides.items():
                run = run_wrk(cfg, server, template, f"{salt}-{side}-{rnd}", cfg.seconds,
                              variant, side, rnd, store_server=store_server)  # fmt: skip
                _check(run, expected[side])
                print("   " + _line(run))
                result.runs.append(run)
                if server is relay:
                    result.relay_answers += run.requests
                    drain(run)
                elif side == "handwritten":
                    result.handwritten_answers += run.requests
        if cfg.breakdown and variant == "dry-run":
            result.breakdown = breakdown(cfg, relay, bare, raw, template, work, salt)
            result.relay_answers += sum(step["requests"] for step in result.breakdown if step["stored"])
        if profile_dir is not None:
            result.profile = profile_relay(
                cfg, relay, template, f"{salt}-profile", spec, profile_dir, gil_only
            )
            result.relay_answers += result.profile["requests"]  # (not drained: not measured)
        if fake is not None:
            with urllib.request.urlopen(f"{fake.url}/count", timeout=5) as answer:
                result.fake_zendesk_accepted = int(answer.read())
        result.store = counts_of()
    if "handwritten" in sides:
        result.handwritten_rows = rows = table_rows(handwritten_db, "deliveries")
        storing = spec.handwritten_status == 202
        print(f"   hand-written store: {rows} rows for {result.handwritten_answers} answers")
        if (rows < result.handwritten_answers) if storing else rows:
            raise BenchError(f"the hand-written app stored {rows} rows for {result.handwritten_answers} "
                             f"answers ({'one each' if storing else 'none'} expected)")  # fmt: skip
    stored = sum(result.store.get(s, 0) for s in STORED)
    total = sum(result.store.values())
    if spec.stores:
        expected_stored = result.relay_answers * spec.deliveries_per_answer
        print(
            f"   store: {result.store} ({stored} stored for {result.relay_answers} relay answers "
            f"counted by wrk, {spec.deliveries_per_answer} deliveries each)"
        )
        if stored < expected_stored:
            raise BenchError(f"the relay stored {stored} deliveries for {expected_stored} it answered")
    else:
        print(f"   store: {result.store or 'empty'} (nothing may be stored for ignored events)")
        if total:
            raise BenchError(f"the relay stored {total} deliveries for events it should ignore")
    return result


def post_event(server: Server, template: Path, event_id: str) -> tuple[int, dict[str, Any]]:
    """POST the template with ``event_id`` once, as wrk does; (HTTP status, JSON answer)."""
    body = template.read_bytes().replace(b"@ID@", event_id.encode())
    request = urllib.request.Request(f"{server.url}/v1/events", data=body, headers=HEADERS)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise BenchError(f"{server.name} probe: {exc.code} {exc.read()[:500]!r}") from None


def probe_handwritten(server: Server, template: Path, event_id: str, stores: bool) -> None:
    """The hand-written app answers 202 queued then 200 duplicate (or 200 ignored twice) for one
    event sent twice."""
    want = [(202, "queued"), (200, "duplicate")] if stores else [(200, "ignored")] * 2
    got = [post_event(server, template, event_id) for _ in want]
    if [(status, doc.get("status")) for status, doc in got] != want:
        raise BenchError(f"hand-written probe: expected {want}, got {got}")
    print(f"   probe: hand-written app answered {want} as expected")


def probe_relay(relay: Server, template: Path, event_id: str, spec: Variant) -> None:
    """One request by hand: the relay's answer must have the variant's status and outcomes
    (wrk only counts HTTP statuses, and ``200`` is both ``ignored`` and ``dry_run``)."""
    status, doc = post_event(relay, template, event_id)
    results = doc.get("results", [])
    outcomes = sorted(str(r.get("status")) for r in results)
    if status != spec.relay_status or outcomes != sorted(spec.outcomes):
        raise BenchError(
            f"relay probe for {spec.name}: expected {spec.relay_status} with {sorted(spec.outcomes)}, "
            f"got {status} with {outcomes}: {doc}"
        )
    shown = [f"{r.get('destination') or r.get('mapping') or '-'}: {r.get('status')}" for r in results]
    print(f"   probe: relay answered {status} {shown} as expected")


def breakdown(
    cfg: Config, relay: Server, bare: Server, raw: Server, template: Path, work: Path, salt: str
) -> list[dict[str, Any]]:
    """One run each of progressively more relay work, to split the relay's cost per request."""
    anonymous = make_template(ANONYMOUS, ANONYMOUS_ID, work / "pageview.template.json")
    steps = (
        ("raw ASGI callable: parse JSON, answer 202", raw, template, "/v1/events", 202),
        ("bare FastAPI route: parse JSON, answer 202", bare, template, "/v1/events", 202),
        ("relay, anonymous page view: auth, parse, match -> ignored", relay, anonymous, "/v1/events", 200),
        ("relay, /v1/preview purchase: + render, validate (no store)", relay, template, "/v1/preview", 200),
        ("relay, /v1/events purchase: + durable SQLite store", relay, template, "/v1/events", 200),
    )
    print("   breakdown (one run each; CPU ms per request is the robust number):")
    steps_done: list[dict[str, Any]] = []
    for label, server, body, path, status in steps:
        run = run_wrk(
            cfg, server, body, f"{salt}-step-{len(steps_done)}", cfg.seconds, "dry-run", server.name, 0, path
        )
        _check(run, status)
        steps_done.append(
            {
                "step": label,
                "requests": run.requests,
                "stored": server is relay and path == "/v1/events" and body == template,
                "rps": round(run.rps, 1),
                "cpu_ms_per_request": round(run.cpu_ms_per_request, 3),
                "p50_ms": run.p50_ms,
                "p99_ms": run.p99_ms,
            }
        )
        print(
            f"     {run.rps:7.0f} req/s  {run.cpu_ms_per_request:.3f} CPU ms/req  "
            f"p50 {run.p50_ms:6.2f} ms  {label}"
        )
    return steps_done


def _check(run: Run, expected: int | None = None) -> None:
    if run.non_2xx or run.socket_error_count or run.requests == 0:
        raise BenchError(
            f"{run.side} round {run.round}: {run.non_2xx} non-2xx answers {run.statuses}, "
            f"socket errors {run.socket_errors}, {run.requests} requests"
        )
    if expected is not None and set(run.statuses) != {str(expected)}:
        raise BenchError(
            f"{run.side} round {run.round}: expected only {expected} answers, got {run.statuses}"
        )


def _line(run: Run) -> str:
    statuses = " ".join(f"{k}:{v}" for k, v in sorted(run.statuses.items()))
    return (
        f"round {run.round} {run.side:<11} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  "
        f"p99 {run.p99_ms:6.2f} ms  max {run.max_ms:7.1f} ms  [{statuses}] non-2xx {run.non_2xx} "
        f"sock-err {run.socket_error_count}  server CPU {run.server_cpu:4.0%} "
        f"({run.cpu_ms_per_request:.3f} ms/req)  wrk CPU {run.client_cpu:4.0%}"
        + (f"  redis CPU {run.store_cpu:4.0%}" if run.store_cpu is not None else "")
    )


# -- profiling -------------------------------------------------------------------------------

STDLIB = set(sys.stdlib_module_names)
BUCKETS = (  # (label, prefixes of the frame's file as py-spy prints it); first match wins
    ("JMESPath evaluation (jmespath)", ("jmespath/",)),
    ("mapping match/render (app/mapping)", ("app/mapping/",)),
    ("Zendesk prepare/validate/send (app/destinations)", ("app/destinations/",)),
    ("SQLite store (app/delivery/sqlite.py, writer thread)", ("app/delivery/sqlite.py",)),
    ("Redis store and rate limiter (app/delivery/redis_*.py)", ("app/delivery/redis_",)),
    ("redis-py client (redis)", ("redis/",)),
    ("dispatcher + rate limiter (app/delivery)", ("app/delivery/",)),
    ("httpx/httpcore (dispatcher's client)", ("httpx/", "httpcore/", "h11/", "anyio/", "sniffio/")),
    ("logging (structlog, app/logs.py)", ("structlog/", "app/logs.py")),
    ("payload parsing (app/payloads.py)", ("app/payloads.py",)),
    ("pipeline glue (app/pipeline.py)", ("app/pipeline.py",)),
    ("relay API: auth, middleware, response (app/api)", ("app/api/",)),
    ("problems/other app code", ("app/",)),
    ("FastAPI routing/deps", ("fastapi/",)),
    ("Starlette", ("starlette/",)),
    ("pydantic", ("pydantic/", "pydantic_core/", "pydantic_settings/")),
    ("uvicorn + event loop", ("uvicorn/", "uvloop/", "httptools/")),
)


def _frame_file(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``path/to/file.py``."""
    if not frame.endswith(")") or " (" not in frame:
        return ""
    return frame.rsplit(" (", 1)[1][:-1].rsplit(":", 1)[0]


def _is_stdlib(path: str) -> bool:
    if not path or path.startswith("<"):
        return True
    top = path.split("/", 1)[0].removesuffix(".py")
    return top in STDLIB


def summarise_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Attribute py-spy's raw samples: each to the innermost non-stdlib frame (stdlib time,
    e.g. ``re``, ``asyncio``, ``sqlite3``, counts for the code that called it), bucketed by
    package; plus the top such functions and thread shares."""
    buckets: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames and frames[0].startswith("thread "):
            threads[frames[0].split(": ", 1)[-1]] += count
            frames = frames[1:]
        total += count
        owner = next(
            (f for f in reversed(frames) if not _is_stdlib(_frame_file(f))), frames[-1] if frames else "?"
        )
        path = _frame_file(owner)
        label = next((name for name, prefixes in BUCKETS if path.startswith(prefixes)), None)
        if label is None:
            label = "stdlib/native only (no library frame)" if _is_stdlib(path) else f"other ({path})"
        buckets[label] += count
        functions[owner] += count
    share = {k: round(v / total, 4) for k, v in buckets.most_common()} if total else {}
    return {
        "samples": total,
        "buckets": share,
        "top_functions": [(f, round(n / total, 4)) for f, n in functions.most_common(top)] if total else [],
        "threads": {k: round(v / total, 4) for k, v in threads.most_common()} if total else {},
    }


def profile_relay(
    cfg: Config, relay: Server, template: Path, salt: str, spec: Variant, out_dir: Path, gil_only: bool
) -> dict[str, Any]:
    """One extra relay round (not counted) with py-spy sampling the relay process.

    ``gil_only`` (py-spy ``--gil``) keeps only samples of the thread holding the GIL: with the
    relay pinned to one busy core, that is where its CPU goes. Without it, threads waiting
    for the GIL or in I/O (``os.urandom``, SQLite's fsync) are sampled too."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise BenchError("--profile needs py-spy (.venv/bin/pip install py-spy)")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"relay-{spec.name}-{'gil' if gil_only else 'all'}.txt"
    seconds = cfg.seconds
    spy = subprocess.Popen(
        pinned(
            [py_spy, "record", "--pid", str(relay.pid), "--duration", str(math.ceil(seconds) + 1),
             "--rate", "100", "--threads", "--nonblocking", "--format", "raw", "--output", str(raw),
             *(["--gil"] if gil_only else [])],
            cfg.client_cores,
        ),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    time.sleep(0.5)
    run = run_wrk(cfg, relay, template, salt, seconds, spec.name, "relay", 0)
    _check(run, spec.relay_status)
    output, _ = spy.communicate(timeout=seconds + 30)
    if spy.returncode != 0 or not raw.exists():
        raise BenchError(f"py-spy failed ({spy.returncode}): {output}")
    summary = summarise_profile(raw)
    summary.update(
        raw=str(raw), gil_only=gil_only, requests=run.requests, rps_while_profiled=round(run.rps, 1)
    )
    mode = "GIL holder only" if gil_only else "all threads"
    print(f"   profile, {mode} ({summary['samples']} samples, {run.rps:.0f} req/s while sampled) -> {raw}")
    for label, frac in summary["buckets"].items():
        print(f"     {frac:6.1%}  {label}")
    print("     top functions (innermost non-stdlib frame):")
    for function, frac in summary["top_functions"]:
        print(f"     {frac:6.1%}  {function}")
    print(f"     threads: {summary['threads']}")
    return summary


# -- report ----------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


RATIOS = (
    ("relay/bare", "relay", "bare"),
    ("relay/handwritten", "relay", "handwritten"),
    ("relay/raw", "relay", "raw"),
    ("bare/raw", "bare", "raw"),
)


def report(results: list[VariantResult], cfg: Config) -> list[dict[str, Any]]:
    summary: list[dict[str, Any]] = []
    rounds_table = [
        "| variant | round | side | req/s | p50 ms | p99 ms | max ms | answers | server CPU | CPU ms/req "
        "| wrk CPU | redis CPU | backlog after round |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for result in results:
        for run in result.runs:
            answers = ", ".join(f"{k} x {v}" for k, v in sorted(run.statuses.items()))
            backlog = (
                f"{run.drained}, drained in {run.drain_seconds:.1f} s"
                if run.drained is not None
                else f"{run.backlog} left, not drained"
                if run.backlog is not None
                else "-"
            )
            store_cpu = f"{run.store_cpu:.0%}" if run.store_cpu is not None else "-"
            rounds_table.append(
                f"| {run.variant} | {run.round} | {run.side} | {run.rps:.0f} | {run.p50_ms:.2f} | "
                f"{run.p99_ms:.2f} | {run.max_ms:.1f} | {answers} | {run.server_cpu:.0%} | "
                f"{run.cpu_ms_per_request:.3f} | {run.client_cpu:.0%} | {store_cpu} | {backlog} |"
            )
    print("\n== all rounds")
    print("\n".join(rounds_table))

    print("\n== summary (requests/s: total requests / total seconds; latencies: median of rounds)")
    table = [
        "| variant | side | req/s | p50 ms | p99 ms | worst p99 ms | non-2xx | server CPU | CPU ms/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratio_table = [
        "| variant | " + "".join(f"{name} (rounds) | " for name, _, _ in RATIOS) + "CPU ms/req bare/relay |",
        "|---|---|---|---|---|---:|",
    ]
    targets = [
        "| target | variant | required | measured | result |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        spec = VARIANTS[result.variant]
        sides: dict[str, list[Run]] = {}
        for run in result.runs:
            sides.setdefault(run.side, []).append(run)
        row: dict[str, Any] = {"variant": result.variant, "label": spec.label}
        for side, runs in sides.items():
            rps = sum(r.requests for r in runs) / sum(r.seconds for r in runs)
            p50 = _median([r.p50_ms for r in runs])
            p99 = _median([r.p99_ms for r in runs])
            worst = max(r.p99_ms for r in runs)
            errors = sum(r.non_2xx + r.socket_error_count for r in runs)
            cpu = _median([r.server_cpu for r in runs])
            cpu_ms = _median([r.cpu_ms_per_request for r in runs])
            row[side] = {"rps": round(rps, 1), "p50_ms": p50, "p99_ms": p99, "worst_p99_ms": worst,
                         "errors": errors, "server_cpu": cpu, "cpu_ms_per_request": cpu_ms}  # fmt: skip
            table.append(
                f"| {result.variant} | {side} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {worst:.2f} | "
                f"{errors} | {cpu:.0%} | {cpu_ms:.3f} |"
            )
        ratios: dict[str, dict[str, Any]] = {}
        cells = []
        for name, top, bottom in RATIOS:
            if bottom not in sides:
                cells.append("-")
                continue
            per_round = [a.rps / b.rps for a, b in zip(sides[top], sides[bottom], strict=True)]
            ratios[name] = {
                "rounds": [round(r, 3) for r in per_round],
                "median": round(_median(per_round), 3),
            }
            cells.append(f"**{_median(per_round):.2f}x** ({', '.join(f'{r:.2f}' for r in per_round)})")
        cpu_ratio = row["bare"]["cpu_ms_per_request"] / row["relay"]["cpu_ms_per_request"]
        row.update(ratios=ratios, cpu_ratio_bare_over_relay=round(cpu_ratio, 3))
        ratio_table.append(f"| {result.variant} | {' | '.join(cells)} | {cpu_ratio:.2f}x |")
        checks: list[dict[str, Any]] = []
        for target in spec.targets:
            source = f" ({target.source})" if target.source else ""
            if target.p99:
                relay_p99, limit = row["relay"]["p99_ms"], target.ratio * row[target.over]["p99_ms"]
                checks.append({"target": f"p99 latency at {cfg.connections} connections{source}",
                               "required": f"<= {target.ratio:g}x {target.over} ({limit:.2f} ms)",
                               "measured": f"{relay_p99:.2f} ms", "pass": relay_p99 <= limit})  # fmt: skip
                continue
            ratio = ratios[f"relay/{target.over}"]["median"]
            checks.append({"target": f"throughput relay/{target.over}{source}",
                           "required": f">= {target.ratio:g}x", "measured": f"{ratio:.2f}x",
                           "pass": ratio >= target.ratio})  # fmt: skip
        for check in checks:
            targets.append(
                f"| {check['target']} | {result.variant} | {check['required']} | {check['measured']} | "
                f"{'PASS' if check['pass'] else 'BELOW'} |"
            )
        row["targets"] = checks
        summary.append(row)
    print("\n".join(table))
    print("\n== ratios (median of the per-round ratios; each round's own ratio in brackets)")
    print("\n".join(ratio_table))
    print(f"\n== targets ({cfg.rounds} rounds x {cfg.seconds:g} s, {cfg.connections} connections)")
    print("\n".join(targets))
    if cfg.connections != 32:
        print("(note: the p99 target speaks of 32 connections; this run used a different count)")
    return summary


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    version = (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "?"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": version.strip(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="relay/bare/raw rounds per variant (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per server (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--timeout", type=float, default=10.0, help="wrk request timeout, s (default 10)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--variant",
        action="append",
        choices=list(VARIANTS),
        help="run this variant (repeatable; default: all, the redis-* ones if redis-server is installed)",
    )
    which.add_argument(
        "--deliver", action="store_true", help="only the deliver variant (= --variant deliver)"
    )
    which.add_argument(
        "--dry-run", action="store_true", help="only the dry-run variant (= --variant dry-run)"
    )
    which.add_argument(
        "--ignored", action="store_true", help="only the ignored variant (= --variant ignored)"
    )
    parser.add_argument("--server-cores", default="0", help="taskset cores for the servers (default 0)")
    parser.add_argument("--client-cores", default="1", help="taskset cores for wrk, fake Zendesk (default 1)")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument(
        "--relay-log-level",
        default="warning",
        help="RELAY_LOG_LEVEL (default warning; `info` logs each request)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="dry-run: also time an ignored event and /v1/preview, to split the relay's cost",
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="also profile the relay with py-spy")
    parser.add_argument(
        "--profile-all-threads", action="store_true", help="sample every thread, not only the GIL holder"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every run and the summary here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.connections < args.threads:
        parser.error("need --rounds >= 1, --seconds > 0 and --connections >= --threads")
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    pin = not args.no_pin and shutil.which("taskset") is not None
    cfg = Config(
        rounds=args.rounds,
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        server_cores=args.server_cores if pin else None,
        client_cores=args.client_cores if pin else None,
        timeout=args.timeout,
        relay_log_level=args.relay_log_level,
        breakdown=args.breakdown,
    )
    if args.variant:
        variants = list(dict.fromkeys(args.variant))
    elif args.deliver or args.dry_run or args.ignored:
        variants = ["deliver"] if args.deliver else ["dry-run"] if args.dry_run else ["ignored"]
    else:
        variants = list(VARIANTS)  # every variant, in the table's order
        if not Path(REDIS_SERVER).exists():
            variants = [v for v in variants if VARIANTS[v].store != "redis"]
            print("redis-server is not installed: skipping the redis-* variants "
                  "(apt-get install -y redis-server)", file=sys.stderr)  # fmt: skip
    if any(VARIANTS[v].store == "redis" for v in variants) and not Path(REDIS_SERVER).exists():
        print("redis-server is not installed (apt-get install -y redis-server)", file=sys.stderr)
        return 2
    info = machine()
    print(f"machine: {info}")
    pinning = (
        f"servers on cores {cfg.server_cores}, wrk/fake Zendesk on cores {cfg.client_cores}"
        if pin
        else "none"
    )
    print(
        f"wrk -t{cfg.threads} -c{cfg.connections}, {cfg.rounds} rounds x {cfg.seconds:g} s per side, "
        f"warm-up {cfg.warmup:g} s; RELAY_LOG_LEVEL={cfg.relay_log_level}; pinning: {pinning}"
    )
    results: list[VariantResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="aep-relay-bench-") as tmp:
            for variant in variants:
                results.append(
                    run_variant(VARIANTS[variant], cfg, Path(tmp), args.profile, not args.profile_all_threads)
                )
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    summary = report(results, cfg)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "config": asdict(cfg),
                    "summary": summary,
                    "variants": [{**asdict(r), "runs": [asdict(run) for run in r.runs]} for r in results],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
