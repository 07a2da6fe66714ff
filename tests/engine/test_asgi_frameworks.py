"""Real Starlette, FastAPI, Quart and Django ASGI apps deployed as functions and called through
the real gateway: they route on ``path`` minus ``root_path`` (the asgiref spec, as uvicorn and
Hypercorn give the scope), and the URLs and redirects they build keep the function's prefix.

The frameworks reach the function as they would on Lambda: copied into its code root
(tests/engine/vendoring.py), since instances never see the console's site-packages."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.conftest import deploy_latest, make_function, url, wait_routed
from tests.engine.vendoring import vendored

STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route


async def item(request):
    return JSONResponse({
        "id": request.path_params["id"],
        "url_for": str(request.url_for("item", id=request.path_params["id"])),
        "url": str(request.url),
        "root_path": request.scope["root_path"],
        "raw_path": request.scope["raw_path"].decode(),
    })


async def users(request):
    return JSONResponse({"users": [], "url": str(request.url)})


async def go(request):
    return RedirectResponse(request.url_for("item", id="9"), status_code=302)


app = Starlette(routes=[
    Route("/items/{id}", item, name="item"),
    Route("/users/", users, name="users"),
    Route("/go", go),
])
"""

FASTAPI_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

app = FastAPI()


@app.get("/items/{item_id}", name="item")
async def item(item_id: int, request: Request):
    return {
        "id": item_id,
        "url_for": str(request.url_for("item", item_id=item_id)),
        "url": str(request.url),
        "root_path": request.scope["root_path"],
        "raw_path": request.scope["raw_path"].decode(),
    }


@app.get("/users/")
async def users(request: Request):
    return {"users": [], "url": str(request.url)}


@app.get("/go")
async def go(request: Request):
    return RedirectResponse(request.url_for("item", item_id=9), status_code=302)
"""

QUART_APP = """
from quart import Quart, redirect, request, url_for

app = Quart(__name__)


@app.route("/items/<id>")
async def item(id):
    return {
        "id": id,
        "url_for": url_for("item", id=id, _external=True),
        "url": request.url,
        "root_path": request.root_path,
        "raw_path": request.scope["raw_path"].decode(),
    }


@app.route("/users/")
async def users():
    return {"users": [], "url": request.url}


@app.route("/go")
async def go():
    return redirect(url_for("item", id="9", _external=True))
"""

DJANGO_APP = """
import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="not-a-secret-just-a-test",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    APPEND_SLASH=True,
    USE_I18N=False,
    INSTALLED_APPS=[],
)
django.setup()

from django.core.asgi import get_asgi_application
from django.http import HttpResponseRedirect, JsonResponse
from django.urls import path, reverse


def item(request, id):
    return JsonResponse({
        "id": id,
        "url_for": request.build_absolute_uri(reverse("item", args=[id])),
        "url": request.build_absolute_uri(),
        "root_path": request.META["SCRIPT_NAME"],
        "raw_path": request.scope["raw_path"].decode(),
    })


def users(request):
    return JsonResponse({"users": [], "url": request.build_absolute_uri()})


def go(request):
    return HttpResponseRedirect(request.build_absolute_uri(reverse("item", args=["9"])))


urlpatterns = [
    path("items/<str:id>", item, name="item"),
    path("users/", users, name="users"),
    path("go", go),
]

application = get_asgi_application()
"""

FRAMEWORKS = {
    # name: (source, handler, modules to vendor, id as the app echoes it)
    "starlette": (STARLETTE_APP, "app.app", ("starlette.applications", "starlette.routing"), "7"),
    "fastapi": (FASTAPI_APP, "app.app", ("fastapi",), 7),
    "quart": (QUART_APP, "app.app", ("quart",), "7"),
    "django": (DJANGO_APP, "app.application", ("django.core.asgi", "django.urls", "django.middleware.common"), "7"),
}


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_framework_routes_builds_urls_and_redirects_under_the_prefix(
    framework: str, world: Any, engine: Any, served: Any
):
    source, handler, modules, echoed_id = FRAMEWORKS[framework]
    fn = make_function(
        world, framework, {"app.py": source, **vendored(*modules)}, kind="http", handler=handler, timeout_s=20
    )
    deploy_latest(world, fn)
    wait_routed(engine, fn)
    prefix = "/fn/alpha/web/dev/" + framework
    base = served.base_url + prefix

    # Routing on path minus root_path; the scope's raw_path is the request target as received.
    response = served.get(url(fn, path="items/7?x=%20y"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": echoed_id,
        "url_for": f"{base}/items/7",
        "url": f"{base}/items/7?x=%20y",
        "root_path": prefix,
        "raw_path": f"{prefix}/items/7",
    }

    # A percent-encoded segment is decoded for routing and kept encoded in raw_path.
    encoded = served.get(url(fn, path="items/a%20b"))
    if framework == "fastapi":
        assert encoded.status_code == 422  # not an int: FastAPI's own validation answered
    else:
        assert encoded.status_code == 200, encoded.text
        assert encoded.json()["id"] == "a b"
        assert encoded.json()["raw_path"] == f"{prefix}/items/a%20b"

    # Trailing-slash redirects keep the mount prefix.
    redirect = served.get(url(fn, path="users"))
    assert redirect.status_code in (301, 307, 308), redirect.text
    assert redirect.headers["location"] in (f"{base}/users/", f"{prefix}/users/")
    followed = served.get(url(fn, path="users/"))
    assert followed.status_code == 200, followed.text
    assert followed.json() == {"users": [], "url": f"{base}/users/"}

    # A redirect the app builds with url_for / reverse keeps it too.
    went = served.get(url(fn, path="go"))
    assert went.status_code == 302, went.text
    assert went.headers["location"] == f"{base}/items/9"

    # An unknown path is the app's own 404, not the gateway's.
    missing = served.get(url(fn, path="nope"))
    assert missing.status_code == 404
    assert "x-stratus-version" in missing.headers
