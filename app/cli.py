"""The ``aep-relay`` command line: serve, check and test mappings, render a payload, send."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import orjson
import typer

from app.destinations.base import Destination
from app.mapping.examples import run_examples
from app.mapping.loader import (
    Mapping,
    MappingLoadError,
    MappingSet,
    load_mapping_file,
    load_mappings,
)
from app.payloads import parse_payload
from app.pipeline import REJECTED, as_preview, plan
from app.problems import Problem
from app.relay import build_destinations
from app.settings import ConfigError, Settings

cli = typer.Typer(help="aep-relay: Adobe event forwarding -> Zendesk events.", no_args_is_help=True)
mappings_cli = typer.Typer(help="Check, test and try mapping files.", no_args_is_help=True)
cli.add_typer(mappings_cli, name="mappings")

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

    settings = _settings()
    configure_logging(settings.relay_log_level, settings.relay_log_format, settings.secret_values())
    try:
        app = create_app(settings)
    except (ConfigError, MappingLoadError) as exc:
        _fail(f"aep-relay cannot start:\n{exc}")
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", server_header=False)


@mappings_cli.command("check")
def mappings_check(directory: DirArg = None) -> None:
    """Load and compile every mapping and run its examples; exit 1 on any problem."""
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
    if any(o.status == REJECTED for o in outcomes):
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


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        _fail(f"invalid configuration: {exc}")


def _destinations(settings: Settings) -> dict[str, Destination]:
    try:
        return build_destinations(settings)
    except ConfigError as exc:
        _fail(str(exc))


def _load(directory: Path | None) -> tuple[MappingSet, dict[str, Destination]]:
    settings = _settings()
    destinations = _destinations(settings)
    endpoints = {name: d.endpoints for name, d in destinations.items()}
    try:
        mappings = load_mappings(directory or settings.relay_mappings_dir, endpoints)
    except MappingLoadError as exc:
        _fail(str(exc))
    return mappings, destinations


def _find_mapping(name: str, settings: Settings, destinations: dict[str, Destination]) -> Mapping:
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
