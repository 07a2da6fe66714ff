"""The live log tail over a websocket: ``/ws/functions/{id}/logs/``.

Query: the filters ``environment``, ``version``, ``level``, ``stream``, ``request_id``, ``q``,
``regex`` (see tail.parse_filters), ``backlog=`` (lines, default 200) or ``after=<cursor>``
(resume: every line after it), and for clients without the console's session ``token=`` (or
``Authorization: Bearer``, read scope) or ``ticket=`` (POST /api/v1/functions/{id}/logs/ticket:
single use, 60 s; for browsers and clients that cannot set a header).

Messages are tail.py's (backlog, lines, dropped, error). The client may send
``{"type": "filters", ...filters, "backlog": n}`` (answered by a fresh ``backlog``, or an
``error`` that keeps the previous filters) and ``{"type": "ping"}`` (``pong`` with the cursor).

Close codes: 4400 a bad filter at connect (after an ``error`` message), 4401 a bad token or
ticket, 4404 no such function or not the caller's (nothing else is said), 4410 the function
was deleted (after ``{"type": "closing", "reason": "function_deleted"}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.core.asgi import websocket_token
from apps.core.errors import DomainError, NotFound
from apps.core.parsers import loads_bounded
from apps.monitoring import tail
from apps.monitoring.services import log_control_group_name
from apps.monitoring.tickets import ticket_redeem

logger = logging.getLogger(__name__)


def _token_user(plaintext: str) -> Any | None:
    from apps.tenancy.authentication import active_token
    from apps.tenancy.models import ApiToken
    from apps.tenancy.token_services import token_hash

    token, _ = active_token(token_hash(plaintext))
    if token is None or ApiToken.Scope.READ not in token.scopes:
        return None
    return token.user


def authorize(scope: dict[str, Any], function_id: int, token: str, ticket: str) -> tuple[int | None, Any]:
    """(close code or None, the function) for a session, a token or a ticket."""
    from apps.functions import selectors

    user = scope.get("user")
    if ticket:
        user = ticket_redeem(ticket=ticket, function_id=function_id)
        if user is None:
            return tail.CLOSE_UNAUTHORIZED, None
    elif token:
        user = _token_user(token)
        if user is None:
            return tail.CLOSE_UNAUTHORIZED, None
    if user is None or not user.is_authenticated:
        return tail.CLOSE_NOT_FOUND, None
    try:
        return None, selectors.function_get(user=user, function_id=function_id)
    except NotFound:
        return tail.CLOSE_NOT_FOUND, None


class LogTailConsumer(AsyncJsonWebsocketConsumer):
    log_tail: tail.LogTail | None = None
    _sender: asyncio.Task[None] | None = None
    _joined: str | None = None
    _control: str | None = None

    async def connect(self) -> None:
        function_id = int(self.scope["url_route"]["kwargs"]["function_id"])
        query = {k: v[-1] for k, v in parse_qs(self.scope.get("query_string", b"").decode("latin-1")).items()}
        await self.accept()
        code, function = await database_sync_to_async(authorize)(
            self.scope, function_id, websocket_token(self.scope), query.get("ticket", "")
        )
        if code is not None:
            await self.close(code=code)
            return
        log_tail = tail.LogTail(function_id=function.pk, project_id=function.project_id)
        try:
            filters = tail.parse_filters(
                {k: v for k, v in query.items() if k not in ("after", "backlog", "token", "ticket")},
                allowed=tail.FILTER_KEYS,
            )
            backlog = tail.parse_backlog(query.get("backlog"))
            after = tail.parse_cursor(query.get("after"))
            filters = await log_tail.resolve(filters)
        except tail.FilterError as exc:
            await self.send_json(exc.data())
            await self.close(code=tail.CLOSE_BAD_REQUEST)
            return
        self.log_tail = log_tail
        self._control = log_control_group_name(function_id=function.pk)
        await self.channel_layer.group_add(self._control, self.channel_name)
        await self._join(log_tail.group_for(filters))  # first: nothing committed meanwhile slips by
        await log_tail.start(filters=filters, backlog=backlog, after=after)
        self._sender = asyncio.create_task(self._send_frames(log_tail))

    async def _join(self, group: str) -> None:
        if group == self._joined:
            return
        await self.channel_layer.group_add(group, self.channel_name)
        if self._joined is not None:
            await self.channel_layer.group_discard(self._joined, self.channel_name)
        self._joined = group

    async def disconnect(self, code: int) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
        if self._joined is not None:
            await self.channel_layer.group_discard(self._joined, self.channel_name)
        if self._control is not None:
            await self.channel_layer.group_discard(self._control, self.channel_name)

    async def _send_frames(self, log_tail: tail.LogTail) -> None:
        """The only writer of the socket: frames in order. A client that does not read makes
        this wait (the server's write buffer is full); meanwhile the tail queues up to
        STRATUS_LOG_TAIL_BUFFER lines and counts the rest as dropped."""
        try:
            while True:
                await log_tail.ready.wait()
                for frame in log_tail.take():
                    await self.send(text_data=json.dumps(frame, separators=(",", ":")))
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket went away mid-send: disconnect() cleans up
            logger.debug("live tail sender stopped", exc_info=True)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return loads_bounded(text_data)
        except (ValueError, DomainError):
            return None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        log_tail = self.log_tail
        if log_tail is None or not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "ping":
            log_tail.push_message({"type": "pong", "cursor": log_tail.cursor})
        elif kind == "filters":
            raw = {k: v for k, v in content.items() if k not in ("type", "backlog")}
            try:
                filters = tail.parse_filters(raw)
                backlog = tail.parse_backlog(content.get("backlog"))
                filters = await log_tail.resolve(filters)
            except tail.FilterError as exc:
                log_tail.push_message(exc.data())  # the previous filters stay
                return
            await self._join(log_tail.group_for(filters))
            await log_tail.start(filters=filters, backlog=backlog, after=None)
        else:
            log_tail.push_message(
                {
                    "type": "error",
                    "code": "unknown_message",
                    "message": 'Messages are {"type": "filters", ...} and {"type": "ping"}.',
                    "fields": {"type": ["unknown message type"]},
                }
            )

    # --- group messages (services.log_lines_publish, function_deleted_publish) -----------------

    async def log_lines(self, event: dict[str, Any]) -> None:
        if self.log_tail is not None:
            await self.log_tail.on_message(event)

    async def log_function_deleted(self, event: dict[str, Any]) -> None:
        if self.log_tail is not None:
            log_tail, self.log_tail = self.log_tail, None
            log_tail.push_message({"type": "closing", "reason": "function_deleted"})
            # Let the sender write what is queued, then close.
            for _ in range(50):
                if not log_tail.frames:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)
        await self.close(code=tail.CLOSE_FUNCTION_DELETED)
