"""Page routes of releases (mounted at / by console/urls.py). Being written (issue 14)."""

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path


def _todo(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404


urlpatterns: list[URLPattern] = [
    path("projects/<int:project_id>/releases/", _todo, name="project-releases"),
]
