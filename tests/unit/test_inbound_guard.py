"""InboundGuard (app/api/inbound.py) on its own, on a real event loop: the body's deadline,
what it leaves alone, and which answers close the connection. Against a served relay:
tests/e2e/test_inbound_limits.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from app.api.inbound import InboundGuard, scan
from app.problems import Problem

BODY_HEADERS = [(b"content-length", b"10"), (b"authorization", b"Bearer t")]


def scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "POST", "path": "/v1/events", "headers": headers, "state": {}}


class Caller:
    """The client side: body messages it has sent, and the answer's messages."""

    def __init__(self, *chunks: bytes, then_stall: bool = False) -> None:
        self.messages: list[Message] = [
            {"type": "http.request", "body": c, "more_body": then_stall or n < len(chunks) - 1}
            for n, c in enumerate(chunks)
        ]
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.messages:
            return self.messages.pop(0)
        await asyncio.Event().wait()  # a caller that stalls
        raise AssertionError("not reached")

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])


async def read_then_answer(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    await answer(send)


async def answer_at_once(scope: Scope, receive: Receive, send: Send) -> None:
    await answer(send)


async def answer(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_stalled_body_raises_request_timeout_out_of_receive_after_the_deadline() -> None:
    guard = InboundGuard(read_then_answer, body_timeout=0.3)
    caller = Caller(b"{", then_stall=True)
    started = time.monotonic()
    with pytest.raises(Problem) as caught:
        run(guard(scope(BODY_HEADERS), caller.receive, caller.send))
    assert caught.value.code == "request_timeout"
    assert caught.value.status == 408
    assert 0.25 <= time.monotonic() - started < 2.0  # within a sweep (0.075 s) of the deadline


def test_a_complete_body_keeps_the_connection_and_later_receives_have_no_deadline() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await read_then_answer(scope, receive, send)
        # after the answer, a wait for the caller's disconnect is not the body's business
        await asyncio.wait_for(receive(), 0.5)

    guard = InboundGuard(app, body_timeout=0.1)
    caller = Caller(b"{}")
    with pytest.raises(TimeoutError):  # wait_for's own timeout, not the guard's request_timeout
        run(guard(scope(BODY_HEADERS), caller.receive, caller.send))
    assert b"connection" not in caller.headers()


def test_an_answer_before_the_body_closes_the_connection() -> None:
    caller = Caller(b"{", then_stall=True)
    run(InboundGuard(answer_at_once, body_timeout=5)(scope(BODY_HEADERS), caller.receive, caller.send))
    assert caller.headers()[b"connection"] == b"close"


def test_without_a_body_nothing_is_wrapped_or_closed() -> None:
    caller = Caller()
    headers = [(b"content-length", b"0"), (b"authorization", b"Bearer t")]
    run(InboundGuard(answer_at_once, body_timeout=5)(scope(headers), caller.receive, caller.send))
    assert b"connection" not in caller.headers()


def test_someone_elses_cancellation_stays_a_cancellation() -> None:
    async def main() -> None:
        guard = InboundGuard(read_then_answer, body_timeout=0.2)
        caller = Caller(b"{", then_stall=True)
        task = asyncio.create_task(guard(scope(BODY_HEADERS), caller.receive, caller.send))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_many_bodies_each_meet_their_deadline() -> None:
    async def main() -> list[object]:
        guard = InboundGuard(read_then_answer, body_timeout=0.3)
        callers = [Caller(b"{", then_stall=n % 2 == 0) for n in range(50)]
        return await asyncio.gather(
            *(guard(scope(BODY_HEADERS), c.receive, c.send) for c in callers), return_exceptions=True
        )

    results = run(main())
    assert [isinstance(r, Problem) and r.code == "request_timeout" for r in results] == [
        n % 2 == 0 for n in range(50)
    ]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"a"), (b"authorization", b"b")], ("authorization", False)),
        (
            [(b"x-relay-signature", b"a"), (b"content-length", b"5"), (b"x-relay-signature", b"a")],
            ("x-relay-signature", True),
        ),
        ([(b"accept", b"a"), (b"accept", b"b"), (b"transfer-encoding", b"chunked")], (None, True)),
        (
            [(b"x-relay-timestamp", b"1"), (b"x-relay-signature", b"a"), (b"content-length", b"0")],
            (None, False),
        ),
    ],
)
def test_scan_finds_repeated_credentials_and_announced_bodies(
    headers: list[tuple[bytes, bytes]], expected: tuple[str | None, bool]
) -> None:
    assert scan(headers) == expected
