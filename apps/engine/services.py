"""Invoking a function from the console (the WebIDE's run panel, the VS Code extension): a
deployed or published version (``function_invoke``), or the draft's saved files
(``draft_invoke``); both answer an Outcome, shaped for the API by ``outcome_payload``."""

from __future__ import annotations

import base64
import json
from typing import Any

from apps.core.errors import Conflict, DomainError, Forbidden, NotFound
from apps.engine.engine import CallSite, Outcome, new_request_id
from apps.engine.routing import DRAFT_NUMBER, RouteVersion, binding_route, draft_route_version, route_version
from apps.functions.backends.registry import backend_name_for
from apps.functions.draft_code import draft_code_prepare
from apps.functions.models import Binding, Function
from apps.tenancy import permissions, roles
from apps.tenancy.models import Environment

MAX_EVENT_BYTES = 6 * 1024 * 1024


def _require_invoke(actor: Any, environment: Environment) -> None:
    """Testing a function needs the edit-code right (it is how code is tried out); in a
    protected environment, calling it with arbitrary events needs the deploy right there."""
    if environment.protected:
        if not permissions.can_deploy(actor, environment):
            raise Forbidden(f"Invoking in protected environment '{environment.name}' needs the deploy right on it.")
        return
    permissions.require_project_permission(actor, environment.project, roles.EDIT_CODE, "Invoking a function")


def invocation_target(
    *, function: Function, environment: Environment, version_number: int | None
) -> tuple[RouteVersion, Binding | None]:
    """The version to run: the one asked for, else one drawn as the gateway would (the
    binding's route and its picker). A version the binding's route holds shares its warm
    instances (the route's own RouteVersion, pool key and scaling policy); any other runs apart."""
    binding = Binding.objects.filter(function=function, environment=environment).first()
    route = binding_route(binding) if binding is not None and binding.traffic else None
    if version_number is None:
        if route is None:
            raise Conflict(
                f"Function '{function.name}' is not deployed to '{environment.name}': deploy it or pass a version.",
                code="not_deployed",
            )
        return route.pick(), binding
    if route is not None and version_number in route.versions:
        return route.versions[version_number], binding
    version = function.versions.select_related("artifact").filter(number=version_number).first()
    if version is None:
        raise NotFound(f"Version {version_number} of function '{function.name}' does not exist.")
    return route_version(function=function, environment=environment, version=version, binding_id=None), binding


def _event_frame(rv: RouteVersion, request_id: str, event: Any) -> dict[str, Any]:
    if rv.spec.kind == "event":
        return {"type": "invoke", "id": request_id, "event": event}
    # An http function is tried with a request described as JSON.
    if not isinstance(event, dict):
        raise DomainError(
            "An http function is invoked with a request object: "
            '{"method": "GET", "path": "/", "query": "", "headers": {}, "body": ""}.',
            code="invalid",
            fields={"event": ["Must be a request object for an http function."]},
        )
    body = event.get("body") or ""
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    headers = event.get("headers") or {}
    return {
        "type": "http",
        "id": request_id,
        "method": str(event.get("method", "GET")).upper(),
        "path": str(event.get("path", "/")) or "/",
        "query_string": str(event.get("query", "")),
        "headers": [[str(k), str(v)] for k, v in (headers.items() if isinstance(headers, dict) else [])],
        "body_b64": base64.b64encode(raw).decode("ascii"),
    }


def _check_event_size(event: Any) -> None:
    if len(json.dumps(event)) > MAX_EVENT_BYTES:
        raise DomainError("The event exceeds the 6 MB limit.", code="request_too_large", status_code=413)


def _run(rv: RouteVersion, event: Any, site: CallSite, request_id: str | None = None) -> Outcome:
    frame = _event_frame(rv, request_id or new_request_id(), event)
    from apps.engine.host import get_host

    host = get_host()
    return host.call_sync(host.engine.invoke(rv, frame, site=site), timeout=rv.spec.timeout_s + 60)


