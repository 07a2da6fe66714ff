"""Throughput at a fixed concurrency, measured by a separate load-generator process: `wrk` when
installed (installed with apt when missing and running as root), else bench/loadgen.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from typing import Any

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_PCT = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)


def find_wrk(install: bool = True) -> str | None:
    path = shutil.which("wrk")
    if path is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(  # noqa: S603 - fixed arguments
            ["apt-get", "install", "-y", "-q", "wrk"],  # noqa: S607 - apt-get from PATH
            capture_output=True,
            timeout=300,
            check=False,
        )
        path = shutil.which("wrk")
    return path


def parse_wrk(output: str) -> dict[str, Any]:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    if rps is None or total is None:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:(.*)$", output, re.MULTILINE)
    pct = {int(p): float(v) * _UNITS[u] for p, v, u in _PCT.findall(output)}
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
        "p50_ms": pct.get(50),
        "p99_ms": pct.get(99),
    }


def measure(wrk: str | None, port: int, path: str, *, connections: int, duration_s: float) -> dict[str, Any]:
    if wrk is not None:
        # One wrk thread drives 16 connections easily and leaves the other core to the server.
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", f"http://127.0.0.1:{port}{path}"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False)  # noqa: S603
        if result.returncode != 0:
            raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr}")
        return parse_wrk(result.stdout)
    cmd = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--path", path]
    cmd += ["-c", str(connections), "-d", str(duration_s)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"bench.loadgen failed ({result.returncode}): {result.stderr}")
    return dict(json.loads(result.stdout))


def start(wrk: str | None, port: int, path: str, *, connections: int, max_s: float = 600) -> subprocess.Popen[str]:
    """The same load in the background, until stop(): to measure something else under it."""
    if wrk is not None:
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{max_s:g}s", "--latency", f"http://127.0.0.1:{port}{path}"]
    else:
        cmd = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--path", path]
        cmd += ["-c", str(connections), "-d", str(max_s)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603


def stop(proc: subprocess.Popen[str], wrk: str | None) -> dict[str, Any]:
    """End a load from start() (SIGINT: both tools print their summary) and parse it."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"the background load failed ({proc.returncode}): {err}")
    return parse_wrk(out) if wrk is not None else dict(json.loads(out))
