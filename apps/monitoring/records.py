"""What the execution engine hands to the monitoring app (see sink.RecordSink).

Plain frozen dataclasses: the engine builds them in its own thread (and asyncio loop) and
never imports a model; the sink turns them into rows in batches, off the hot path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class LogRecord:
    function_id: int
    environment_id: int
    binding_id: int | None
    version: int
    request_id: str  # "" for lines outside any request (import time)
    ts: datetime  # aware UTC
    stream: str  # "stdout" | "stderr" | "system" (platform lines like START/END/REPORT, timeouts)
    text: str


@dataclass(frozen=True)
class InvocationRecord:
    request_id: str
    function_id: int
    environment_id: int
    binding_id: int | None
    version: int
    trigger: str  # "http" (gateway) | "invoke" (the invoke API)
    started_at: datetime
    duration_ms: float
    init_duration_ms: float | None  # set when this request paid a cold start
    cold_start: bool
    status: str  # "ok" | "error" | "timeout" | "throttled" | "crashed"
    error_type: str  # "" when ok
    peak_rss_kb: int | None
    # Requests in flight in the engine's pool when this one was admitted (itself included) or
    # refused; None from engines (and journals) that predate it.
    concurrency: int | None = None
