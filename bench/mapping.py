"""Mapping render benchmark: per-event time to render ``bench/benchmark-mapping.yaml``.

Not a test. Renders the body of ``bench/benchmark-mapping.yaml`` for the XDM purchase event
``bench/purchase_event.json`` with:

* **reference**: the same body through a small template renderer (below) that evaluates each
  ``{{ expr }}`` token with the reference ``jmespath`` interpreter. Expressions are compiled
  once with ``jmespath.compile``, so parsing is not counted; each ``ParsedResult.search`` call
  still walks the AST with ``jmespath``'s ``TreeInterpreter``, as ``jmespath.search`` does.
* **compiled**: the relay itself. The file is loaded with ``app.mapping.loader.load_mapping_file``
  and rendered by ``Mapping.render``, i.e. ``app.mapping.templates`` over
  ``app.mapping.compiled``, exactly as the ingest path renders it.
* **dict**: a hand-written function of plain dict look-ups building the same body. It has no
  null handling and no error reporting. It is a floor for context, not a competitor.
* **segment**: Segment's mapping-kit, ``transform(mapping, event)`` from
  ``@segment/actions-core``, run by ``bench/peers/segment/render.mjs`` under ``node``. The
  script installs the package with npm into ``bench/peers/segment/node_modules`` (git-ignored)
  when it is missing. Without ``node``, or if the install fails, it prints a note and skips it.

All renderers must produce the identical body (Segment's arrives as JSON and is compared
after parsing), which must also equal the mapping file's own example ``expect``.

Timing: the process is pinned to one core (``os.sched_setaffinity``) and node to the same core
(``taskset``). node is kept running in a request/answer mode, so each repeat times reference,
compiled, dict and segment one after another (in a rotating order) in the same minute. Each
timed block is ``time.perf_counter_ns`` around N renders, with N calibrated per renderer for
about ``--block-ms``. The Python garbage collector is off during timed blocks, as in
``timeit``. Per renderer it prints the median and min of the per-repeat microseconds per
event. Ratios are medians of the per-repeat ratios, against the targets: compiled at least
8x faster than reference and at least 3x faster than Segment.

    .venv/bin/python bench/mapping.py                  # about 15 s (plus npm install once)
    .venv/bin/python bench/mapping.py --profile        # plus where the compiled render's time goes
    .venv/bin/python bench/mapping.py --no-segment --repeats 9

Latest results: ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jmespath
import orjson
from ruamel.yaml import YAML

from app.mapping import compiled
from app.mapping.expressions import Expression
from app.mapping.loader import Mapping, load_mapping_file, to_plain
from app.payloads import parse_payload

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
MAPPING_FILE = BENCH / "benchmark-mapping.yaml"
EVENT_FILE = BENCH / "purchase_event.json"
SEGMENT_DIR = BENCH / "peers" / "segment"
SEGMENT_SCRIPT = SEGMENT_DIR / "render.mjs"
DESTINATIONS = {"zendesk": ("events", "profile_events", "user_events")}
TARGET_VS_REFERENCE = 8.0
TARGET_VS_SEGMENT = 3.0

Render = Callable[[Any], Any]


class BenchError(RuntimeError):
    """The benchmark could not run, or the renderers disagree."""


# -- the renderers ---------------------------------------------------------------------------


def load_relay_mapping() -> Mapping:
    """The benchmark mapping through the relay's own loader (what ingest renders with)."""
    return load_mapping_file(MAPPING_FILE, DESTINATIONS)


def load_body() -> Any:
    """The ``body`` of the mapping file as plain JSON-like values."""
    return to_plain(YAML(typ="rt").load(MAPPING_FILE.read_text(encoding="utf-8"))["body"])


