"""Websocket routes (/ws/...). Live logs and pipeline runs add their consumers here."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
