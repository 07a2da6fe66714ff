"""Live log tail latency: a line printed by a function reaches websocket clients within
50 ms p99 at 200 lines/s with 10 clients watching (issue 16).

A real console (`manage.py serve`, the embedded default) runs a function that prints lines
stamped with time.time(); a load generator invokes it (``--rate`` invocations/s, ``--lines``
lines each) while ``--clients`` websockets watch /ws/functions/{id}/logs/. Each client's
latency is its receive time minus the line's stamp (one machine, one clock).

Baseline, in the same run: the same lines' stamps reaching the caller in the function's own
HTTP answer through the gateway (the synchronous path: the stamps come back as its body). The tail goes
further (engine → records sink → database commit → channel layer → every watcher); the
figure says what that costs over the direct answer.

Prints a table; writes bench-results/logs.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import websockets

from bench.console import Console
from bench.procs import Processes
from bench.run import latency_summary

ROOT = Path(__file__).resolve().parents[1]
TARGET_P99_MS = 50.0

HANDLER = """
import time

def handler(event, context):
    stamps = []
    for i in range(LINES):
        stamps.append("%.6f" % time.time())
        print("tail-bench %s %s" % (stamps[-1], i), flush=True)
    return {"statusCode": 200, "body": " ".join(stamps)}
"""


def stamp(text: str) -> float | None:
    parts = text.split()
    if len(parts) >= 2 and parts[0] == "tail-bench":
        try:
            return float(parts[1])
        except ValueError:
            return None
    return None


async def watch(url: str, samples: list[float], counts: dict[str, int], stop: asyncio.Event) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "backlog", first
        counts["connected"] += 1
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            now = time.time()
            message = json.loads(raw)
            if message["type"] == "dropped":
                counts["dropped"] += int(message["count"])
            elif message["type"] == "lines":
                for line in message["lines"]:
                    printed = stamp(line["text"])
                    if printed is not None:
                        samples.append((now - printed) * 1000)
                        counts["received"] += 1


async def load(base: str, path: str, rate: float, lines: int, seconds: float, direct: list[float]) -> int:
    """Call the function through the gateway at ``rate``/s for ``seconds``; the baseline: the
    lines' stamps (the answer's body) to the answer's arrival."""
    sent = 0
    interval = 1.0 / rate
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def one() -> None:
            response = await client.get(path)
            now = time.time()
            if response.status_code != 200:
                raise RuntimeError(f"{path} -> {response.status_code}: {response.text[:300]}")
            for printed in response.text.split():
                direct.append((now - float(printed)) * 1000)

        tasks = []
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            tasks.append(asyncio.create_task(one()))
            sent += lines
            await asyncio.sleep(max(0.0, start + len(tasks) * interval - time.monotonic()))
        await asyncio.gather(*tasks)
    return sent


async def measure(console: Console, args: argparse.Namespace) -> dict[str, Any]:
    project = console.project("shop")
    fn = console.create_function(project["id"], "tail-bench", runtime="python3.11", handler="main.handler")
    fid = int(fn["id"])
    console.deploy(fid, console.publish(fid, {"main.py": HANDLER.replace("LINES", str(args.lines))}))
    path = f"/fn/{fn['org']}/shop/dev/tail-bench/"
    assert console.http is not None
    deadline = time.monotonic() + 30
    while console.http.get(path).status_code != 200:  # the deploy is applied, the instance warm
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} is not served")
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # the warm-up's lines are written before the clients connect

    ws_url = f"ws://127.0.0.1:{console.port}/ws/functions/{fid}/logs/?token={console.token}&environment=dev&backlog=0"
    samples: list[float] = []
    direct: list[float] = []
    counts = {"connected": 0, "received": 0, "dropped": 0}
    stop = asyncio.Event()
    watchers = [asyncio.create_task(watch(ws_url, samples, counts, stop)) for _ in range(args.clients)]
    while counts["connected"] < args.clients:
        await asyncio.sleep(0.05)
    sent = await load(console.base_url, path, args.rate / args.lines, args.lines, args.seconds, direct)
    deadline = time.monotonic() + 5
    while counts["received"] + counts["dropped"] < sent * args.clients and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*watchers)
    return {"sent_lines": sent, "counts": counts, "tail_ms": samples, "direct_ms": direct}


def table(figs: dict[str, Any]) -> str:
    rows = [
        ("path", "samples", "p50 ms", "p90 ms", "p99 ms", "max ms"),
        ("baseline: the function's HTTP answer", *figs["direct"]),
        (f"live tail: websocket ({figs['clients']} clients)", *figs["tail"]),
    ]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    )


def row(summary: dict[str, float], n: int) -> tuple[Any, ...]:
    return (n, f"{summary['p50']:.1f}", f"{summary['p90']:.1f}", f"{summary['p99']:.1f}", f"{summary['max']:.1f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=200.0, help="lines per second printed")
    p.add_argument("--lines", type=int, default=5, help="lines per invocation")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench-results" / "logs.json")
    return p.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    procs = Processes()
    data_dir = Path(tempfile.mkdtemp(prefix="stratus-bench-logs-", dir="/tmp"))
    console = Console(procs, data_dir)
    try:
        print(f"bench.logs: data dir {data_dir}", flush=True)
        console.start()
        print(
            f"bench.logs: {args.rate:.0f} lines/s ({args.lines} per invoke) for {args.seconds:.0f} s, "
            f"{args.clients} websocket clients",
            flush=True,
        )
        raw = asyncio.run(measure(console, args))
        tail, direct = latency_summary(raw["tail_ms"]), latency_summary(raw["direct_ms"])
        figs = {
            "clients": args.clients,
            "tail": row(tail, len(raw["tail_ms"])),
            "direct": row(direct, len(raw["direct_ms"])),
        }
        expected = raw["sent_lines"] * args.clients
        met = tail["p99"] <= TARGET_P99_MS and raw["counts"]["received"] == expected
        results = {
            "target": {"p99_ms": TARGET_P99_MS, "lines_per_s": args.rate, "clients": args.clients},
            "live_tail_ms": tail,
            "baseline_invoke_answer_ms": direct,
            "lines_sent": raw["sent_lines"],
            "lines_expected_across_clients": expected,
            "lines_received_across_clients": raw["counts"]["received"],
            "lines_dropped_across_clients": raw["counts"]["dropped"],
            "met": met,
            "settings": {k: str(v) for k, v in vars(args).items()},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print()
        print(table(figs))
        print(
            f"\nlines: {raw['counts']['received']} of {expected} received, "
            f"{raw['counts']['dropped']} reported dropped; "
            f"target p99 <= {TARGET_P99_MS:.0f} ms: {'met' if met else 'MISSED'}"
        )
        print(f"wrote {args.out}")
        return 0 if met else 1
    finally:
        console.close()
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
