"""A small load generator for the load tests: posts purchases with unique ids, records acks."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import EXAMPLES

PURCHASE: dict[str, Any] = json.loads((EXAMPLES / "purchase.json").read_text())


def purchase(event_id: str) -> bytes:
    """The example purchase with its own ``xdm._id`` and order id (the fake sees the order id)."""
    body = copy.deepcopy(PURCHASE)
    body["xdm"]["_id"] = event_id
    body["xdm"]["commerce"]["order"]["purchaseID"] = event_id
    return json.dumps(body).encode()


def order_ids(requests: list[Any]) -> list[str]:
    """The order ids the fake Zendesk accepted, in arrival order (with repeats).

    A request cut off by ``kill -9`` has no parsed body; a scripted answer (the flaky modes)
    may still have counted it as accepted, but it carries no event, so it is skipped."""
    return [r.body["event"]["properties"]["order_id"] for r in requests if isinstance(r.body, dict)]


@dataclass
class LoadResult:
    acked: set[str] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)
    refused: int = 0  # connection errors (relay down)
    retry_after: list[str] = field(default_factory=list)


async def post_events(
    url: str | list[str],
    token: str,
    event_ids: list[str],
    *,
    concurrency: int = 16,
    pause: float = 0.0,
    result: LoadResult | None = None,
) -> LoadResult:
    """Post one purchase per id; an id is acked when the relay answered 2xx. With several
    urls (replicas), worker ``n`` posts to ``urls[n % len(urls)]`` and moves to the next one
    (with the event) when its replica does not answer."""
    urls = [url] if isinstance(url, str) else url
    result = result or LoadResult()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for event_id in event_ids:
        queue.put_nowait(event_id)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}

    async def worker(client: httpx.AsyncClient, url: str) -> None:
        while not queue.empty():
            event_id = queue.get_nowait()
            try:
                response = await client.post(url, content=purchase(event_id), headers=headers)
            except httpx.TransportError:
                result.refused += 1
                if len(urls) > 1:  # like a load balancer: try the event on the next replica
                    url = urls[(urls.index(url) + 1) % len(urls)]
                    queue.put_nowait(event_id)
                await asyncio.sleep(0.05)
                continue
            result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
            if 200 <= response.status_code < 300:
                result.acked.add(event_id)
            elif "retry-after" in response.headers:
                result.retry_after.append(response.headers["retry-after"])
            if pause:
                await asyncio.sleep(pause)

    async with httpx.AsyncClient(timeout=30, verify=False) as client:
        await asyncio.gather(*(worker(client, urls[n % len(urls)]) for n in range(concurrency)))
    return result


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
