"""The ``aep-relay`` command line: serve, check and test mappings, render a payload, send,
trace an event and erase a person (on a running relay), and list, show, replay or purge dead
letters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from urllib.parse import quote

import orjson
import typer

from app.delivery import open_store
from app.delivery.sqlite import sqlite_path
from app.delivery.store import DeadLetterFilter, Delivery, Store, StoreUnavailable
from app.settings import ConfigError, Settings
from app.status import DeliveryStatus, ResultStatus

# The serving and mapping machinery (FastAPI, the destinations' HTTP clients, the compiler) is
# imported by the commands that use it, so that `dlq` and `--help` start in a fraction of the time.
if TYPE_CHECKING:
    from app.destinations.base import Destination
    from app.mapping.loader import Mapping, MappingSet

cli = typer.Typer(help="aep-relay: Adobe event forwarding -> Zendesk events.", no_args_is_help=True)
mappings_cli = typer.Typer(help="Check, test and try mapping files.", no_args_is_help=True)
cli.add_typer(mappings_cli, name="mappings")
dlq_cli = typer.Typer(
    help="List, show, replay and purge dead letters in the RELAY_STORE store "
    "(works whether or not the relay is running).",
    no_args_is_help=True,
)
cli.add_typer(dlq_cli, name="dlq")

T = TypeVar("T")
KEEP_ALIVE_SECONDS = 5  # uvicorn's default, stated: docs/operations.md builds on it

DirArg = Annotated[Path | None, typer.Argument(help="Mappings folder (default RELAY_MAPPINGS_DIR)")]


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
) -> None:
    """Serve the relay with uvicorn (configuration from the environment)."""
    import uvicorn

    from app.api.app import create_app
    from app.logs import configure_logging
    from app.mapping.loader import MappingLoadError

    settings = _settings()
    configure_logging(settings.relay_log_level, settings.relay_log_format, settings.secret_values())
    try:
        app = create_app(settings)
    except (ConfigError, MappingLoadError) as exc:
        _fail(f"aep-relay cannot start:\n{exc}")
    # log_config=None: uvicorn's own lines go through our handler (JSON, redacted)
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        log_config=None,
        server_header=False,
        # the scheme a trusted proxy reports makes redirects absolute with the right scheme
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # Past this many open connections (or requests in flight) uvicorn answers new requests
        # 503 itself, so that stalled clients cannot grow the process without bound.
        limit_concurrency=settings.relay_max_connections,
        # An idle connection is closed after this; a front proxy's keep-alive must be shorter.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


@mappings_cli.command("check")
def mappings_check(directory: DirArg = None) -> None:
    """Load and compile every mapping and run its examples; exit 1 on any problem."""
    from app.mapping.examples import run_examples

    mappings, destinations = _load(directory)
    failures = [r for r in run_examples(mappings, destinations) if not r.passed]
    for failure in failures:
        typer.echo(str(failure.issue()), err=True)
    if failures:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(mappings)} mappings")


@mappings_cli.command("test")
def mappings_test(directory: DirArg = None) -> None:
    """Run every mapping's examples, printing one line each; exit 1 if one fails."""
    from app.mapping.examples import run_examples

    mappings, destinations = _load(directory)
    results = run_examples(mappings, destinations)
    for result in results:
        where = f"{result.mapping.source}:{result.line}"
        if result.passed:
            typer.echo(f"PASS {result.mapping.name} ({where})")
        else:
            typer.echo(f"FAIL {result.mapping.name} ({where}): {result.reason}")
    failed = sum(not r.passed for r in results)
    typer.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@mappings_cli.command("render")
def mappings_render(
    mapping: Annotated[str, typer.Argument(help="Mapping name (in RELAY_MAPPINGS_DIR) or YAML file")],
    payload: Annotated[Path, typer.Argument(help="Adobe payload JSON file", exists=True)],
) -> None:
    """Print the body MAPPING renders for each event of PAYLOAD, and any validation problem."""
    from app.mapping.loader import MappingSet
    from app.payloads import parse_payload
    from app.pipeline import as_preview, plan
    from app.problems import Problem

    settings = _settings()
    destinations = _destinations(settings)
    chosen = _find_mapping(mapping, settings, destinations)
    try:
        events = parse_payload(payload.read_bytes()).events
    except Problem as problem:
        _fail(f"{payload}: {problem.code}: {problem}")
    outcomes = as_preview(plan(events, MappingSet((chosen,)), destinations, only=chosen))
    typer.echo(
        orjson.dumps([o.to_dict(show_request=True) for o in outcomes], option=orjson.OPT_INDENT_2).decode()
    )
    if any(o.status == ResultStatus.REJECTED for o in outcomes):
        raise typer.Exit(1)


@cli.command()
def send(
    payload: Annotated[Path, typer.Argument(help="Adobe payload JSON file", exists=True)],
    url: Annotated[str, typer.Option(help="Relay ingest URL")] = "http://127.0.0.1:8080/v1/events",
    token: Annotated[str | None, typer.Option(envvar="RELAY_TOKEN", help="Ingest bearer token")] = None,
) -> None:
    """Post a payload file to a running relay and print its answer."""
    import httpx

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = httpx.post(url, content=payload.read_bytes(), headers=headers, timeout=35.0)
    typer.echo(f"HTTP {response.status_code}")
    typer.echo(response.text)
    if response.status_code >= 400:
        raise typer.Exit(1)


