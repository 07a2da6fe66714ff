"""One ASGI app: the function gateway, Django views and the API over HTTP, Channels consumers over websockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django_asgi_app = get_asgi_application()  # set up Django before importing consumers

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from apps.core.asgi import RequestGuard, WebsocketOriginGuard  # noqa: E402
from apps.engine.gateway import Gateway  # noqa: E402
from console.routing import websocket_urlpatterns  # noqa: E402

_websockets = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))

# Websockets opened with a session (cookies) must come from an allowed Origin (cross-site
# websocket hijacking); ones that authenticate with an API token need none and carry no cookies
# on (apps/core/asgi.py WebsocketOriginGuard).
# The function gateway (/fn/...) answers before Django's stack; everything else goes on. It
# also keeps the origins apart: on STRATUS_FUNCTIONS_URL's host nothing but /fn/ answers (no
# console page, API or websocket), and /fn/ on the console's host is served cookieless and
# sandboxed (apps/engine/gateway.py). Django gets HTTP through RequestGuard: bodies without a
# Content-Length read and capped, paths that are not UTF-8 refused (apps/core/asgi.py).
application = Gateway(
    ProtocolTypeRouter(
        {
            "http": RequestGuard(django_asgi_app),
            "websocket": WebsocketOriginGuard(_websockets, origin_checked=AllowedHostsOriginValidator(_websockets)),
        }
    )
)
