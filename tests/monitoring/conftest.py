"""Monitoring fixtures: alpha's function `checkout` in project web, its dev and prod
environments, a sink with no flusher thread (flush() by hand), and record builders."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.functions import services as function_services
from apps.monitoring.records import InvocationRecord, LogRecord
from apps.monitoring.sink import RecordSink
from apps.tenancy.models import Environment


@pytest.fixture
def fn(world: Any) -> Any:
    return function_services.function_create(
        actor=world.alice, project=world.web, name="checkout", runtime="python3.11", handler="main.handler"
    )


@pytest.fixture
def dev(world: Any) -> Environment:
    return Environment.objects.get(project=world.web, name="dev")


@pytest.fixture
def prod(world: Any) -> Environment:
    return Environment.objects.get(project=world.web, name="prod")


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def sink(journal_dir: Path) -> Iterator[RecordSink]:
    sink = RecordSink(flush_interval_s=0, journal_dir=journal_dir)
    yield sink
    sink._journal.release()  # its locks, as a process exit would


def log_record(
    fn: Any,
    env: Any,
    text: str = "hello",
    *,
    ts: datetime | None = None,
    stream: str = "stdout",
    request_id: str = "req-1",
    version: int = 1,
) -> LogRecord:
    return LogRecord(
        function_id=fn.pk if hasattr(fn, "pk") else fn,
        environment_id=env.pk,
        binding_id=None,
        version=version,
        request_id=request_id,
        ts=ts or timezone.now(),
        stream=stream,
        text=text,
    )


def invocation_record(
    fn: Any,
    env: Any,
    *,
    request_id: str = "req-1",
    started_at: datetime | None = None,
    duration_ms: float = 12.5,
    status: str = "ok",
    cold_start: bool = False,
    version: int = 1,
    trigger: str = "invoke",
) -> InvocationRecord:
    return InvocationRecord(
        request_id=request_id,
        function_id=fn.pk,
        environment_id=env.pk,
        binding_id=None,
        version=version,
        trigger=trigger,
        started_at=started_at or timezone.now(),
        duration_ms=duration_ms,
        init_duration_ms=80.0 if cold_start else None,
        cold_start=cold_start,
        status=status,
        error_type="" if status == "ok" else "RuntimeError",
        peak_rss_kb=20480,
    )


def ago(**kwargs: float) -> datetime:
    return timezone.now() - timedelta(**kwargs)