RelayUrl = Annotated[str, typer.Option(help="The running relay's base URL")]
AdminToken = Annotated[
    str | None, typer.Option(envvar="RELAY_ADMIN_TOKEN", help="The relay's admin token", show_default=False)
]
DEFAULT_RELAY = "http://127.0.0.1:8080"


@cli.command()
def trace(
    event_id: Annotated[str, typer.Argument(help="The Adobe event id (the mapping's event_id)")],
    verify: Annotated[bool, typer.Option("--verify", help="Ask Zendesk whether it holds each one")] = False,
    url: RelayUrl = DEFAULT_RELAY,
    token: AdminToken = None,
) -> None:
    """Print every delivery of one event with its attempts (GET /v1/trace on a running relay)."""
    params = {"verify": "true"} if verify else {}
    _admin_call("GET", f"{url.rstrip('/')}/v1/trace/{quote(event_id, safe='')}", token, params=params)


@cli.command()
def erase(
    identifiers: Annotated[
        list[str],
        typer.Argument(
            help="TYPE:VALUE, e.g. email:jane@example.com or external_id:C-1", metavar="TYPE:VALUE"
        ),
    ],
    url: RelayUrl = DEFAULT_RELAY,
    token: AdminToken = None,
) -> None:
    """Erase a person at Zendesk and in the relay (POST /v1/erasure on a running relay)."""
    parsed = []
    for text in identifiers:
        kind, sep, value = text.partition(":")
        if not (sep and kind and value):
            _fail(f"{text!r} is not TYPE:VALUE")
        parsed.append({"type": kind, "value": value})
    _admin_call("POST", f"{url.rstrip('/')}/v1/erasure", token, body={"identifiers": parsed})


def _admin_call(
    method: str, url: str, token: str | None, *, params: dict[str, str] | None = None, body: Any = None
) -> None:
    """One admin call to a running relay: print the JSON answer; exit 1 on a problem."""
    import httpx

    if not token:
        _fail("set RELAY_ADMIN_TOKEN (or --token) to the relay's admin token")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        response = httpx.request(method, url, params=params, json=body, headers=headers, timeout=120.0)
    except httpx.HTTPError as exc:
        _fail(f"{url}: {exc}")
    try:
        typer.echo(orjson.dumps(response.json(), option=orjson.OPT_INDENT_2).decode())
    except ValueError:
        typer.echo(response.text)
    if response.status_code >= 400:
        raise typer.Exit(1)


# -- dead letters -------------------------------------------------------------------------------

