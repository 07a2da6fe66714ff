"""The console's error pages: 404 and 500, as a page or, under /api/, as the API's error
envelope. Each app owns its other pages (the home page is tenancy's: apps/tenancy/pages/home.py)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.core.errors import json_error


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error(404, "not_found", f"No API route matches {request.path}.")
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error(500, "server_error", "An internal error occurred; it has been logged.")
    return render(request, "500.html", status=500)
