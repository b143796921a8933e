"""The inbound HTTP side of a real ``aep-relay serve``, driven over raw sockets: credentials
before bodies, the body's deadline, repeated credential headers, signatures over method and
path, and the connection cap."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.signing import sign, sign_body_only
from tests.conftest import EXAMPLES
from tests.e2e.relay_process import RelayProcess

pytestmark = pytest.mark.e2e

TOKEN, ADMIN, SECRET = "inbound-token", "inbound-admin", "inbound-secret"
PURCHASE = (EXAMPLES / "purchase.json").read_bytes()
PROMISED = 1_048_576  # what a stalled caller announces and never sends
BODY_TIMEOUT = 1.0


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the request's head being sent to the answer read

    @property
    def code(self) -> str:
        return str(json.loads(self.body)["code"])


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    folder = tmp_path_factory.mktemp("inbound")
    process = RelayProcess(
        {
            "RELAY_INGEST_TOKENS": TOKEN,
            "RELAY_ADMIN_TOKEN": ADMIN,
            "RELAY_SIGNING_SECRETS": SECRET,
            "RELAY_BODY_TIMEOUT": str(BODY_TIMEOUT),
            "RELAY_SIGNING_BODY_ONLY_UNTIL": "2099-01-01",
            "RELAY_LOG_LEVEL": "warning",
        },
        folder / "relay.log",
    )
    process.start()
    yield process
    process.stop()


def open_request(
    relay: RelayProcess, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""
) -> socket.socket:
    """A connection with the request's head (and ``body``, maybe only its start) sent."""
    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=30)
    head = f"{method} {path} HTTP/1.1\r\nHost: relay\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def read_answer(sock: socket.socket, started: float) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the answer"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body[:length], time.monotonic() - started)


