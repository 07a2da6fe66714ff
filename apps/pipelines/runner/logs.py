"""A run's log: numbered lines, secret values masked, stored in small batches, published.

Each line becomes a RunLogLine row; rows go to the database in batches (every ``FLUSH_S``,
or 500 lines) and each batch is published to the channel-layer group ``run.<id>``
(``line_json`` is the shape the websocket sends).
"""

from __future__ import annotations

import re
import time
from typing import Any

from django.db.models import Max
from django.utils import timezone

from apps.pipelines import run_services
from apps.pipelines.models import RunLogLine

FLUSH_S = 0.05
MAX_LINE = 8192
# Secret values (and lines of multi-line values) at least this long are masked in the log;
# shorter ones would mask ordinary text (GitLab asks 8 for masked variables; 4 still
# catches PINs and short tokens while leaving words like "on" or "1" alone).
MIN_MASK_LEN = 4
MASK = "***"


class LogWriter:
    """Numbers a run's lines, masks secret values in them, writes them in small batches and
    publishes each batch.

    Masking happens here and only here, before a line is stored or published, so the
    database rows, the log API and the websocket all carry the masked text, for every
    reader; the run's reason is masked with the same ``mask`` (``finish(..., log=log)``).
    Each secret value given to ``mask_secrets`` (and each line of a multi-line value,
    stripped) becomes ``***``; values shorter than ``MIN_MASK_LEN`` are left alone: they
    would mask ordinary text everywhere (a one-character secret would blank every
    occurrence of that character), and the caller says so in the log."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.seq = RunLogLine.objects.filter(run_id=run_id).aggregate(n=Max("seq"))["n"] or 0
        self.pending: list[RunLogLine] = []
        self.step_id: int | None = None
        self.last_flush = time.monotonic()
        self.masked: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def mask_secrets(self, secrets: dict[str, str]) -> list[str]:
        """Mask these values from now on; returns the names of the values too short to mask."""
        short = []
        for name, value in secrets.items():
            # A log line holds no line break: a multi-line value is masked line by line.
            lines = value.splitlines()
            parts = [value, value.strip()] if len(lines) <= 1 else [line.strip() for line in lines]
            usable = {part for part in parts if len(part) >= MIN_MASK_LEN}
            if not usable and value:
                short.append(name)
            self.masked |= usable
        if self.masked:
            # Longest first: where one value contains another, the whole of it is masked.
            alternatives = sorted(self.masked, key=lambda v: (-len(v), v))
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))
        return short

    def mask(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def add(self, text: str, stream: str = "stdout") -> None:
        self.seq += 1
        self.pending.append(
            RunLogLine(
                run_id=self.run_id,
                step_id=self.step_id,
                seq=self.seq,
                ts=timezone.now(),
                stream=stream,
                text=self.mask(text)[:MAX_LINE],  # masked before it is cut: no half secret
            )
        )
        if len(self.pending) >= 500:
            self.flush()

    def system(self, text: str) -> None:
        self.add(text, "system")
        self.flush()

    def maybe_flush(self) -> None:
        if self.pending and time.monotonic() - self.last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        RunLogLine.objects.bulk_create(batch)
        run_services.publish(self.run_id, {"type": "run.lines", "lines": [line_json(line) for line in batch]})


def line_json(line: RunLogLine) -> dict[str, Any]:
    return {"seq": line.seq, "ts": line.ts.isoformat(), "stream": line.stream, "text": line.text, "step": line.step_id}
