"""The event shapes of ``event`` functions, shared with the Knative runtime image.

The shaping lives in ``runtime/stratus_bootstrap/events.py`` (standard library only), which the
runtime's entrypoint (``serve_http.py``) imports in the image; the gateway (apps/engine) and the
function configuration's validation (apps/functions: formats, route templates) import the same
file through this module, so both serving paths answer with the same bytes. It sits in
apps/core, the ground floor, because both need it and the control plane does not import the engine.

Why a ``sys.path`` entry rather than packaging or loading the file by path: ``runtime/`` is
already the one place the console finds the bootstrap (``apps.core.isolation.RUNTIME_DIR``: the
zygote and the language server put it on their own ``sys.path`` the same way), it ships with the
source tree rather than as a distribution, and a regular import keeps ``stratus_bootstrap.events``
one module object (type-checked by mypy, which maps ``runtime/`` the same way) whether a test
imported it first through the image's PYTHONPATH or the console did. Adding the directory puts
only the bootstrap package and ``fetch_artifact`` on the path; neither runs anything on import.
"""

from __future__ import annotations

import sys

from apps.core.isolation import RUNTIME_DIR

if str(RUNTIME_DIR) not in sys.path:
    sys.path.append(str(RUNTIME_DIR))  # appended: nothing of the console's can be shadowed by it

from stratus_bootstrap import events  # noqa: E402 - needs the path entry above
from stratus_bootstrap.events import (  # noqa: E402
    DEFAULT_FORMAT,
    FORMATS,
    Match,
    Request,
    Route,
    build_event,
    catch_all,
    compile_routes,
    error_body,
    http_frame,
    match_route,
    no_route_message,
    response_from,
    route_problems,
)

__all__ = [
    "DEFAULT_FORMAT",
    "FORMATS",
    "Match",
    "Request",
    "Route",
    "build_event",
    "catch_all",
    "compile_routes",
    "error_body",
    "events",
    "http_frame",
    "match_route",
    "no_route_message",
    "response_from",
    "route_problems",
]