def closed_by_relay(sock: socket.socket, within: float = 3.0) -> bool:
    """True when the relay closes the connection (after its answer) within ``within`` seconds:
    less than the 5 s after which uvicorn closes any idle connection."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def ask(relay: RelayProcess, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
    headers = [*headers, ("Content-Length", str(len(body)))]
    started = time.monotonic()
    with open_request(relay, method, path, headers, body) as sock:
        return read_answer(sock, started)


def healthz_seconds(relay: RelayProcess) -> float:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    return time.monotonic() - started


def stalled(token: str | None = None) -> list[tuple[str, str]]:
    """Headers promising a 1 MB body, with a bearer token when given."""
    headers = [("Content-Length", str(PROMISED)), ("Content-Type", "text/plain")]
    return [*headers, ("Authorization", f"Bearer {token}")] if token else headers


# --------------------------------------------------------------------------- credentials first


def test_forty_stalled_bodies_without_credentials_are_refused_at_once_and_closed(
    relay: RelayProcess,
) -> None:
    sockets = []
    started = time.monotonic()
    for n in range(40):
        path = "/v1/events" if n % 2 else "/v1/events/order-completed"
        sockets.append(open_request(relay, "POST", path, stalled(), b'{"events": ['))
    assert healthz_seconds(relay) < 3.0  # the relay answers others meanwhile (generous: shared machine)
    try:
        answers = [read_answer(sock, started) for sock in sockets]
        assert [(a.status, a.code) for a in answers] == [(401, "unauthorized")] * 40
        # 401, not the deadline's 408: the headers decided; and promptly (generous bound)
        assert max(a.seconds for a in answers) < 5.0
        assert all(a.headers.get("connection") == "close" for a in answers)
        assert all(closed_by_relay(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/v1/preview", None),
        ("/v1/preview/draft", None),
        ("/v1/events", "wrong-token"),
        ("/v1/dead-letters/replay", TOKEN),  # an ingest token is not the admin token
    ],
)
def test_every_route_that_takes_a_body_refuses_before_reading_it(
    relay: RelayProcess, path: str, token: str | None
) -> None:
    started = time.monotonic()
    with open_request(relay, "POST", path, stalled(token), b"{") as sock:
        answer = read_answer(sock, started)
        assert (answer.status, answer.code) == (401, "unauthorized")  # not 408: the headers decided
        assert answer.headers.get("connection") == "close"
        assert closed_by_relay(sock)


def test_a_stale_signature_is_refused_before_the_body(relay: RelayProcess) -> None:
    stamp = str(int(time.time()) - 3600)
    headers = [*stalled(), ("X-Relay-Timestamp", stamp), ("X-Relay-Signature", "sha256=" + "0" * 64)]
    started = time.monotonic()
    with open_request(relay, "POST", "/v1/events", headers, b"{") as sock:
        answer = read_answer(sock, started)
        assert (answer.status, answer.code) == (401, "invalid_signature")  # not 408: before the body
        assert closed_by_relay(sock)


# --------------------------------------------------------------------------- the body's deadline


@pytest.mark.parametrize(
    "path", ["/v1/events", "/v1/events/order-completed", "/v1/preview", "/v1/preview/draft"]
)
def test_a_body_that_stalls_gets_408_after_the_deadline_and_the_connection_closes(
    relay: RelayProcess, path: str
) -> None:
    started = time.monotonic()
    with open_request(relay, "POST", path, stalled(TOKEN), b'{"events": [') as sock:
        answer = read_answer(sock, started)
        assert (answer.status, answer.code) == (408, "request_timeout")
        assert "RELAY_BODY_TIMEOUT" in json.loads(answer.body)["detail"]
        assert BODY_TIMEOUT * 0.9 <= answer.seconds < BODY_TIMEOUT + 5.0
        assert answer.headers.get("connection") == "close"
        assert closed_by_relay(sock)


def test_a_signed_body_that_trickles_gets_408_too(relay: RelayProcess) -> None:
    stamp = str(int(time.time()))
    signature = sign(SECRET, stamp, PURCHASE, method="POST", path="/v1/events")
    headers = [*stalled(), ("X-Relay-Timestamp", stamp), ("X-Relay-Signature", signature)]
    started = time.monotonic()
    with open_request(relay, "POST", "/v1/events", headers, PURCHASE[:10]) as sock:
        for byte in PURCHASE[10:100]:  # a byte every 0.1 s: alive, never done, until answered
            if select.select([sock], [], [], 0.1)[0]:
                break
            sock.sendall(bytes([byte]))
        answer = read_answer(sock, started)
        assert (answer.status, answer.code) == (408, "request_timeout")
        assert answer.seconds < BODY_TIMEOUT + 5.0
        assert closed_by_relay(sock)


def test_a_body_read_in_full_keeps_the_connection_for_the_next_request(relay: RelayProcess) -> None:
    headers = [("Authorization", f"Bearer {TOKEN}"), ("Content-Length", str(len(PURCHASE)))]
    with open_request(relay, "POST", "/v1/events", headers, PURCHASE) as sock:
        first = read_answer(sock, time.monotonic())
        assert first.status == 200, first.body
        assert "connection" not in first.headers
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
        assert read_answer(sock, time.monotonic()).status == 200


# --------------------------------------------------------------------------- repeated headers


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", "/v1/events", [("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer other")]),
        ("POST", "/v1/events", [("Authorization", "Bearer other"), ("Authorization", f"Bearer {TOKEN}")]),
        ("POST", "/v1/preview", [("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer other")]),
        ("GET", "/v1/mappings", [("Authorization", f"Bearer {TOKEN}"), ("Authorization", f"Bearer {TOKEN}")]),
        ("POST", "/v1/events", [("X-Relay-Timestamp", "1"), ("X-Relay-Timestamp", "2")]),
        ("POST", "/v1/events", [("X-Relay-Signature", "sha256=0"), ("X-Relay-Signature", "sha256=1")]),
        (
            "POST",
            "/v1/preview",
            [("Authorization", f"Bearer {TOKEN}"), ("X-Relay-Key", "a"), ("X-Relay-Key", "b")],
        ),
    ],
    ids=[
        "auth-good-first",
        "auth-good-last",
        "auth-preview",
        "auth-get",
        "timestamp",
        "signature",
        "any-x-relay",
    ],
)
def test_a_repeated_credential_header_is_refused(
    relay: RelayProcess, method: str, path: str, headers: list[tuple[str, str]]
) -> None:
    answer = ask(relay, method, path, [*headers, ("X-Request-Id", "repeated-1")], PURCHASE)
    assert (answer.status, answer.code) == (400, "invalid_request")
    assert "once" in json.loads(answer.body)["detail"]
    assert answer.headers["x-request-id"] == "repeated-1"


# --------------------------------------------------------------------------- signatures


def signed(stamp: str, signature: str) -> list[tuple[str, str]]:
    return [("X-Relay-Timestamp", stamp), ("X-Relay-Signature", signature)]


def purchase(test: int) -> bytes:
    """The purchase with a few trailing spaces: each test signs its own body, so that two tests
    in the same second do not make the same signature (the second would be a replay)."""
    return PURCHASE + b" " * test


def test_a_signature_over_method_and_path_lets_the_request_in(relay: RelayProcess) -> None:
    for offset, path in enumerate(["/v1/events", "/v1/events/order-completed", "/v1/preview"]):
        stamp = str(int(time.time()) - offset)
        answer = ask(
            relay,
            "POST",
            path,
            signed(stamp, sign(SECRET, stamp, purchase(1), method="POST", path=path)),
            purchase(1),
        )
        assert answer.status == 200, answer.body


def test_a_signature_made_for_another_path_is_refused(relay: RelayProcess) -> None:
    stamp = str(int(time.time()))
    for signed_path, sent_path in [
        ("/v1/preview", "/v1/events"),
        ("/v1/events", "/v1/events/order-completed"),
    ]:
        signature = sign(SECRET, stamp, purchase(2), method="POST", path=signed_path)
        answer = ask(relay, "POST", sent_path, signed(stamp, signature), purchase(2))
        assert (answer.status, answer.code) == (401, "invalid_signature")
        assert "method, path and body" in json.loads(answer.body)["detail"]
        # the same signature is good where it was meant to go (a refusal is not remembered)
        assert ask(relay, "POST", signed_path, signed(stamp, signature), purchase(2)).status == 200


def test_the_body_only_signature_is_still_accepted_and_counted(relay: RelayProcess) -> None:
    stamp = str(int(time.time()) - 10)
    answer = ask(
        relay, "POST", "/v1/events", signed(stamp, sign_body_only(SECRET, stamp, purchase(3))), purchase(3)
    )
    assert answer.status == 200, answer.body
    metrics = ask(relay, "GET", "/metrics", [], b"").body.decode()
    assert 'aep_relay_signatures_accepted_total{form="body_only"} 1.0' in metrics
    assert "body_only_signature" in relay.logs()


# --------------------------------------------------------------------------- the connection cap


def test_past_relay_max_connections_new_requests_get_503_until_some_close(tmp_path: Path) -> None:
    capped = RelayProcess(
        {"RELAY_INGEST_TOKENS": TOKEN, "RELAY_MAX_CONNECTIONS": "4"}, tmp_path / "relay.log"
    )
    capped.start()
    try:
        idle = [socket.create_connection(("127.0.0.1", capped.port), timeout=10) for _ in range(4)]
        try:
            time.sleep(0.5)  # let the relay accept them all
            answer = ask(capped, "GET", "/healthz", [], b"")
            assert answer.status == 503
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 10
        while not capped.healthy():
            assert time.monotonic() < deadline, "the relay did not take requests again"
            time.sleep(0.1)
    finally:
        capped.stop()