def compile_reference(node: Any) -> Render:
    """The body as closures, like ``app.mapping.templates``, with tokens run by ``jmespath``.

    Same rules as the relay's templates for what this mapping uses: a string that is one
    whole ``{{ expr }}`` keeps the value's type, other strings are literals, and object keys
    and array items that render to null are dropped. Tokens inside longer text are not needed
    by the benchmark mapping and are refused.
    """
    if isinstance(node, dict):
        fields = [(key, compile_reference(value)) for key, value in node.items()]

        def render_object(event: Any) -> dict[str, Any]:
            out = {}
            for key, render in fields:
                value = render(event)
                if value is not None:
                    out[key] = value
            return out

        return render_object
    if isinstance(node, list):
        items = [compile_reference(value) for value in node]

        def render_array(event: Any) -> list[Any]:
            rendered = (render(event) for render in items)
            return [value for value in rendered if value is not None]

        return render_array
    if isinstance(node, str):
        text = node.strip()
        if text.startswith("{{") and text.endswith("}}"):
            inner = text[2:-2]
            if "{{" in inner or "}}" in inner:
                raise BenchError(f"reference renderer: only whole-value tokens, got {node!r}")
            return jmespath.compile(inner.strip()).search  # parsed once, interpreted per event
        if "{{" in node:
            raise BenchError(f"reference renderer: only whole-value tokens, got {node!r}")
    return lambda _event: node


def render_by_hand(event: dict[str, Any]) -> dict[str, Any]:
    """The same body with plain dict look-ups: a floor, with no null or error handling."""
    xdm = event["xdm"]
    customer = event["data"]["customer"]
    identities = xdm["identityMap"]
    order = xdm["commerce"]["order"]
    return {
        "profile": {
            "source": "shoppingnow",
            "type": "customer",
            "name": customer["name"],
            "identifiers": [
                {"type": "email", "value": identities["Email"][0]["id"]},
                {"type": "external_id", "value": identities["CRMID"][0]["id"]},
            ],
        },
        "event": {
            "source": "shoppingnow",
            "type": xdm["eventType"],
            "created_at": xdm["timestamp"],
            "properties": {
                "order_id": order["purchaseID"],
                "total": order["priceTotal"],
                "currency": order["currencyCode"],
                "items": [
                    {"sku": item["SKU"], "name": item["name"], "qty": item["quantity"]}
                    for item in xdm["productListItems"]
                ],
                "url": xdm["web"]["webPageDetails"]["URL"],
                "tier": customer["tier"],
            },
        },
    }


def tokens(node: Any) -> Iterator[str]:
    """The expressions of the body's ``{{ }}`` tokens, in document order."""
    if isinstance(node, dict):
        for value in node.values():
            yield from tokens(value)
    elif isinstance(node, list):
        for value in node:
            yield from tokens(value)
    elif isinstance(node, str) and node.strip().startswith("{{"):
        yield node.strip()[2:-2].strip()


# -- Segment (node) --------------------------------------------------------------------------


