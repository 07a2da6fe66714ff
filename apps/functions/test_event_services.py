"""Writes of test events (apps.functions.models.TestEvent): named event bodies per function.

Rights (the rule the API documents and tests/functions/test_test_events.py holds):
- writing any test event needs ``edit_code`` on the function's project (developers and up);
  viewers read and never write (403);
- a private event is its creator's alone: nobody else sees it (selectors answer 404), so
  nobody else can change or delete it;
- a shared event may be changed or deleted by any developer of the project, but only its
  creator may make it private again (otherwise a colleague could take it from everyone);
- names are unique per function, across private and shared events (409 ``already_exists``).

Limits: the body is any JSON value of at most ``MAX_BODY_BYTES`` once encoded (compact
UTF-8) and nested at most STRATUS_MAX_JSON_DEPTH levels, the bound the API's JSON parser puts
on request bodies, so an event stored here can always be sent back through the API.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.audit.services import audit_record
from apps.core.actors import Actor, signed_in
from apps.core.errors import DomainError, Forbidden
from apps.core.parsers import json_depth
from apps.functions.models import Function, TestEvent
from apps.tenancy import permissions, roles

# 256 KiB: the largest event the WebIDE keeps in an editor tab; Lambda's own asynchronous
# invoke payload limit, and well below STRATUS_MAX_REQUEST_BYTES (2 MiB), so the error
# names this rule rather than the request size.
MAX_BODY_BYTES = 256 * 1024
MAX_NAME_LENGTH = 100


def encoded_body(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def validate_name(name: str) -> str:
    """1..100 characters, no control characters; surrounding spaces are dropped."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or any(unicodedata.category(c).startswith("C") for c in name):
        raise DomainError(
            f"A test event's name is 1 to {MAX_NAME_LENGTH} characters without control characters.",
            code="test_event_name_invalid",
            fields={"name": [f"1 to {MAX_NAME_LENGTH} printable characters."]},
        )
    return name


def validate_body(body: Any) -> Any:
    """The body as stored: a JSON value other than null, within the size and depth bounds
    (see the module docstring)."""
    if body is None:
        raise DomainError(
            "A test event's body is a JSON value other than null.",
            code="test_event_body_invalid",
            fields={"body": ["May not be null."]},
        )
    try:
        text = encoded_body(body)
    except (TypeError, ValueError):
        raise DomainError(
            "A test event's body must be a JSON value.", code="test_event_body_invalid", fields={"body": ["Not JSON."]}
        ) from None
    size = len(text.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise DomainError(
            f"The test event's body is {size} bytes as JSON: a test event may be at most {MAX_BODY_BYTES} bytes "
            f"({MAX_BODY_BYTES // 1024} KiB).",
            code="test_event_too_large",
            fields={"body": [f"At most {MAX_BODY_BYTES} bytes."]},
        )
    limit = int(settings.STRATUS_MAX_JSON_DEPTH)
    depth = json_depth(text)
    if depth > limit:
        raise DomainError(
            f"The test event's body nests {depth} levels deep: it may nest at most {limit} levels.",
            code="json_too_deep",
            fields={"body": [f"At most {limit} levels."]},
        )
    return body


def _taken(function: Function, name: str) -> DomainError:
    return DomainError(
        f"Function '{function.name}' already has a test event named '{name}': names are unique per function.",
        code="already_exists",
        fields={"name": ["Already taken in this function."]},
        status_code=409,
    )


def _save(test_event: TestEvent) -> None:
    # The unique constraint is the arbiter when two saves race past the check: a savepoint
    # keeps the outer transaction usable, the loser gets the same 409 as a plain duplicate.
    try:
        with transaction.atomic():
            test_event.save()
    except IntegrityError:
        raise _taken(test_event.function, test_event.name) from None


@transaction.atomic
def test_event_create(*, actor: Actor, function: Function, name: str, body: Any, shared: bool = False) -> TestEvent:
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Creating a test event")
    name = validate_name(name)
    body = validate_body(body)
    if TestEvent.objects.filter(function=function, name=name).exists():
        raise _taken(function, name)
    test_event = TestEvent(function=function, name=name, body=body, shared=shared, created_by=signed_in(actor))
    _save(test_event)
    audit_record(
        actor=actor,
        org=function.project.org,
        action="test_event.create",
        target=function,
        changes={"test_event": test_event.pk, "name": name, "shared": shared},
    )
    return test_event


@transaction.atomic
def test_event_update(
    *,
    actor: Actor,
    test_event: TestEvent,
    name: str | None = None,
    body: Any = None,
    shared: bool | None = None,
) -> TestEvent:
    """Change any of name, body and shared (``None``: unchanged). ``test_event`` comes from
    test_event_get, so the caller already sees it."""
    function = test_event.function
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Changing a test event")
    # Lock the row: two editors saving the same event one after the other, never interleaved.
    test_event = TestEvent.objects.select_for_update().select_related("function__project__org").get(pk=test_event.pk)
    if shared is not None and shared != test_event.shared and test_event.created_by_id != actor.pk:
        raise Forbidden(
            f"Only the creator of test event '{test_event.name}' may change whether it is shared.",
            fields={"shared": ["Only the creator may change this."]},
        )
    changes: dict[str, Any] = {}
    if name is not None:
        name = validate_name(name)
        if name != test_event.name:
            if TestEvent.objects.filter(function=function, name=name).exclude(pk=test_event.pk).exists():
                raise _taken(function, name)
            changes["name"] = [test_event.name, name]
            test_event.name = name
    if body is not None:
        body = validate_body(body)
        if body != test_event.body:
            changes["body"] = True  # bodies can be large and hold sample secrets: say that it changed
            test_event.body = body
    if shared is not None and shared != test_event.shared:
        changes["shared"] = [test_event.shared, shared]
        test_event.shared = shared
    if changes:
        _save(test_event)
        audit_record(
            actor=actor,
            org=function.project.org,
            action="test_event.update",
            target=function,
            changes={"test_event": test_event.pk, **changes},
        )
    return test_event


@transaction.atomic
def test_event_delete(*, actor: Actor, test_event: TestEvent) -> None:
    function = test_event.function
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Deleting a test event")
    audit_record(
        actor=actor,
        org=function.project.org,
        action="test_event.delete",
        target=function,
        changes={"test_event": test_event.pk, "name": test_event.name},
    )
    test_event.delete()
