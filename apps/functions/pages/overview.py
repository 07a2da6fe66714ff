# Being written (issue 14): these routes exist so that the layout's links resolve meanwhile.
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path


def _todo(request: HttpRequest, **kwargs: object) -> HttpResponse:
    raise Http404


urlpatterns: list[URLPattern] = [
    path("projects/<int:project_id>/", _todo, name="project"),
    path("projects/<int:project_id>/functions/", _todo, name="project-functions"),
    path("functions/<int:function_id>/", _todo, name="function"),
]