def pinned(cmd: list[str], core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", str(core), *cmd]


def install_segment(node: str) -> str | None:
    """Install the npm peer if needed; ``None`` when ready, else why Segment is skipped."""
    if (SEGMENT_DIR / "node_modules" / "@segment" / "actions-core").is_dir():
        return None
    npm = shutil.which("npm") or str(Path(node).with_name("npm"))
    if not Path(npm).exists():
        return "npm not found"
    print(f"installing the Segment peer: npm install into {SEGMENT_DIR.relative_to(ROOT)}/node_modules")
    cmd = [npm, "install", "--no-audit", "--no-fund", "--no-package-lock", "--prefix", str(SEGMENT_DIR)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        return "npm install timed out after 300 s"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return f"npm install failed (exit {done.returncode}): " + " | ".join(tail)
    return None


class Segment:
    """``render.mjs --serve``: times N ``transform`` calls per request line, in the same core."""

    def __init__(self, node: str, core: int | None, warmup: int) -> None:
        cmd = pinned([node, str(SEGMENT_SCRIPT), str(EVENT_FILE), "--serve", "--warmup", str(warmup)], core)
        self.proc = subprocess.Popen(
            cmd, cwd=SEGMENT_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.header = self._answer()
        self.pinned = cmd[0] == "taskset"

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"render.mjs exited with {self.proc.wait()} (its stderr is above)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def time_ns(self, n: int) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{n}\n")
        return int(self._answer()["ns"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_segment(args: argparse.Namespace, core: int | None) -> tuple[Segment | None, str | None]:
    if args.no_segment:
        return None, "skipped (--no-segment)"
    node = shutil.which("node")
    if node is None:
        return None, "skipped: `node` is not on PATH"
    problem = install_segment(node)
    if problem:
        return None, f"skipped: {problem}"
    try:
        return Segment(node, core, args.segment_warmup), None
    except (BenchError, OSError, json.JSONDecodeError) as exc:
        return None, f"skipped: render.mjs did not start: {exc}"


# -- timing ----------------------------------------------------------------------------------


def time_block(render: Render, event: Any, n: int) -> int:
    """Nanoseconds for ``n`` renders, garbage collector off."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(n):
            render(event)
        return time.perf_counter_ns() - start
    finally:
        if gc_was_on:
            gc.enable()


def calibrate(timer: Callable[[int], int], block_ns: float) -> int:
    """How many renders make one block of about ``block_ns``."""
    n = 64
    while (elapsed := timer(n)) < block_ns / 8:
        n *= 4
    return max(1, round(n * block_ns / elapsed))


def run(
    timers: dict[str, Callable[[int], int]], repeats: int, block_ms: float, warmup_s: float
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per-event microseconds per renderer and repeat; renderers in turn within a repeat."""
    deadline = time.perf_counter() + warmup_s
    while time.perf_counter() < deadline:
        for timer in timers.values():
            timer(200)
    counts = {name: calibrate(timer, block_ms * 1e6) for name, timer in timers.items()}
    names = list(timers)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timers[name](counts[name]) / counts[name] / 1000)
    return samples, counts


def ratio(samples: dict[str, list[float]], slow: str, fast: str) -> tuple[float, float, float]:
    """Median of the per-repeat ratios, and its range."""
    ratios = [s / f for s, f in zip(samples[slow], samples[fast], strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


# -- where the time goes ---------------------------------------------------------------------


def _chain_steps(node: dict[str, Any]) -> list[str | int] | None:
    """``a.b[0].c`` as ``["a", "b", 0, "c"]``; ``None`` for anything else."""
    kind = node["type"]
    if kind == "field":
        return [node["value"]]
    if kind == "index":
        return [node["value"]]
    if kind in ("subexpression", "index_expression"):
        steps: list[str | int] = []
        for child in node["children"]:
            part = _chain_steps(child)
            if part is None:
                return None
            steps += part
        return steps
    return None


def _generated_token(text: str) -> Render:
    """What-if: a token as one generated function of plain subscripts, where it is simple.

    Two shapes: a field/index chain (``a.b[0].c``) and a projection of a chain onto fields
    (``a.b[].{k: f, ...}``). Whenever a step does not apply (missing key, wrong type, an item
    that is not an object) the function falls back to the relay's compiled expression for the
    exact JMESPath result, so results never differ; only the common path is new.
    """
    expression = compiled.compile(text)
    parsed = expression.parsed
    fields: list[tuple[str, str]] | None = None
    if parsed["type"] == "projection":
        base, each = parsed["children"]
        pairs = each["children"] if each["type"] == "multi_select_dict" else []
        if (
            base["type"] == "flatten"
            and pairs
            and all(pair["children"][0]["type"] == "field" for pair in pairs)
        ):
            fields = [(pair["value"], pair["children"][0]["value"]) for pair in pairs]
            parsed = base["children"][0]
        else:
            return expression.search
    steps = _chain_steps(parsed)
    if steps is None:
        return expression.search
    lines = ["def token(event):", "    value = event", "    try:"]
    for step in steps:
        if isinstance(step, int):  # "abc"[0] is "a" in Python, null in JMESPath
            lines.append("        if type(value) is not list: return exact(event)")
        lines.append(f"        value = value[{step!r}]")
    if fields is not None:
        keys = ", ".join(f"{key!r}: item.get({name!r})" for key, name in fields)
        lines += [
            "        if type(value) is not list: return exact(event)",
            "        for item in value:",
            "            if type(item) is not dict: return exact(event)",
            f"        return [{{{keys}}} for item in value]",
        ]
    else:
        lines.append("        return value")
    lines += ["    except (KeyError, IndexError, TypeError):", "        return exact(event)"]
    namespace: dict[str, Any] = {"exact": expression.search}
    exec("\n".join(lines), namespace)
    token: Render = namespace["token"]
    return token


def compile_what_if(node: Any) -> Render:
    """What-if renderer: generated chains, and literal fields copied in one step, not called."""
    if isinstance(node, dict):
        literals = {
            key: value
            for key, value in node.items()
            if (isinstance(value, str) and "{{" not in value) or isinstance(value, bool | int | float)
        }
        fields = [(k, compile_what_if(v)) for k, v in node.items() if k not in literals]

        def render_object(event: Any) -> dict[str, Any]:
            out = dict(literals)
            for key, render in fields:
                value = render(event)
                if value is not None:
                    out[key] = value
            return out

        return render_object
    if isinstance(node, list):
        items = [compile_what_if(value) for value in node]
        return lambda event: [value for value in (render(event) for render in items) if value is not None]
    if isinstance(node, str) and "{{" in node:
        return _generated_token(node.strip()[2:-2].strip())
    return lambda _event: node


def breakdown(
    mapping: Mapping, body: Any, reference: Render, event: Any, repeats: int, block_ms: float
) -> None:
    """The compiled render in layers, then cProfile of it."""
    expressions = list(tokens(body))
    bare = [compiled.compile(text) for text in expressions]
    wrapped = [Expression(text) for text in expressions]

    def evaluator_only(event: Any) -> None:
        for expression in bare:
            expression.search(event)

    def relay_expressions(event: Any) -> None:
        for expression in wrapped:
            expression.search(event)

    what_if = compile_what_if(body)
    if orjson.dumps(what_if(event)) != orjson.dumps(mapping.render(event)):  # same keys, same order
        raise BenchError("the what-if renderer renders a different body")

    layers: dict[str, Render] = {
        "reference renderer (for the ratio column)": reference,
        f"{len(bare)} tokens, app.mapping.compiled .search only": evaluator_only,
        f"{len(bare)} tokens, + Expression.search (relay error wrapper)": relay_expressions,
        "whole Mapping.render (+ templates: literals, objects, null filter)": mapping.render,
        "what-if: generated chains/projection + literals copied (not the relay)": what_if,
        "dict floor": render_by_hand,
    }
    timers = {name: (lambda n, r=render: time_block(r, event, n)) for name, render in layers.items()}
    samples, _ = run(timers, repeats, block_ms, warmup_s=0.5)
    print("\nCompiled render in layers (us per event median, min; reference / layer, per-repeat median):")
    reference_name = next(iter(layers))
    for name, values in samples.items():
        times = ratio(samples, reference_name, name)[0]
        print(f"  {statistics.median(values):7.2f} {min(values):7.2f} {times:6.2f}x  {name}")
    print("  per-token evaluator cost (min us):")
    for text, expression in zip(expressions, bare, strict=True):
        per = min(time_block(expression.search, event, 20000) for _ in range(3)) / 20000 / 1000
        print(f"    {per:5.2f}  {text}")

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(50_000):
        mapping.render(event)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(14)
    print("\ncProfile of 50,000 compiled renders (tottime order; cProfile inflates per-call costs):")
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    print("\n".join(line.replace(str(ROOT) + "/", "") for line in lines[start:] if line.strip()))


# -- main ------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pin(args: argparse.Namespace) -> int | None:
    if args.no_pin or not hasattr(os, "sched_setaffinity"):
        return None
    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed blocks per renderer (default 21)")
    parser.add_argument("--block-ms", type=float, default=100, help="length of one timed block (100)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up in Python (1)")
    parser.add_argument("--segment-warmup", type=int, default=100_000, help="transforms before timing")
    parser.add_argument("--core", type=int, help="core to pin to (default: the last one allowed)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one core")
    parser.add_argument("--no-segment", action="store_true", help="skip Segment's mapping-kit")
    parser.add_argument("--profile", action="store_true", help="also show where the compiled time goes")
    parser.add_argument("--json", type=Path, help="write the raw samples here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    core = pin(args)
    event = parse_payload(EVENT_FILE.read_bytes()).events[0]
    mapping = load_relay_mapping()
    body = load_body()
    reference = compile_reference(body)

    expected = mapping.examples[0].expect
    rendered = {
        "reference": reference(event),
        "compiled": mapping.render(event),
        "dict": render_by_hand(event),
    }
    for name, value in rendered.items():
        if value != expected:
            raise BenchError(f"{name} renders {value!r}, the mapping's example expects {expected!r}")

    segment, segment_note = start_segment(args, core)
    if segment is not None:
        segment_body = segment.header["body"]
        print("relay body:  ", json.dumps(rendered["compiled"], separators=(",", ":")))
        print("segment body:", json.dumps(segment_body, separators=(",", ":")))
        if segment_body != rendered["compiled"]:
            segment.close()
            raise BenchError("Segment's mapping-kit renders a different body (above)")
        print("identical bodies (compared as parsed JSON, key order ignored)")

    versions = {name: version(name) for name in ("jmespath", "orjson", "ruamel.yaml")}
    print(f"\nmachine: {os.cpu_count()} CPUs, {cpu_model()}, {platform.platform()}")
    print(f"python {platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if segment is not None:
        seg_versions = ", ".join(f"{k} {v}" for k, v in segment.header["versions"].items())
        print(f"node {segment.header['node']}; {seg_versions}")
    print(
        f"pinning: python to core {core} (sched_setaffinity)"
        + (f", node to core {core} (taskset)" if segment is not None and segment.pinned else "")
        if core is not None
        else "pinning: none"
    )
    print(f"segment: {segment_note or 'on'}")

    timers: dict[str, Callable[[int], int]] = {
        "reference": lambda n: time_block(reference, event, n),
        "compiled": lambda n: time_block(mapping.render, event, n),
        "dict": lambda n: time_block(render_by_hand, event, n),
    }
    if segment is not None:
        timers["segment"] = segment.time_ns
    try:
        samples, counts = run(timers, args.repeats, args.block_ms, args.warmup)
    finally:
        if segment is not None:
            segment.close()

    labels = {
        "reference": "reference (jmespath TreeInterpreter, pre-compiled)",
        "compiled": "compiled (relay Mapping.render)",
        "dict": "dict (hand-written look-ups, floor)",
        "segment": "segment (mapping-kit transform, node)",
    }
    print(f"\n{args.repeats} repeats of ~{args.block_ms:g} ms per renderer, in turn; us per event:")
    print(f"  {'renderer':<52} {'median':>8} {'min':>8} {'max':>8} {'N/block':>8}")
    for name, values in samples.items():
        print(
            f"  {labels[name]:<52} {statistics.median(values):8.2f} {min(values):8.2f} "
            f"{max(values):8.2f} {counts[name]:8d}"
        )
    if segment is not None:
        print(
            f"  (of segment, transform's per-call mapping validation alone: "
            f"{segment.header['validate_ns_per_call'] / 1000:.2f} us)"
        )

    print("\nratios (median of per-repeat ratios [range]):")
    rows = [("reference / compiled", "reference", "compiled", TARGET_VS_REFERENCE)]
    if segment is not None:
        rows.append(("segment / compiled", "segment", "compiled", TARGET_VS_SEGMENT))
    rows.append(("compiled / dict", "compiled", "dict", None))
    for label, slow, fast, target in rows:
        middle, low, high = ratio(samples, slow, fast)
        verdict = (
            "" if target is None else f"  target >= {target:g}x: {'PASS' if middle >= target else 'BELOW'}"
        )
        print(f"  {label:<22} {middle:6.2f}x  [{low:.2f}-{high:.2f}]{verdict}")

    if args.json:
        args.json.write_text(json.dumps({"samples_us": samples, "counts": counts}, indent=2))
    if args.profile:
        breakdown(mapping, body, reference, event, max(5, args.repeats // 2), args.block_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
