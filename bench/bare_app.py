"""Baseline for ``bench/ingest.py``: the cheapest FastAPI ingest route.

One ``POST /v1/events`` that reads the raw body, parses it with orjson and answers ``202``
with ``{"status": "accepted"}``; served by uvicorn with the relay's settings (one worker, no
access log, log level warning, no ``server`` header). Everything the relay does beyond this
(auth, request ids, logging, matching, rendering, validation, the durable store) is what the
benchmark's ratio measures.

    python bench/bare_app.py --port 8081
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response

app = FastAPI(title="bare ingest baseline")


@app.post("/v1/events")
async def ingest(request: Request) -> Response:
    """Parse the body as JSON (whatever the Content-Type) and accept it."""
    orjson.loads(await request.body())
    return Response(orjson.dumps({"status": "accepted"}), status_code=202, media_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    # the same uvicorn.run arguments as `aep-relay serve` (app/cli.py) but `proxy_headers=False`:
    # a plain FastAPI app on uvicorn's defaults
    uvicorn.run(
        app, host=args.host, port=args.port, access_log=False, log_level="warning", server_header=False
    )


if __name__ == "__main__":
    main()