DestinationOpt = Annotated[str | None, typer.Option(help="Only dead letters for this destination")]
MappingOpt = Annotated[str | None, typer.Option(help="Only dead letters of this mapping")]
CodeOpt = Annotated[str | None, typer.Option(help="Only dead letters whose last problem has this code")]
SinceOpt = Annotated[
    str | None, typer.Option(help="Only dead since this ISO-8601 time (no offset: UTC)", metavar="ISO")
]
UntilOpt = Annotated[
    str | None, typer.Option(help="Only dead before this ISO-8601 time (no offset: UTC)", metavar="ISO")
]
IdsArg = Annotated[list[str] | None, typer.Argument(help="Dead-letter ids", metavar="ID", show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Required when no id and no filter is given")]
DETAIL_WIDTH = 60


@dlq_cli.command("list")
def dlq_list(
    destination: DestinationOpt = None,
    mapping: MappingOpt = None,
    code: CodeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """List dead letters, newest first: a table, or JSON lines with --json."""
    where = _dead_filter(destination, mapping, code, since, until, limit=limit)

    async def run(store: Store) -> list[Delivery]:
        return await store.dead_letters(where)

    letters = _with_store(run)
    if as_json:
        for letter in letters:
            typer.echo(orjson.dumps(_dead_doc(letter)).decode())
        return
    if not letters:
        typer.echo("no dead letters")
        return
    rows = [("ID", "DEAD AT", "DESTINATION", "MAPPING", "CODE", "ATTEMPTS", "DETAIL")]
    for letter in letters:
        problem = letter.last_problem or {}
        rows.append(
            (
                letter.id,
                _iso(letter.updated_at),
                letter.destination,
                letter.mapping,
                str(problem.get("code") or "-"),
                str(letter.attempts),
                _trim(str(problem.get("detail") or "")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]).rstrip())


@dlq_cli.command("show")
def dlq_show(delivery_id: Annotated[str, typer.Argument(help="Dead-letter id")]) -> None:
    """Print one dead letter with its body, last problem and upstream answer; exit 1 if none."""

    async def run(store: Store) -> Delivery | None:
        return await store.get(delivery_id)

    letter = _with_store(run)
    if letter is None or letter.status != DeliveryStatus.DEAD:
        typer.echo(f"no dead letter {delivery_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(orjson.dumps(_dead_doc(letter, with_body=True), option=orjson.OPT_INDENT_2).decode())


@dlq_cli.command("replay")
def dlq_replay(
    ids: IdsArg = None,
    destination: DestinationOpt = None,
    mapping: MappingOpt = None,
    code: CodeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    all_: AllOpt = False,
) -> None:
    """Send dead letters again (pending now, attempts reset): by id, by filter, or --all.

    A running relay picks them up within its idle poll (about a second)."""
    _change("replay", "replayed", ids, destination, mapping, code, since, until, all_)


@dlq_cli.command("purge")
def dlq_purge(
    ids: IdsArg = None,
    destination: DestinationOpt = None,
    mapping: MappingOpt = None,
    code: CodeOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    all_: AllOpt = False,
) -> None:
    """Delete dead letters for good: by id, by filter, or --all."""
    _change("purge", "purged", ids, destination, mapping, code, since, until, all_)


def _change(
    action: str,
    done: str,
    ids: list[str] | None,
    destination: str | None,
    mapping: str | None,
    code: str | None,
    since: str | None,
    until: str | None,
    all_: bool,
) -> None:
    """Replay or purge; with neither ids nor filters, only with --all (exit 2 otherwise)."""
    wanted = tuple(dict.fromkeys(ids or ()))
    filtered = any(v is not None for v in (destination, mapping, code, since, until))
    if not wanted and not filtered and not all_:
        _fail(f"dlq {action}: give dead-letter ids or filters, or --all to {action} every dead letter")
    where = _dead_filter(destination, mapping, code, since, until, ids=wanted)

    async def run(store: Store) -> tuple[int, list[str]]:
        missing: list[str] = []
        if wanted:
            found = {d.id for d in await store.dead_letters(replace(where, limit=len(wanted)))}
            missing = [i for i in wanted if i not in found]
        count = await (store.replay(where) if action == "replay" else store.purge(where))
        return count, missing

    count, missing = _with_store(run)
    typer.echo(f"{done} {count}")
    if missing:
        typer.echo(f"no dead letter: {', '.join(missing)}", err=True)
        raise typer.Exit(1)


def _dead_filter(
    destination: str | None,
    mapping: str | None,
    code: str | None,
    since: str | None,
    until: str | None,
    *,
    limit: int = 100,
    ids: tuple[str, ...] = (),
) -> DeadLetterFilter:
    return DeadLetterFilter(
        destination=destination,
        mapping=mapping,
        code=code,
        since=_timestamp(since, "--since"),
        until=_timestamp(until, "--until"),
        ids=ids,
        limit=limit,
    )


def _timestamp(value: str | None, option: str) -> float | None:
    """Epoch seconds of an ISO-8601 date or time; one without an offset is UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        _fail(f"{option}: not an ISO-8601 time: {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _trim(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_WIDTH else text[: DETAIL_WIDTH - 3] + "..."


def _dead_doc(letter: Delivery, *, with_body: bool = False) -> dict[str, Any]:
    return {**letter.to_dict(with_body=with_body), "dead_at": _iso(letter.updated_at)}


def _with_store(action: Callable[[Store], Awaitable[T]]) -> T:
    """Open the RELAY_STORE store, run ``action`` on it, close it (exit 2 when unusable)."""
    settings = _settings()
    url = settings.relay_store
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if path != ":memory:" and not Path(path).is_file():
            _fail(f"no store at {path} (set RELAY_STORE to the relay's store)")
    try:
        store = open_store(settings, owner=False)
    except ConfigError as exc:
        _fail(str(exc))

    async def run() -> T:
        try:
            await store.open()
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (StoreUnavailable, RuntimeError) as exc:
        _fail(f"store {url}: {exc}")


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        _fail(f"invalid configuration: {exc}")


def _destinations(settings: Settings) -> dict[str, Destination]:
    from app.relay import build_destinations

    try:
        return build_destinations(settings)
    except ConfigError as exc:
        _fail(str(exc))


def _load(directory: Path | None) -> tuple[MappingSet, dict[str, Destination]]:
    from app.mapping.loader import MappingLoadError, load_mappings

    settings = _settings()
    destinations = _destinations(settings)
    endpoints = {name: d.endpoints for name, d in destinations.items()}
    try:
        mappings = load_mappings(directory or settings.relay_mappings_dir, endpoints)
    except MappingLoadError as exc:
        _fail(str(exc))
    return mappings, destinations


def _find_mapping(name: str, settings: Settings, destinations: dict[str, Destination]) -> Mapping:
    from app.mapping.loader import MappingLoadError, load_mapping_file, load_mappings

    endpoints = {n: d.endpoints for n, d in destinations.items()}
    path = Path(name)
    try:
        if path.suffix in (".yaml", ".yml") and path.is_file():
            return load_mapping_file(path, endpoints)
        found = load_mappings(settings.relay_mappings_dir, endpoints).get(name)
    except MappingLoadError as exc:
        _fail(str(exc))
    if found is None:
        _fail(f"no mapping named {name!r} in {settings.relay_mappings_dir}")
    return found


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(2)


def main() -> None:
    """Entry point of the ``aep-relay`` script."""
    cli()


if __name__ == "__main__":
    main()
