"""Page routes of functions (mounted at / by console/urls.py); each pages module lists its own."""

from django.urls import URLPattern

from apps.functions.pages import code, environments, overview, versions

urlpatterns: list[URLPattern] = [
    *overview.urlpatterns,
    *code.urlpatterns,
    *versions.urlpatterns,
    *environments.urlpatterns,
]
