"""Page routes of tenancy (mounted at / by console/urls.py). Being written (issue 14)."""

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path


def _todo(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404


urlpatterns: list[URLPattern] = [
    path("orgs/<str:org>/", _todo, name="org"),
    path("account/tokens/", _todo, name="account-tokens"),
    path("projects/<int:project_id>/environments/", _todo, name="project-environments"),
    path("projects/<int:project_id>/activity/", _todo, name="project-activity"),
    path("projects/<int:project_id>/settings/", _todo, name="project-settings"),
]
