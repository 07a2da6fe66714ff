"""Live run logs: ``/ws/runs/{id}/`` (optionally ``?after=<seq>``, and ``?token=stt_...`` or
``Authorization: Bearer stt_...``; a token socket needs no Origin, console/asgi.py).

On connect the caller must see the run's project (session user, or a bearer token with the
read scope), else the socket is closed with 4404 (4401 for a bad token). The consumer joins
the group ``run.<id>`` first, then sends the backlog (lines after ``after``), so nothing
written meanwhile is lost; live lines are forwarded in seq order, never twice: a line at or
below the last sent seq is dropped, and a gap (a message the layer dropped) is filled from
the database. Messages: ``{"type": "lines", "lines": [{seq, ts, stream, text, step}]}`` and
``{"type": "state", "state", "reason", "finished_at"}`` (sent on connect and when it changes).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.core.asgi import websocket_token
from apps.core.errors import DomainError, NotFound
from apps.core.parsers import loads_bounded
from apps.pipelines import run_selectors
from apps.pipelines.run_services import run_group
from apps.pipelines.runner import line_json

BACKLOG_CHUNK = 1000


def _token_user(plaintext: str) -> Any | None:
    from apps.tenancy.authentication import active_token
    from apps.tenancy.models import ApiToken
    from apps.tenancy.token_services import token_hash

    token, _ = active_token(token_hash(plaintext))
    if token is None or ApiToken.Scope.READ not in token.scopes:
        return None
    return token.user


def _authorize(scope: dict[str, Any], run_id: int, token: str) -> tuple[int | None, Any]:
    """(close code or None, the run)."""
    user = scope.get("user")
    if token:
        user = _token_user(token)
        if user is None:
            return 4401, None
    if user is None or not user.is_authenticated:
        return 4404, None
    try:
        return None, run_selectors.run_get(user=user, run_id=run_id)
    except NotFound:
        return 4404, None


def _lines_after(run_id: int, after: int, upto: int | None = None) -> list[dict[str, Any]]:
    from apps.pipelines.models import RunLogLine

    lines = RunLogLine.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")
    if upto is not None:
        lines = lines.filter(seq__lte=upto)
    return [line_json(line) for line in lines[:100000]]


def _state(run_id: int) -> dict[str, Any]:
    from apps.pipelines.models import Run

    row = Run.objects.filter(pk=run_id).values("state", "reason", "finished_at", "number").first()
    run: dict[str, Any] = dict(row) if row else {}
    finished = run.get("finished_at")
    return {
        "type": "state",
        "state": run.get("state"),
        "reason": run.get("reason", ""),
        "number": run.get("number"),
        "finished_at": finished.isoformat() if finished else None,
    }


class RunLogConsumer(AsyncJsonWebsocketConsumer):
    run_id: int
    last_seq: int
    group: str | None = None

    async def connect(self) -> None:
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            self.last_seq = max(0, int(query.get("after", ["0"])[0]))
        except ValueError:
            self.last_seq = 0
        token = websocket_token(self.scope)
        await self.accept()
        code, run = await database_sync_to_async(_authorize)(self.scope, self.run_id, token)
        if code is not None:
            await self.close(code=code)
            return
        self.group = run_group(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)  # first: nothing slips by
        await self._send_from_db()
        await self.send_json(await database_sync_to_async(_state)(self.run_id))

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """What a client sends; ignored (None) when malformed or nested deeper than
        STRATUS_MAX_JSON_DEPTH, instead of a RecursionError in the consumer."""
        try:
            return loads_bounded(text_data)
        except (ValueError, DomainError):
            return None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Clients only listen; {"type": "ping"} answers pong."""
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "last_seq": self.last_seq})

    async def _send_from_db(self, upto: int | None = None) -> None:
        lines = await database_sync_to_async(_lines_after)(self.run_id, self.last_seq, upto)
        await self._send_lines(lines)

    async def _send_lines(self, lines: list[dict[str, Any]]) -> None:
        fresh = []
        for line in lines:
            if line["seq"] == self.last_seq + 1:
                fresh.append(line)
                self.last_seq = line["seq"]
        for start in range(0, len(fresh), BACKLOG_CHUNK):
            await self.send_json({"type": "lines", "lines": fresh[start : start + BACKLOG_CHUNK]})

    # --- group messages ----------------------------------------------------------------

    async def run_lines(self, event: dict[str, Any]) -> None:
        lines = sorted((x for x in event.get("lines", []) if x["seq"] > self.last_seq), key=lambda x: x["seq"])
        if not lines:
            return
        if lines[0]["seq"] > self.last_seq + 1:  # a gap: read what we missed
            await self._send_from_db(upto=lines[0]["seq"] - 1)
        await self._send_lines(lines)

    async def run_state(self, event: dict[str, Any]) -> None:
        # Lines written before the state change are in the database by now.
        await self._send_from_db()
        await self.send_json(
            {k: event.get(k) for k in ("state", "reason", "number", "finished_at")} | {"type": "state"}
        )
