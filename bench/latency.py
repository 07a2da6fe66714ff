"""Sequential requests on one keep-alive connection (http.client): per-request latency."""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    ms: float


class KeepAlive:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        begin = time.perf_counter()
        self.conn.request("GET", path, headers=headers or {})
        response = self.conn.getresponse()
        body = response.read()
        ms = (time.perf_counter() - begin) * 1000
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, body, ms)

    def close(self) -> None:
        self.conn.close()


def sample(port: int, path: str, *, warmup: int, samples: int, expect: bytes) -> list[float]:
    """Latencies (ms) of ``samples`` sequential GETs after ``warmup`` unmeasured ones."""
    client = KeepAlive(port)
    try:
        out: list[float] = []
        for i in range(warmup + samples):
            response = client.get(path)
            if response.status != 200 or response.body != expect:
                raise RuntimeError(f"GET :{port}{path} -> {response.status} {response.body[:200]!r}")
            if i >= warmup:
                out.append(response.ms)
        return out
    finally:
        client.close()
