"""The fallback load generator when `wrk` is missing: an asyncio HTTP/1.1 client with C
keep-alive connections, run as its own process. Prints one JSON object.

``python -m bench.loadgen --port N --path /x -c 16 -d 5``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time


async def worker(
    port: int, request: bytes, stop_at: list[float], counts: dict[str, int], latencies: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at[0]:
            begin = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - begin) * 1000)
            key = "ok" if head.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")) else "non_2xx"
            counts[key] += 1
    finally:
        writer.close()


async def run(port: int, path: str, connections: int, duration: float) -> dict[str, object]:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    counts = {"ok": 0, "non_2xx": 0}
    latencies: list[float] = []
    begin = time.perf_counter()
    stop_at = [begin + duration]  # SIGINT ends the run early (bench.throughput.stop)
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, lambda: stop_at.__setitem__(0, 0.0))
    await asyncio.gather(*(worker(port, request, stop_at, counts, latencies) for _ in range(connections)))
    elapsed = time.perf_counter() - begin
    latencies.sort()
    return {
        "requests": counts["ok"] + counts["non_2xx"],
        "non_2xx": counts["non_2xx"],
        "rps": (counts["ok"] + counts["non_2xx"]) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.port, args.path, args.connections, args.duration))))


if __name__ == "__main__":
    main()
