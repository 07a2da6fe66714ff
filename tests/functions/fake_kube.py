"""A FAKE Kubernetes API server, standing in for a Kubernetes cluster, which cannot run here.

It is a real HTTP server on 127.0.0.1 (ThreadingHTTPServer in a thread) that the official
`kubernetes` Python client talks to through a generated kubeconfig (plain http, no TLS, no auth),
so the backend's real client code, URLs, verbs and JSON bodies are exercised. It implements only
what the Knative backend calls:

- /apis/serving.knative.dev/v1/namespaces/{ns}/services[/{name}]: GET, POST, PUT, DELETE
- /api/v1/namespaces/{ns}/secrets[/{name}]: GET (list with labelSelector=k=v), POST, PUT,
  PATCH (JSON merge of `data`), DELETE

Objects live in memory. Every write bumps a global resourceVersion (a string, as in Kubernetes);
a PUT carrying a stale metadata.resourceVersion gets 409 Conflict, a POST of an existing name
409 AlreadyExists, anything missing 404 NotFound, each as a `Status` object. It does NOT run
Knative's controllers, webhooks or schema validation: tests validate bodies against the CRD
schema themselves, and `set_status` plays the controller reporting readiness.

Every request is RECORDED (method, path, query, parsed JSON body) in `requests` for assertions.
`before_put` lets a test act between the client's GET and its PUT (a concurrent writer);
`fail_next` makes the next matching request fail (an API server hiccup).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

KNATIVE_PREFIX = "/apis/serving.knative.dev/v1/namespaces/"
CORE_PREFIX = "/api/v1/namespaces/"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class FakeKube:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, ns, name)
    requests: list[Recorded] = field(default_factory=list)
    resource_version: int = 100
    before_put: Callable[[str, str, str], None] | None = None  # (kind, ns, name)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0
    failures: list[tuple[str, str, int]] = field(default_factory=list)  # (method, kind, status)

    # --- test helpers ------------------------------------------------------------------------
    def fail_next(self, method: str, kind: str, status: int = 500) -> None:
        """The next ``method`` request on ``kind`` answers ``status`` (an API server hiccup)."""
        self.failures.append((method, kind, status))

    def calls(self, method: str | None = None, kind: str | None = None) -> list[Recorded]:
        out = []
        for r in self.requests:
            if method and r.method != method:
                continue
            if kind == "services" and not r.path.startswith(KNATIVE_PREFIX):
                continue
            if kind == "secrets" and not r.path.startswith(CORE_PREFIX):
                continue
            out.append(r)
        return out

    def get(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, ns, name))
        return copy.deepcopy(obj) if obj else None

    def bump(self, kind: str, ns: str, name: str) -> None:
        """Another writer changed the object: its resourceVersion moves on."""
        with self.lock:
            self.objects[(kind, ns, name)]["metadata"]["resourceVersion"] = self._next_rv()

    def set_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        """Play Knative's controller: write the Service's status (bumping resourceVersion)."""
        with self.lock:
            obj = self.objects[("services", ns, name)]
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"], **status}
            obj["metadata"]["resourceVersion"] = self._next_rv()

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # --- the API -----------------------------------------------------------------------------
    def _next_rv(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    def handle(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        self.requests.append(Recorded(method, parts.path, query, copy.deepcopy(body)))
        if parts.path.startswith(KNATIVE_PREFIX):
            rest, kind = parts.path[len(KNATIVE_PREFIX) :].split("/"), "services"
        elif parts.path.startswith(CORE_PREFIX):
            rest, kind = parts.path[len(CORE_PREFIX) :].split("/"), "secrets"
        else:
            return _status(404, "NotFound", f"no route {parts.path}")
        if len(rest) not in (2, 3) or rest[1] != kind:
            return _status(404, "NotFound", f"no route {parts.path}")
        ns, name = rest[0], (rest[2] if len(rest) == 3 else None)
        for failure in self.failures:
            if failure[:2] == (method, kind):
                self.failures.remove(failure)
                return _status(failure[2], "InternalError", "injected failure")
        if method == "PUT" and name and self.before_put:
            self.before_put(kind, ns, name)
        with self.lock:
            return self._dispatch(method, kind, ns, name, query, body)

    def _dispatch(
        self, method: str, kind: str, ns: str, name: str | None, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        key = (kind, ns, name or "")
        existing = self.objects.get(key)
        if name is None:
            if method == "GET":
                selector = query.get("labelSelector", [""])[0]
                items = [copy.deepcopy(o) for (k, n, _), o in sorted(self.objects.items()) if k == kind and n == ns]
                if selector:
                    label, _, value = selector.partition("=")
                    items = [o for o in items if (o["metadata"].get("labels") or {}).get(label) == value]
                list_kind = "SecretList" if kind == "secrets" else "ServiceList"
                return 200, {"apiVersion": "v1", "kind": list_kind, "metadata": {}, "items": items}
            if method == "POST":
                name = body["metadata"]["name"]
                key = (kind, ns, name)
                if key in self.objects:
                    return _status(409, "AlreadyExists", f'{kind} "{name}" already exists')
                obj = copy.deepcopy(body)
                obj["metadata"].update(namespace=ns, resourceVersion=self._next_rv(), generation=1, uid=f"uid-{name}")
                self.objects[key] = obj
                return 201, copy.deepcopy(obj)
            return _status(405, "MethodNotAllowed", f"{method} on a collection")
        if existing is None:
            return _status(404, "NotFound", f'{kind} "{name}" not found')
        if method == "GET":
            return 200, copy.deepcopy(existing)
        if method == "DELETE":
            del self.objects[key]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}
        if method == "PUT":
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            if sent_rv is not None and sent_rv != existing["metadata"]["resourceVersion"]:
                return _status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                )
            obj = copy.deepcopy(body)
            spec_changed = obj.get("spec") != existing.get("spec")
            obj["metadata"].update(
                namespace=ns,
                resourceVersion=self._next_rv(),
                uid=existing["metadata"]["uid"],
                generation=existing["metadata"]["generation"] + (1 if spec_changed else 0),
            )
            if "status" in existing:  # status is a subresource: a PUT of the object keeps it
                obj["status"] = existing["status"]
            self.objects[key] = obj
            return 200, copy.deepcopy(obj)
        if method == "PATCH" and kind == "secrets":
            existing.setdefault("data", {}).update((body or {}).get("data") or {})
            existing["metadata"]["resourceVersion"] = self._next_rv()
            return 200, copy.deepcopy(existing)
        return _status(405, "MethodNotAllowed", f"{method} {kind}")


def _status(code: int, reason: str, message: str) -> tuple[int, Any]:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _handler(fake: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            code, payload = fake.handle(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
            pass

    return Handler


@contextmanager
def running_fake_kube() -> Iterator[FakeKube]:
    fake = FakeKube()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