def function_invoke(
    *, actor: Any, function: Function, environment: Environment, event: Any, version_number: int | None = None
) -> Outcome:
    """Run one invocation on the local engine and wait for its outcome."""
    _require_invoke(actor, environment)
    _check_event_size(event)
    backend = backend_name_for(environment)
    if backend != "local":
        raise Conflict(
            f"Environment '{environment.name}' runs on the '{backend}' backend; "
            "the invoke API runs functions on the local engine.",
            code="unsupported_backend",
        )
    rv, binding = invocation_target(function=function, environment=environment, version_number=version_number)
    return _run(rv, event, CallSite(function.pk, environment.pk, binding.pk if binding else None, "invoke"))


def invoke_permission_check(*, actor: Any, environment: Environment) -> None:
    """The right to invoke in ``environment`` (a trigger's creator needs it: a schedule
    invokes on their behalf)."""
    _require_invoke(actor, environment)


def schedule_invoke(*, function: Function, environment: Environment, event: Any, request_id: str) -> Outcome:
    """Run one scheduled fire (apps.triggers) on the local engine and wait for its outcome:
    the version the binding's traffic picks, as the invoke API without a version. The right
    was checked when the trigger was written (``invoke_permission_check``); the record's
    trigger is "schedule". An http function receives the event as a POST with a JSON body."""
    _check_event_size(event)
    backend = backend_name_for(environment)
    if backend != "local":
        raise Conflict(
            f"Environment '{environment.name}' runs on the '{backend}' backend; "
            "schedules fire functions on the local engine.",
            code="unsupported_backend",
        )
    rv, binding = invocation_target(function=function, environment=environment, version_number=None)
    if rv.spec.kind != "event":
        event = {
            "method": "POST",
            "path": "/",
            "headers": {"content-type": "application/json", "x-stratus-trigger": "schedule"},
            "body": json.dumps(event),
        }
    site = CallSite(function.pk, environment.pk, binding.pk if binding else None, "schedule")
    return _run(rv, event, site, request_id=request_id)


def async_invoke(
    *,
    function: Function,
    environment: Environment,
    version_number: int,
    kind: str,
    payload: Any,
    request_id: str,
) -> Outcome:
    """Run one attempt of an asynchronous event (apps.triggers) on the local engine and wait
    for its outcome; the record's trigger is "event". The right was checked when the event was
    accepted. ``kind`` "event" is the invoke API's event (an http function gets it as a request
    object, as the invoke API); "request" is an HTTP request the gateway accepted, shaped for
    the version as the gateway shapes it (``_request_frame``). ``request_id`` is the event's,
    the same on every attempt, as Lambda keeps it across retries: the handler's request id,
    to dedupe on; an attempt's records and log lines are told apart by their time."""
    backend = backend_name_for(environment)
    if backend != "local":
        raise Conflict(
            f"Environment '{environment.name}' runs on the '{backend}' backend; "
            "asynchronous events run on the local engine.",
            code="unsupported_backend",
        )
    rv, binding = invocation_target(function=function, environment=environment, version_number=version_number)
    site = CallSite(function.pk, environment.pk, binding.pk if binding else None, "event")
    if kind == "request":
        frame = _request_frame(rv, payload, function=function, environment=environment, request_id=request_id)
        from apps.engine.host import get_host

        host = get_host()
        return host.call_sync(host.engine.invoke(rv, frame, site=site), timeout=rv.spec.timeout_s + 60)
    return _run(rv, payload, site, request_id=request_id)


