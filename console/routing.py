"""Websocket routes (/ws/...). Live logs and pipeline runs add their consumers here."""

from django.urls import URLPattern, path

from apps.pipelines.consumers import RunLogConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/runs/<int:run_id>/", RunLogConsumer.as_asgi()),
]
