"""A/B pairs: two servers on one core take turns under the same load; B's throughput against A's.

Not a test. ``bench/ingest.py`` compares the relay with the bare route over rounds minutes
apart, and on a shared machine the rounds move by more than a change to the relay is worth.
This script measures a change instead: servers A and B (each a relay or the bare route, with
their own settings or from another checkout) run **at the same time**, both pinned to
``--server-cores``, and take turns under ``wrk -c32`` (``bench/post_events.lua``, the purchase
event, each request with its own random event id) from ``--client-cores``, where the fake
Zendesk also runs. The order flips every pair, so neither side always runs first. Per pair it
prints both sides' requests a second, server CPU a request and p99, and B/A; at the end, the
median of the pairs' B/A (with the range), of their CPU a request A/B and of their p99 A/B,
and each side's write system calls and bytes written a request (``/proc/PID/io``). Each
stored event holds a live idempotency key, so a longer ``--warmup`` measures a store holding
many keys (the relay stores a few thousand events a second of warm-up).

A relay runs as ``bench/ingest.py --variant deliver`` runs it: the order mapping only, a
SQLite file of its own, ``RELAY_LOG_LEVEL=warning``, the fake Zendesk at the default rate
limit. A spec is ``relay`` or ``bare``, then optionally ``tree=PATH`` (run the relay from
another checkout, such as a ``git worktree`` of another commit; it uses this checkout's
virtualenv) and ``NAME=VALUE`` settings for its environment:

    .venv/bin/python bench/ab.py relay 'relay RELAY_SQLITE_SYNCHRONOUS=NORMAL'
    .venv/bin/python bench/ab.py 'relay tree=../main-before' relay --pairs 10
    .venv/bin/python bench/ab.py bare relay                 # the relay against the bare route

Results in ``bench/RESULTS.md`` quote the median (range) over at least 8 pairs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess  # nosec B404 - runs wrk and the servers, arguments are ours
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import (
    ANONYMOUS,
    ANONYMOUS_ID,
    BENCH,
    EXAMPLE,
    EXAMPLE_ID,
    MAX_PENDING,
    ROOT,
    TOKEN,
    BenchError,
    Config,
    Server,
    clean_env,
    free_port,
    make_template,
    order_mappings,
    pinned,
    run_wrk,
    started,
)

WARMUP = 3.0  # seconds of load on each side before the first pair


@dataclass
class Spec:
    """What runs on one side: the relay (from ``tree``) or the bare route, with extra settings."""

    kind: str
    tree: Path
    env: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Spec:
        kind, *rest = text.split() or [""]
        if kind not in ("relay", "bare"):
            raise BenchError(f"a spec starts with `relay` or `bare`, not {text!r}")
        tree, env = ROOT, {}
        for item in rest:
            name, sep, value = item.partition("=")
            if not sep:
                raise BenchError(f"expected NAME=VALUE in {text!r}, got {item!r}")
            if name == "tree":
                tree = Path(value).resolve()
                if not (tree / "app" / "cli.py").is_file():
                    raise BenchError(f"{tree} is not a checkout of the relay")
            else:
                env[name] = value
        if kind == "bare" and (tree != ROOT or env):
            raise BenchError("the bare route takes no tree and no settings")
        return cls(kind, tree, env)


class TreeServer(Server):
    """A server started from a given checkout (its working directory decides which ``app``)."""

    def __init__(
        self, tree: Path, name: str, cmd: list[str], env: dict[str, str], port: int, log: Path
    ) -> None:
        super().__init__(name, cmd, env, port, log)
        self.tree = tree

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # nosec B603
                self.cmd, cwd=self.tree, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )


def side_server(spec: Spec, name: str, work: Path, fake_url: str, cores: str | None) -> Server:
    port = free_port()
    if spec.kind == "bare":
        cmd = [sys.executable, str(BENCH / "bare_app.py"), "--port", str(port)]
        return TreeServer(ROOT, name, pinned(cmd, cores), clean_env(), port, work / f"{name}.log")
    defaults = {
        "RELAY_INGEST_TOKENS": TOKEN,
        "RELAY_STORE": f"sqlite:///{work / f'{name}.db'}",
        "RELAY_LOG_LEVEL": "warning",
        "RELAY_MAPPINGS_DIR": str(order_mappings(work / f"{name}-mappings")),
        "RELAY_MAX_PENDING": MAX_PENDING,
        "ZENDESK_BASE_URL": fake_url,
        "ZENDESK_OAUTH_TOKEN": "bench-zendesk-token",  # nosec B105 - the fake's
    }
    env = clean_env(**{**defaults, **spec.env})  # a spec's settings win, RELAY_MAPPINGS_DIR too
    cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    return TreeServer(spec.tree, name, pinned(cmd, cores), env, port, work / f"{name}.log")


def io_counts(server: Server) -> tuple[int, int]:
    """Bytes written and write system calls of the server process so far."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{server.pid}/io").read_text().splitlines())
    return int(fields["wchar"]), int(fields["syscw"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", help="side A: `relay` or `bare`, then tree=PATH and NAME=VALUE settings")
    parser.add_argument("b", help="side B, as A")
    parser.add_argument("--pairs", type=int, default=8, help="pairs of runs (default 8)")
    parser.add_argument(
        "--event",
        choices=("purchase", "ignored"),
        default="purchase",
        help="the purchase (matched, stored) or the anonymous page view (ignored); default purchase",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds a run (default 5)")
    parser.add_argument(
        "--warmup", type=float, default=WARMUP, help=f"seconds of load on each side first ({WARMUP:g})"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--server-cores", default="0", help="taskset cores of both servers (default 0)")
    parser.add_argument("--client-cores", default="1", help="taskset cores of wrk and the fake (default 1)")
    args = parser.parse_args()
    if args.pairs < 1 or args.seconds <= 0 or args.warmup <= 0:
        parser.error("need --pairs >= 1, --seconds > 0 and --warmup > 0")
    if shutil.which("wrk") is None:
        sys.exit("needs wrk (apt-get install wrk)")
    cfg = Config(
        rounds=args.pairs,
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        threads=1,
        server_cores=args.server_cores or None,
        client_cores=args.client_cores or None,
        timeout=10.0,
    )
    try:
        specs = {"A": Spec.parse(args.a), "B": Spec.parse(args.b)}
        with tempfile.TemporaryDirectory(prefix="aep-relay-ab-") as folder:
            compare(specs, cfg, Path(folder), ignored=args.event == "ignored")
    except BenchError as exc:
        sys.exit(str(exc))


def compare(specs: dict[str, Spec], cfg: Config, work: Path, *, ignored: bool = False) -> None:
    example, example_id = (ANONYMOUS, ANONYMOUS_ID) if ignored else (EXAMPLE, EXAMPLE_ID)
    template = make_template(example, example_id, work / "event.template.json")
    fake_port = free_port()
    fake_cmd = [sys.executable, str(BENCH / "fake_zendesk.py"), "--port", str(fake_port)]
    fake = TreeServer(
        ROOT, "fake-zendesk", pinned(fake_cmd, cfg.client_cores), clean_env(), fake_port, work / "fake.log"
    )
    sides = {name: side_server(spec, name, work, fake.url, cfg.server_cores) for name, spec in specs.items()}
    rps: dict[str, list[float]] = {"A": [], "B": []}
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    p99: dict[str, list[float]] = {"A": [], "B": []}
    io = {"A": [0, 0, 0], "B": [0, 0, 0]}  # bytes, write calls, requests
    with started([fake, *sides.values()]):
        fake.wait_ready(urllib.request.Request(f"{fake.url}/count"))
        for name, server in sides.items():
            server.wait_ready(ready_probe(specs[name], server))
        for name, server in sides.items():
            run_wrk(cfg, server, template, f"warm-{name}", cfg.warmup, "ab", name, 0)
        print(f"A: {specs_text(specs['A'])}\nB: {specs_text(specs['B'])}")
        for pair in range(cfg.rounds):
            for name in ("A", "B") if pair % 2 == 0 else ("B", "A"):
                server = sides[name]
                before = io_counts(server)
                run = run_wrk(cfg, server, template, f"p{pair}-{name}", cfg.seconds, "ab", name, pair)
                after = io_counts(server)
                if run.non_2xx or run.socket_error_count:
                    raise BenchError(f"{name}: {run.statuses} {run.socket_errors}\n{server.tail()}")
                rps[name].append(run.rps)
                cpu[name].append(run.cpu_ms_per_request)
                p99[name].append(run.p99_ms)
                io[name][0] += after[0] - before[0]
                io[name][1] += after[1] - before[1]
                io[name][2] += run.requests
            a, b = rps["A"][-1], rps["B"][-1]
            print(
                f"pair {pair + 1}: A {a:7.0f} req/s {cpu['A'][-1]:.4f} ms/req | "
                f"B {b:7.0f} req/s {cpu['B'][-1]:.4f} ms/req | B/A {b / a:.3f} | "
                f"p99 A {p99['A'][-1]:.1f} B {p99['B'][-1]:.1f} ms",
                flush=True,
            )
    ratios = [b / a for a, b in zip(rps["A"], rps["B"], strict=True)]
    cpu_ratios = [a / b for a, b in zip(cpu["A"], cpu["B"], strict=True)]
    p99_ratios = [a / b for a, b in zip(p99["A"], p99["B"], strict=True)]
    print(
        f"B/A req/s: median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}) "
        f"over {len(ratios)} pairs; CPU a request A/B: median {statistics.median(cpu_ratios):.3f}; "
        f"p99 A/B: median {statistics.median(p99_ratios):.3f} "
        f"(A {statistics.median(p99['A']):.1f} ms, B {statistics.median(p99['B']):.1f} ms)"
    )
    for name, (written, calls, requests) in io.items():
        print(f"{name}: {written / requests:.0f} bytes and {calls / requests:.2f} write calls a request")
    print(
        "BENCH_JSON "
        + json.dumps({"ratios": ratios, "cpu_ratios": cpu_ratios, "rps": rps, "cpu_ms": cpu, "p99_ms": p99})
    )


def ready_probe(spec: Spec, server: Server) -> urllib.request.Request:
    """What answers 2xx once the server serves (the bare route has no health check)."""
    if spec.kind == "relay":
        return urllib.request.Request(f"{server.url}/healthz")
    url = f"{server.url}/v1/events"
    return urllib.request.Request(url, data=b"{}", headers={"Content-Type": "text/plain"})


def specs_text(spec: Spec) -> str:
    settings = " ".join(f"{k}={v}" for k, v in spec.env.items())
    tree = "" if spec.tree == ROOT else f" (from {spec.tree})"
    return f"{spec.kind}{tree} {settings}".rstrip()


if __name__ == "__main__":
    main()
