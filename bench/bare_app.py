"""The baseline: a hello-world ASGI app served by uvicorn with the flags `manage.py serve` uses.

Run as ``python -m bench.bare_app --port N``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

BODY = b"hello"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    # Read the request body like the gateway does, so both do the same ASGI round trips.
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Same call as apps/core/management/commands/serve.py (an import string, lifespan off).
    uvicorn.run("bench.bare_app:app", host=args.host, port=args.port, lifespan="off", log_level="warning")


if __name__ == "__main__":
    main()
