"""Hostile drafts against a real ``aep-relay serve``: each is refused or stopped in the draft
worker, while ``/healthz`` keeps answering and the relay's own memory stays put."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLES, ZENDESK_MAPPINGS
from tests.e2e.loop_probe import LoopProbe
from tests.e2e.relay_process import RelayProcess

pytestmark = pytest.mark.e2e

TOKEN = "hostile-drafts-token"
PURCHASE = json.loads((EXAMPLES / "purchase.json").read_bytes())
ORDER_TEXT = (ZENDESK_MAPPINGS / "zendesk-order-completed.yaml").read_text()
WORST_WAIT = 0.5  # seconds a /healthz probe may wait: generous, the machine is shared
RSS_GROWTH_MIB = 50  # the relay process may grow by during one attack
# RELAY_DRAFT_TIMEOUT of the relay under test: twice the default, so that the refusals that
# take a fraction of a second alone still beat it on a starved machine
DRAFT_TIMEOUT = 6.0


def probing(relay: RelayProcess) -> LoopProbe:
    assert relay.process is not None
    return LoopProbe(relay.port, relay.process.pid)


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (zombies included)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    folder = tmp_path_factory.mktemp("hostile-drafts")
    served = RelayProcess(
        {"RELAY_INGEST_TOKENS": TOKEN, "RELAY_DRAFT_TIMEOUT": str(DRAFT_TIMEOUT)}, folder / "relay.log"
    )
    served.start()
    try:
        assert post_draft(served, ORDER_TEXT).status_code == 200  # the worker is started once, here
        yield served
    finally:
        served.stop()


def post_draft(relay: RelayProcess, mapping: str, payload: Any = PURCHASE) -> httpx.Response:
    body = json.dumps({"mapping": mapping, "payload": payload})
    return post_body(relay, body.encode())


def post_body(relay: RelayProcess, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{relay.url}/v1/preview/draft",
        content=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=120,
    )


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = response.json()
    assert doc["code"] == code, doc
    return doc


def assert_unharmed(relay: RelayProcess, probe: LoopProbe) -> None:
    """The loop answered throughout, the relay did not grow, and drafts still preview."""
    assert probe.failures == 0, f"{probe.failures} /healthz probes failed"
    assert probe.answered >= 2
    assert probe.worst < WORST_WAIT, f"/healthz waited {probe.worst:.2f} s"
    assert probe.growth_mib < RSS_GROWTH_MIB, f"the relay grew by {probe.growth_mib:.0f} MiB"
    valid = post_draft(relay, ORDER_TEXT)
    assert valid.status_code == 200, valid.text
    assert valid.json()["results"][0]["status"] == "dry_run"


def doubling(stages: int) -> str:
    """A mapping whose body is the event doubled ``stages`` times (2**stages copies)."""
    expression = "[@]" + " | [@, @][]" * stages
    return f'destination: zendesk\nbody: {{event: "{{{{ {expression} }}}}"}}\n'


# -- work that grows faster than the draft: stopped in the worker ----------------------------------


@pytest.mark.parametrize(
    ("stages", "reason"),
    [(14, "The preview would be"), (24, "needed more memory than RELAY_DRAFT_MEMORY_BYTES")],
)
def test_an_expression_doubling_a_list_is_stopped_by_a_limit_of_the_worker(
    relay: RelayProcess, stages: int, reason: str
) -> None:
    # 14 stages: a 24 MB answer, over the answer limit; 24 stages would need gigabytes
    with probing(relay) as probe:
        response = post_draft(relay, doubling(stages))
    assert reason in problem(response, 422, "draft_too_costly")["detail"]
    assert_unharmed(relay, probe)


def test_a_draft_that_computes_too_long_is_ended_at_the_timeout_and_its_worker_replaced(
    relay: RelayProcess,
) -> None:
    assert relay.process is not None
    workers = children(relay.process.pid)
    # the event written out 2M times, one at a time: about 20 s of CPU in 16 MB
    largest = "max_by([@]" + " | [@, @][]" * 21 + ", &length(to_string(@)))"
    mapping = f'destination: zendesk\nbody: {{event: "{{{{ length({largest}) }}}}"}}\n'
    with probing(relay) as probe:
        started = time.monotonic()
        response = post_draft(relay, mapping)
        took = time.monotonic() - started
    assert "RELAY_DRAFT_TIMEOUT" in problem(response, 422, "draft_too_costly")["detail"]
    assert DRAFT_TIMEOUT <= took < DRAFT_TIMEOUT + 10
    assert_unharmed(relay, probe)
    # the ended worker was reaped (no zombie left) and another one answered
    assert len(workers) == 1
    assert not any(Path(f"/proc/{worker}").exists() for worker in workers)
    assert len(children(relay.process.pid)) == 1


def test_a_template_with_thousands_of_closing_braces_is_refused_at_once(relay: RelayProcess) -> None:
    # every `}}` used to be tried as the token's end with a compile: 2.2 s for 2000, hours at 1 MB
    template = "{{ [" + " a }}" * 40_000
    with probing(relay) as probe:
        started = time.monotonic()
        response = post_draft(relay, f'destination: zendesk\nbody: {{event: "{template}"}}\n')
        took = time.monotonic() - started
    assert "invalid JMESPath" in problem(response, 422, "mapping_invalid")["detail"]
    assert took < DRAFT_TIMEOUT
    assert_unharmed(relay, probe)


# -- YAML that expands or is not plain: refused with its line -------------------------------------


def test_aliases_of_plain_values_are_refused_before_they_expand(relay: RelayProcess) -> None:
    # 106 KB that answered 50 MB: one 100 KB string, named 500 times
    aliases = ", ".join(["*s"] * 500)
    mapping = f"destination: zendesk\nbody:\n  a: &s {'x' * 100_000}\n  l: [{aliases}]\n"
    with probing(relay) as probe:
        response = post_draft(relay, mapping)
    [error] = problem(response, 422, "mapping_invalid")["errors"]
    assert (error["line"], error["reason"]) == (3, "anchors and aliases (&, *) are not allowed")
    assert_unharmed(relay, probe)


@pytest.mark.parametrize(
    ("value", "tag"),
    [("!!binary aGVsbG8=", "!!binary"), ("!!set {a, b}", "!!set"), ("!custom x", "!custom")],
)
def test_yaml_tags_are_refused_with_their_line(relay: RelayProcess, value: str, tag: str) -> None:
    response = post_draft(relay, f"destination: zendesk\nbody:\n  event: {value}\n")
    [error] = problem(response, 422, "mapping_invalid")["errors"]
    assert error["line"] == 3
    assert f"`{tag}`" in error["reason"]


# -- numbers and nesting past what the parsers take: a 4xx, not a 500 -----------------------------


def test_an_index_of_5000_digits_is_a_mapping_problem(relay: RelayProcess) -> None:
    response = post_draft(relay, 'destination: zendesk\nbody: {event: "{{ foo[' + "9" * 5000 + '] }}"}\n')
    assert "a number is too long" in problem(response, 422, "mapping_invalid")["detail"]


def test_a_payload_nested_1000_deep_is_refused_as_ingest_refuses_it(relay: RelayProcess) -> None:
    nested = '{"a": ' * 1000 + "1" + "}" * 1000
    payload = '{"xdm": {"eventType": "commerce.purchases", "n": ' + nested + "}}"
    mapping = json.dumps('destination: zendesk\nbody: {event: "{{ @ }}"}\n')
    with probing(relay) as probe:
        response = post_body(relay, f'{{"mapping": {mapping}, "payload": {payload}}}'.encode())
    assert "RELAY_MAX_JSON_DEPTH" in problem(response, 400, "json_too_deep")["detail"]
    assert_unharmed(relay, probe)


# -- the worker's life is the relay's ------------------------------------------------------------


def test_the_draft_worker_stops_with_the_relay(tmp_path: Path) -> None:
    relay = RelayProcess({"RELAY_INGEST_TOKENS": TOKEN}, tmp_path / "relay.log")
    relay.start()
    try:
        assert relay.process is not None
        assert children(relay.process.pid) == set()  # started by the first draft, not before
        assert post_draft(relay, ORDER_TEXT).status_code == 200
        [worker] = children(relay.process.pid)
    finally:
        assert relay.stop() in (0, -15)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{worker}").exists(), "the draft worker outlived the relay"
