"""Websocket routes (/ws/...). Live logs and pipeline runs add their consumers here."""

from django.urls import URLPattern, path, re_path

from apps.core.asgi import unknown_websocket
from apps.functions.consumers import LanguageServerConsumer
from apps.monitoring.consumers import LogTailConsumer
from apps.pipelines.consumers import RunLogConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/runs/<int:run_id>/", RunLogConsumer.as_asgi()),
    path("ws/functions/<int:function_id>/lsp/", LanguageServerConsumer.as_asgi()),
    path("ws/functions/<int:function_id>/logs/", LogTailConsumer.as_asgi()),
    # Last: any other path is refused at the handshake (404), not a router error (500).
    re_path(r"", unknown_websocket),  # type: ignore[arg-type]  # an ASGI app, as Channels routes take
]
