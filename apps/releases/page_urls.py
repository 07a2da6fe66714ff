"""Page routes of releases (mounted at / by console/urls.py): a project's releases, a
function's Releases tab (plan builder, live cards, past releases), one release, its live
card fragment and its actions."""

from django.urls import URLPattern

from apps.releases.pages import views

urlpatterns: list[URLPattern] = [*views.urlpatterns]