def _request_frame(
    rv: RouteVersion, request: dict[str, Any], *, function: Function, environment: Environment, request_id: str
) -> dict[str, Any]:
    """The frame of a stored gateway request, as the gateway would have built it for ``rv``."""
    from apps.core import event_shapes

    key = (function.project.org.slug, function.project.slug, environment.name, function.name)
    headers = [(str(k), str(v)) for k, v in request.get("headers", [])]
    body = base64.b64decode(request.get("body_b64", "") or "")
    path = str(request.get("path") or "/")
    if rv.spec.kind == "http":
        return event_shapes.http_frame(
            method=str(request.get("method", "POST")),
            path=path,
            query=str(request.get("query", "")),
            headers=headers,
            body=body,
            request_id=request_id,
            trace_id=str(request.get("trace_id") or request_id),
            scheme=str(request.get("scheme", "http")),
            root_path=str(request.get("root_path", "")),
        )
    match = event_shapes.match_route(rv.paths, path)
    if match is None:
        raise NotFound(event_shapes.no_route_message(path), code="no_route")
    shaped = event_shapes.Request(
        method=str(request.get("method", "POST")),
        path=path,
        query=str(request.get("query", "")),
        headers=headers,
        body=body,
        source_ip=str(request.get("source_ip", "")),
        scheme=str(request.get("scheme", "http")),
        port=str(request.get("port", "80")),
        http_version=str(request.get("http_version", "1.1")),
        request_id=request_id,
        key=key,
        received_at=float(request.get("received_at", 0.0)),
    )
    return {"type": "invoke", "id": request_id, "event": event_shapes.build_event(rv.event_format, shaped, match)}


def draft_invoke(*, actor: Any, function: Function, environment: Environment, event: Any) -> Outcome:
    """Run the draft's saved files once, as they would run in ``environment`` if published
    and deployed now (its variables and secrets, the function's execution identity there,
    the same sandbox and limits), on the local engine and without creating a version.

    It needs the edit-code right (it is how code is tried out), and it is refused in a
    protected environment whatever the caller's role: a protected environment runs only
    versions that were published and deployed, never unreviewed code with its secrets."""
    permissions.require_project_permission(actor, environment.project, roles.EDIT_CODE, "Running the draft")
    if environment.protected:
        raise Forbidden(
            f"Environment '{environment.name}' is protected: the draft cannot run there. "
            "Run it in an unprotected environment, or publish a version and deploy it.",
            code="environment_protected",
        )
    _check_event_size(event)
    digest, code_dir = draft_code_prepare(function)
    rv = draft_route_version(function=function, environment=environment, digest=digest, code_dir=code_dir)
    return _run(rv, event, CallSite(function.pk, environment.pk, None, "draft"))


def outcome_payload(outcome: Outcome) -> dict[str, Any]:
    """The invoke API's answer."""
    reply = outcome.reply or {}
    result: Any = None
    if outcome.status == "ok":
        if reply.get("type") == "http_response":
            body = base64.b64decode(reply.get("body_b64", "") or "")
            try:
                text: str = body.decode("utf-8")
                encoded = False
            except UnicodeDecodeError:
                text, encoded = base64.b64encode(body).decode("ascii"), True
            result = {
                "statusCode": reply.get("status"),
                "headers": reply.get("headers", []),
                "body": text,
                "isBase64Encoded": encoded,
            }
        else:
            result = reply.get("result")
    error = None
    if outcome.error is not None:
        error = {
            "type": outcome.error.get("type", "Error"),
            "message": outcome.error.get("message", ""),
            "stack": outcome.error.get("stack", []),
        }
    return {
        "request_id": outcome.request_id,
        "version": None if outcome.version == DRAFT_NUMBER else outcome.version,
        "draft": outcome.version == DRAFT_NUMBER,
        "status": outcome.status,
        "result": result,
        "error": error,
        "logs": [{"ts": line.ts, "stream": line.stream, "text": line.text} for line in outcome.logs],
        "duration_ms": round(outcome.duration_ms, 3),
        "init_duration_ms": None if outcome.init_duration_ms is None else round(outcome.init_duration_ms, 3),
        "cold_start": outcome.cold_start,
        "peak_rss_kb": outcome.peak_rss_kb,
    }
