"""A binding's routing rules beyond weights: header/cookie rules, the sticky key and the auth
mode of its URL (the reads of a binding and its timeline are apps.functions.selectors).

Changing the rules changes which version serves a request, so it is a traffic change like
any other: it goes through ``traffic_apply`` (traffic unchanged, reason ``rules``), which
bumps the revision, records the timeline entry and the audit event, and announces the new
routes to the gateways after commit."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction

from apps.core.actors import Actor
from apps.core.errors import DomainError
from apps.functions.deploy_services import traffic_apply
from apps.functions.models import Binding, Function, TrafficChange
from apps.tenancy import permissions

MAX_RULES = 20
MAX_RULE_VALUE = 200
MAX_NAME = 100
RULE_KEYS = {"source", "name", "match", "value", "version"}
SOURCES = ("header", "cookie")
MATCHES = ("equals", "regex")
# RFC 9110 token characters: what a header field name (and an RFC 6265 cookie name) may hold.
TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


# --- validation ----------------------------------------------------------------------------------


def _rule_errors(index: int, rule: Any, known_versions: set[int]) -> list[str]:
    at = f"rule {index}"
    if not isinstance(rule, dict):
        return [f"{at}: must be an object with source, name, match, value and version"]
    errors = []
    unknown = sorted(set(rule) - RULE_KEYS)
    if unknown:
        errors.append(f"{at}: unknown keys {unknown}")
    missing = sorted(RULE_KEYS - set(rule))
    if missing:
        errors.append(f"{at}: missing {missing}")
    source, name, match, value, version = (rule.get(k) for k in ("source", "name", "match", "value", "version"))
    if "source" in rule and source not in SOURCES:
        errors.append(f"{at}: 'source' must be header or cookie")
    if "name" in rule:
        if not isinstance(name, str) or not name:
            errors.append(f"{at}: 'name' must be a non-empty string")
        elif len(name) > MAX_NAME:
            errors.append(f"{at}: 'name' must be at most {MAX_NAME} characters")
        elif not TOKEN_RE.match(name):
            kind = "cookie" if source == "cookie" else "header"
            errors.append(f"{at}: 'name' is not a valid {kind} name (letters, digits and !#$%&'*+-.^_`|~ only)")
    if "match" in rule and match not in MATCHES:
        errors.append(f"{at}: 'match' must be equals or regex")
    if "value" in rule:
        if not isinstance(value, str):
            errors.append(f"{at}: 'value' must be a string")
        elif len(value) > MAX_RULE_VALUE:
            errors.append(f"{at}: 'value' must be at most {MAX_RULE_VALUE} characters")
        elif match == "regex":
            try:
                re.compile(value)
            except re.error as exc:
                errors.append(f"{at}: 'value' is not a valid regular expression ({exc})")
    if "version" in rule:
        if not isinstance(version, int) or isinstance(version, bool):
            errors.append(f"{at}: 'version' must be a version number")
        elif version not in known_versions:
            errors.append(f"{at}: 'version' {version} does not exist")
    return errors


def validate_header_rules(function: Function, header_rules: Any) -> list[dict[str, Any]]:
    """The rules, normalised (key order), or DomainError with one message per problem,
    each naming the rule's index (from 0, as in the list sent)."""
    if not isinstance(header_rules, list):
        raise DomainError(
            "Header rules are invalid.", fields={"header_rules": ["must be a list of rules"]}, code="invalid"
        )
    if len(header_rules) > MAX_RULES:
        raise DomainError(
            "Header rules are invalid.",
            fields={"header_rules": [f"at most {MAX_RULES} rules (got {len(header_rules)})"]},
            code="invalid",
        )
    known = set(function.versions.values_list("number", flat=True)) if header_rules else set()
    errors = [message for i, rule in enumerate(header_rules) for message in _rule_errors(i, rule, known)]
    if errors:
        raise DomainError("Header rules are invalid.", fields={"header_rules": errors}, code="invalid")
    return [{key: rule[key] for key in ("source", "name", "match", "value", "version")} for rule in header_rules]


def validate_sticky_key(sticky_key: Any) -> str:
    """'' (no stickiness), 'header:<Name>' or 'cookie:<name>'."""
    message = "must be '', 'header:<Name>' or 'cookie:<name>'"
    if not isinstance(sticky_key, str):
        raise DomainError("The sticky key is invalid.", fields={"sticky_key": [message]}, code="invalid")
    if sticky_key == "":
        return ""
    source, _, name = sticky_key.partition(":")
    if source not in SOURCES or not name or not TOKEN_RE.match(name) or len(sticky_key) > MAX_NAME:
        raise DomainError("The sticky key is invalid.", fields={"sticky_key": [message]}, code="invalid")
    return sticky_key


def validate_auth_mode(auth_mode: Any) -> str:
    if auth_mode not in Binding.AuthMode.values:
        raise DomainError(
            "The auth mode is invalid.",
            fields={"auth_mode": [f"must be one of {', '.join(Binding.AuthMode.values)}"]},
            code="invalid",
        )
    return str(auth_mode)


# --- writes --------------------------------------------------------------------------------------


def _rules_note(changes: dict[str, tuple[Any, Any]]) -> str:
    parts = []
    if "header_rules" in changes:
        old, new = changes["header_rules"]
        parts.append(f"header rules: {len(old)} -> {len(new)}")
    if "sticky_key" in changes:
        old, new = changes["sticky_key"]
        parts.append(f"sticky key: {old or 'none'} -> {new or 'none'}")
    if "auth_mode" in changes:
        old, new = changes["auth_mode"]
        parts.append(f"auth mode: {old} -> {new}")
    return "; ".join(parts)


@transaction.atomic
def binding_rules_set(
    *,
    actor: Actor,
    binding: Binding,
    header_rules: list[dict[str, Any]] | None = None,
    sticky_key: str | None = None,
    auth_mode: str | None = None,
) -> Binding:
    """Set any of the binding's header rules, sticky key and auth mode. ``None`` leaves a
    field as it is; nothing changed → no new revision. A change bumps the revision and adds a
    ``rules`` entry to the timeline (traffic unchanged), announced to the gateways."""
    permissions.require_deploy(actor, binding.environment)
    wanted: dict[str, Any] = {}
    if header_rules is not None:
        wanted["header_rules"] = validate_header_rules(binding.function, header_rules)
    if sticky_key is not None:
        wanted["sticky_key"] = validate_sticky_key(sticky_key)
    if auth_mode is not None:
        wanted["auth_mode"] = validate_auth_mode(auth_mode)
    locked = (
        Binding.objects.select_for_update(of=("self",)).select_related("function", "environment").get(pk=binding.pk)
    )
    changes = {
        field: (getattr(locked, field), value) for field, value in wanted.items() if getattr(locked, field) != value
    }
    if not changes:
        return locked
    for field, (_, value) in changes.items():
        setattr(locked, field, value)
    locked.save(update_fields=[*changes, "updated_at"])
    return traffic_apply(
        actor=actor,
        binding=locked,
        traffic=locked.traffic,
        reason=TrafficChange.Reason.RULES,
        note=_rules_note(changes),
    )
