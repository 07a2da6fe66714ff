"""Page routes of monitoring (mounted at / by console/urls.py)."""

from django.urls import URLPattern

from apps.monitoring import pages

urlpatterns: list[URLPattern] = [*pages.urlpatterns]
