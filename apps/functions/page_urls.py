"""Page routes of functions (mounted at / by console/urls.py). Being written (issue 14)."""

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path


def _todo(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404


urlpatterns: list[URLPattern] = [
    path("projects/<int:project_id>/", _todo, name="project"),
    path("projects/<int:project_id>/functions/", _todo, name="project-functions"),
    path("functions/<int:function_id>/", _todo, name="function"),
]
