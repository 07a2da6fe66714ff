"""The WebIDE's Python language server: ``/ws/functions/{id}/lsp/``.

The socket carries JSON-RPC messages of the Language Server Protocol, one per text frame,
between the editor and a session of apps/functions/language_server.py (one server process
per socket). On connect the caller must see the function (the session's user, who may be a
viewer: the server only reads the draft), else the socket closes with 4404. A session that
cannot start closes with 4429 (a limit) or 4503 (the host), after a
``{"stratus": "refused", "reason": ...}`` frame that says why. Without a message from the
editor for STRATUS_LSP_IDLE_S it closes with 4408 and the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.core.errors import NotFound
from apps.functions import selectors
from apps.functions.language_server import LanguageServerSession, SessionRefused
from apps.functions.models import Function

logger = logging.getLogger(__name__)


def _visible_function(scope: dict[str, Any], function_id: int) -> Function | None:
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None
    try:
        return selectors.function_get(user=user, function_id=function_id)
    except NotFound:
        return None


class LanguageServerConsumer(AsyncWebsocketConsumer):
    session: LanguageServerSession | None = None
    _idle: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        function_id = int(self.scope["url_route"]["kwargs"]["function_id"])
        await self.accept()
        function = await database_sync_to_async(_visible_function)(self.scope, function_id)
        if function is None:
            await self.close(code=4404)
            return
        session = LanguageServerSession(function=function, user_id=self.scope["user"].pk, send=self._to_editor)
        try:
            await session.start()
        except SessionRefused as exc:
            limit = "STRATUS_LSP_MAX" in str(exc)
            await self.send(json.dumps({"stratus": "refused", "reason": str(exc)}))
            await self.close(code=4429 if limit else 4503)
            return
        except Exception as exc:
            logger.exception("starting a language server failed")
            await self.send(json.dumps({"stratus": "refused", "reason": f"the language server did not start: {exc}"}))
            await self.close(code=4503)
            return
        self.session = session
        self.last_message = time.monotonic()
        self._idle = asyncio.create_task(self._close_when_idle())
        await self.send(json.dumps({"stratus": "ready"}))

    async def disconnect(self, code: int) -> None:
        if self._idle is not None:
            self._idle.cancel()
        await self._stop_session()

    async def _stop_session(self) -> None:
        # Shielded: the idle watchdog may be cancelled (the disconnect that its own close
        # caused) while it stops the session, and half a stop would leave the server running.
        if self.session is not None:
            session, self.session = self.session, None
            await asyncio.shield(session.stop())

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None or text_data is None:
            return
        self.last_message = time.monotonic()
        try:
            await self.session.from_editor(text_data)
        except (ValueError, TypeError) as exc:
            await self.send(json.dumps({"stratus": "error", "reason": f"not relayed: {exc}"}))
        except (ConnectionError, RuntimeError):
            await self.close(code=4503)  # the server is gone (a limit it hit, a crash)

    async def _to_editor(self, text: str) -> None:
        with contextlib.suppress(Exception):
            await self.send(text)

    async def _close_when_idle(self) -> None:
        idle_s = float(settings.STRATUS_LSP_IDLE_S)
        while True:
            await asyncio.sleep(min(idle_s, 5.0))
            if time.monotonic() - self.last_message >= idle_s:
                await self.close(code=4408)
                await self._stop_session()
                return
