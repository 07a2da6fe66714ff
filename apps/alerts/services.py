"""Writes of alerts: rules, their evaluation (the state machine), silences, notifications.

Rights: writing rules and silences needs ``edit_code`` on the function's project (developers
and up); viewers read (selectors), outsiders get 404 from the selectors before any service.

Evaluation (``alert_rule_evaluate``) runs under the rule's row lock (select_for_update) and
only when the rule is due (``next_evaluation_at``), so two evaluators at once (two workers,
a beat-sent run and a chained one) never make the same transition twice nor owe the same
notification twice: the second waits for the lock, then finds the rule no longer due (or,
in the sweep, skips a rule another evaluator holds). A transition writes its AlertEvent and
its Notification rows in the same transaction; the sends happen after commit in Celery tasks
(through the outbox), so a slow or failing receiver never holds up evaluation.
"""

from __future__ import annotations

import json
import math
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.alerts import selectors, webhooks
from apps.alerts.models import (
    AlertEvent,
    AlertRule,
    AlertState,
    Comparison,
    DeliveryAttempt,
    Metric,
    Notification,
    Severity,
    Silence,
)
from apps.audit.services import audit_record
from apps.core import crypto
from apps.core.actors import Actor, signed_in
from apps.core.errors import Conflict, DomainError
from apps.core.outbox import enqueue_after_commit
from apps.functions.models import Function
from apps.tenancy import permissions, roles
from apps.tenancy.models import Environment

# The periodic evaluation's period; a rule evaluated at t is due again from t + interval - slack
# (a sweep a little early still takes it).
EVALUATION_INTERVAL_S = 30
EVALUATION_SLACK_S = 5
# One sweep evaluates at most this many due rules, oldest due first; the rest wait for the
# next sweep (bounded work per run; README: raise it with the number of rules).
EVALUATION_BATCH = 500
WINDOW_MIN_S, WINDOW_MAX_S = 60, 3600
FOR_MAX_S = 24 * 3600
MIN_INVOCATIONS_MAX = 1_000_000
EMAIL_TO_MAX = 20
SILENCE_MAX_S = 30 * 24 * 3600
# A notification being sent is left alone this long by other senders (a sender that died
# mid-send is retried after it).
DELIVERY_CLAIM_S = 60
RULE_FIELDS = (
    "name",
    "metric",
    "comparison",
    "threshold",
    "window_s",
    "min_invocations",
    "for_s",
    "severity",
    "enabled",
    "notify_email",
    "email_to",
    "webhook_url",
)


# --- validation ---------------------------------------------------------------------------------


def _bad(field: str, message: str, code: str = "invalid") -> DomainError:
    return DomainError(f"{field}: {message}", code=code, fields={field: [message]})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(field: str, value: Any, low: int, high: int, rule: str) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise _bad(field, rule)
    return int(value)


def validate_rule_fields(data: dict[str, Any], *, metric: str | None = None) -> dict[str, Any]:
    """The given fields, checked and normalised; a 400 naming the first rule broken. ``metric``
    is the rule's metric when ``data`` does not change it (the threshold's range depends on it)."""
    unknown = sorted(set(data) - set(RULE_FIELDS))
    if unknown:
        raise _bad(unknown[0], f"unknown field; known: {', '.join(RULE_FIELDS)}.")
    out: dict[str, Any] = {}
    if "name" in data:
        name = data["name"].strip() if isinstance(data["name"], str) else ""
        if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
            raise _bad("name", "a rule's name is 1 to 100 printable characters.")
        out["name"] = name
    if "metric" in data:
        if data["metric"] not in Metric.values:
            raise _bad("metric", f"must be one of {', '.join(Metric.values)}.")
        out["metric"] = metric = data["metric"]
    if "comparison" in data:
        if data["comparison"] not in Comparison.values:
            raise _bad("comparison", "must be one of >, >=, <, <=.")
        out["comparison"] = data["comparison"]
    if "threshold" in data:
        value = data["threshold"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _bad("threshold", "must be a finite number.")
        if metric == Metric.ERROR_RATE and not 0 <= value <= 1:
            raise _bad("threshold", "error_rate is a fraction: the threshold must be from 0 to 1 (0.05 is 5%).")
        if metric != Metric.ERROR_RATE and value < 0:
            raise _bad("threshold", f"{metric} is never negative: the threshold must be 0 or more.")
        out["threshold"] = float(value)
    if "window_s" in data:
        out["window_s"] = _int(
            "window_s",
            data["window_s"],
            WINDOW_MIN_S,
            WINDOW_MAX_S,
            "60 to 3600 seconds (1 to 60 minutes).",
        )
    if "min_invocations" in data:
        out["min_invocations"] = _int(
            "min_invocations",
            data["min_invocations"],
            0,
            MIN_INVOCATIONS_MAX,
            f"minimum invocations is a whole number from 0 to {MIN_INVOCATIONS_MAX}.",
        )
    if "for_s" in data:
        out["for_s"] = _int("for_s", data["for_s"], 0, FOR_MAX_S, "'for' is 0 to 86400 seconds (up to a day).")
    if "severity" in data:
        if data["severity"] not in Severity.values:
            raise _bad("severity", f"must be one of {', '.join(Severity.values)}.")
        out["severity"] = data["severity"]
    for flag in ("enabled", "notify_email"):
        if flag in data:
            if not isinstance(data[flag], bool):
                raise _bad(flag, "must be true or false.")
            out[flag] = data[flag]
    if "email_to" in data:
        emails = data["email_to"]
        if not isinstance(emails, list) or len(emails) > EMAIL_TO_MAX:
            raise _bad("email_to", f"a list of at most {EMAIL_TO_MAX} email addresses (empty: the project's members).")
        cleaned = []
        for email in emails:
            try:
                validate_email(email)
            except (ValidationError, TypeError):
                raise _bad("email_to", f"'{email}' is not an email address.") from None
            cleaned.append(email.strip())
        out["email_to"] = list(dict.fromkeys(cleaned))
    if "webhook_url" in data:
        url = data["webhook_url"]
        if not isinstance(url, str) or len(url) > 2000:
            raise _bad("webhook_url", "a URL of at most 2000 characters, or empty for no webhook.")
        url = url.strip()
        if url:
            webhooks.check_url(url, at_delivery=False)
        out["webhook_url"] = url
    return out


def _taken(function: Function, environment: Environment, name: str) -> Conflict:
    return Conflict(
        f"Function '{function.name}' already has an alert rule named '{name}' in '{environment.name}': "
        "names are unique per function and environment.",
        code="already_exists",
        fields={"name": ["Already taken for this function and environment."]},
    )


def _save(rule: AlertRule) -> None:
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:
        raise _taken(rule.function, rule.environment, rule.name) from None


def _new_secret(rule: AlertRule) -> str:
    secret = "whsec_" + secrets.token_urlsafe(32)
    rule.webhook_secret = crypto.encrypt(secret)
    return secret


def webhook_secret_of(rule: AlertRule) -> str:
    return crypto.decrypt(bytes(rule.webhook_secret)) if rule.webhook_secret else ""


# --- rules --------------------------------------------------------------------------------------

REQUIRED = ("name", "metric", "comparison", "threshold", "window_s")


@transaction.atomic
def alert_rule_create(
    *, actor: Actor, function: Function, environment: Environment, fields: dict[str, Any]
) -> tuple[AlertRule, str]:
    """A new rule (state ok). Returns it and its webhook secret when it has a webhook (shown
    once; "" otherwise)."""
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Creating an alert rule")
    if environment.project_id != function.project_id:
        raise _bad("environment", f"'{environment.name}' is not an environment of this function's project.")
    missing = [f for f in REQUIRED if f not in fields]
    if missing:
        raise _bad(missing[0], "this field is required.")
    data = validate_rule_fields(fields)
    if AlertRule.objects.filter(function=function, environment=environment, name=data["name"]).exists():
        raise _taken(function, environment, data["name"])
    rule = AlertRule(function=function, environment=environment, created_by=signed_in(actor), **data)
    rule.state_since = timezone.now()
    secret = _new_secret(rule) if rule.webhook_url else ""
    _save(rule)
    audit_record(
        actor=actor,
        org=function.project.org,
        action="alert_rule.create",
        target=function,
        changes={"alert_rule": rule.pk, "environment": environment.name, **_audit_view(data)},
    )
    return rule, secret


def _audit_view(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "webhook_url"} | (
        {"webhook_url": bool(data["webhook_url"])} if "webhook_url" in data else {}
    )


@transaction.atomic
def alert_rule_update(
    *, actor: Actor, rule: AlertRule, fields: dict[str, Any], rotate_webhook_secret: bool = False
) -> tuple[AlertRule, str]:
    """Change some of a rule's fields. Disabling a rule that is not ok records its return to
    ok (nothing is sent). A new webhook URL, or ``rotate_webhook_secret``, makes a new secret,
    returned (shown once); "" otherwise."""
    function = rule.function
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Changing an alert rule")
    rule = AlertRule.objects.select_for_update().select_related(*selectors.RULE_RELATED).get(pk=rule.pk)
    data = validate_rule_fields(fields, metric=fields.get("metric", rule.metric))
    if "metric" in data and "threshold" not in data:
        validate_rule_fields({"threshold": rule.threshold}, metric=data["metric"])
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if getattr(rule, key) != value:
            changes[key] = [getattr(rule, key), value] if key != "webhook_url" else True
            setattr(rule, key, value)
    secret = ""
    if rule.webhook_url and ("webhook_url" in changes or rotate_webhook_secret or not rule.webhook_secret):
        secret = _new_secret(rule)
        changes["webhook_secret"] = "rotated"
    if not rule.webhook_url and rule.webhook_secret:
        rule.webhook_secret = b""
    now = timezone.now()
    if changes.get("enabled") and not rule.enabled and rule.state != AlertState.OK:
        _transition(
            rule, AlertState.OK, now, value=rule.last_value, invocations=None, note="rule disabled", notify=False
        )
    if set(changes) & {"metric", "comparison", "threshold", "window_s", "min_invocations", "for_s", "enabled"}:
        rule.next_evaluation_at = None  # the changed condition is looked at by the next sweep
    if changes:
        _save(rule)
        audit_record(
            actor=actor,
            org=function.project.org,
            action="alert_rule.update",
            target=function,
            changes={"alert_rule": rule.pk, **changes},
        )
    return rule, secret


@transaction.atomic
def alert_rule_delete(*, actor: Actor, rule: AlertRule) -> None:
    function = rule.function
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Deleting an alert rule")
    audit_record(
        actor=actor,
        org=function.project.org,
        action="alert_rule.delete",
        target=function,
        changes={"alert_rule": rule.pk, "name": rule.name, "environment": rule.environment.name},
    )
    rule.delete()


# --- evaluation: the state machine --------------------------------------------------------------

_COMPARE = {
    Comparison.GT: lambda v, t: v > t,
    Comparison.GTE: lambda v, t: v >= t,
    Comparison.LT: lambda v, t: v < t,
    Comparison.LTE: lambda v, t: v <= t,
}


def alerts_evaluate_due(*, now: datetime | None = None, limit: int = EVALUATION_BATCH) -> int:
    """Evaluate the enabled rules that are due, oldest due first, at most ``limit``; returns
    how many were evaluated here (a rule another evaluator holds is skipped)."""
    now = now or timezone.now()
    due = (
        AlertRule.objects.filter(enabled=True)
        .exclude(next_evaluation_at__gt=now)
        .order_by("next_evaluation_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    evaluated = 0
    for rule_id in list(due):
        if alert_rule_evaluate(rule_id=rule_id, now=now, skip_locked=True) is not None:
            evaluated += 1
    return evaluated


def alert_rule_evaluate(*, rule_id: int, now: datetime | None = None, skip_locked: bool = False) -> str | None:
    """Evaluate one rule at ``now`` if it is due: read its metric, move its state, record the
    transition and owe its notifications. Returns the state after (None: not evaluated: gone,
    disabled, not due, or held by another evaluator with ``skip_locked``)."""
    now = now or timezone.now()
    with transaction.atomic():
        rule = (
            AlertRule.objects.select_for_update(skip_locked=skip_locked, of=("self",))
            .select_related(*selectors.RULE_RELATED)
            .filter(pk=rule_id, enabled=True)
            .first()
        )
        if rule is None or (rule.next_evaluation_at is not None and rule.next_evaluation_at > now):
            return None
        reading = selectors.metric_reading(
            function_id=rule.function_id,
            environment_id=rule.environment_id,
            metric=rule.metric,
            window_s=rule.window_s,
            now=now,
        )
        enough = reading.invocations >= rule.min_invocations and reading.value is not None
        breach = enough and _COMPARE[Comparison(rule.comparison)](reading.value, rule.threshold)
        if not enough:
            note = f"not enough data ({reading.invocations} of {rule.min_invocations} invocations)"
        else:
            note = f"{rule.metric} = {reading.value:g} ({reading.invocations} invocations)"
        _advance(rule, breach=breach, now=now, value=reading.value, invocations=reading.invocations, note=note)
        rule.last_value = reading.value
        rule.last_invocations = reading.invocations
        rule.last_note = note[:200]
        rule.last_evaluated_at = now
        rule.next_evaluation_at = now + timedelta(seconds=EVALUATION_INTERVAL_S - EVALUATION_SLACK_S)
        rule.save(
            update_fields=[
                "state",
                "state_since",
                "pending_since",
                "last_value",
                "last_invocations",
                "last_note",
                "last_evaluated_at",
                "next_evaluation_at",
            ]
        )
        return rule.state


def _advance(rule: AlertRule, *, breach: bool, now: datetime, value: float | None, invocations: int, note: str) -> None:
    """ok/resolved --breach--> pending (or firing when for_s is 0); pending --held for_s-->
    firing; pending --clear--> ok; firing --clear (or no longer enough data)--> resolved;
    resolved --clear--> ok; resolved --breach--> pending/firing again."""
    S = AlertState
    args: dict[str, Any] = {"value": value, "invocations": invocations, "note": note}
    if breach:
        if rule.state in (S.OK, S.RESOLVED):
            if rule.for_s == 0:
                _transition(rule, S.FIRING, now, **args)
            else:
                _transition(rule, S.PENDING, now, **args)
                rule.pending_since = now
        elif rule.state == S.PENDING:
            since = rule.pending_since or now
            if (now - since).total_seconds() >= rule.for_s:
                _transition(rule, S.FIRING, now, **args)
    else:
        if rule.state == S.PENDING:
            _transition(rule, S.OK, now, **args)
        elif rule.state == S.FIRING:
            _transition(rule, S.RESOLVED, now, **args)
        elif rule.state == S.RESOLVED:
            _transition(rule, S.OK, now, **args)
    if rule.state != S.PENDING:
        rule.pending_since = None


def _transition(
    rule: AlertRule,
    to: str,
    now: datetime,
    *,
    value: float | None,
    invocations: int | None,
    note: str,
    notify: bool = True,
) -> AlertEvent:
    """Record ``rule``'s move to ``to`` (the caller holds its lock and saves it). Firing and
    resolved owe notifications unless a silence covers the rule; a resolve is sent only when
    its firing was (nobody is told an alert they never heard of is over)."""
    silenced = selectors.silences_covering(rule=rule, now=now).exists()
    event = AlertEvent.objects.create(
        rule=rule,
        from_state=rule.state,
        to_state=to,
        value=value,
        threshold=rule.threshold,
        invocations=invocations,
        note=note[:200],
        silenced=silenced,
        at=now,
    )
    rule.state = to
    rule.state_since = now
    if notify and not silenced and to in (AlertState.FIRING, AlertState.RESOLVED):
        if to == AlertState.RESOLVED:
            fired = rule.events.filter(to_state=AlertState.FIRING).exclude(pk=event.pk).order_by("-at", "-id").first()
            if fired is not None and fired.silenced:
                return event
        _owe_notifications(rule, event)
    return event


def _owe_notifications(rule: AlertRule, event: AlertEvent) -> None:
    from apps.alerts.tasks import notification_deliver

    channels = []
    if rule.notify_email:
        channels.append(Notification.Channel.EMAIL)
    if rule.webhook_url:
        channels.append(Notification.Channel.WEBHOOK)
    for channel in channels:
        notification = Notification.objects.create(event=event, channel=channel, next_attempt_at=event.at)
        enqueue_after_commit(notification_deliver, notification.pk)


# --- notifications ------------------------------------------------------------------------------


def _retry_base_s() -> float:
    return float(getattr(settings, "STRATUS_ALERT_RETRY_BASE_S", 10.0))


def _max_attempts() -> int:
    return int(getattr(settings, "STRATUS_ALERT_MAX_ATTEMPTS", 6))


def retry_delay_s(attempt: int) -> float:
    """Exponential backoff: base, 2·base, 4·base… after the 1st, 2nd, 3rd failed attempt."""
    return _retry_base_s() * 2 ** (attempt - 1)


def notification_payload(event: AlertEvent) -> dict[str, Any]:
    rule = event.rule
    function = rule.function
    return {
        "type": f"alert.{event.to_state}",
        "delivery": None,  # filled per notification
        "rule": {
            "id": rule.pk,
            "name": rule.name,
            "metric": rule.metric,
            "comparison": rule.comparison,
            "threshold": rule.threshold,
            "window_s": rule.window_s,
            "min_invocations": rule.min_invocations,
            "for_s": rule.for_s,
            "severity": rule.severity,
        },
        "state": event.to_state,
        "previous_state": event.from_state,
        "value": event.value,
        "invocations": event.invocations,
        "at": event.at.isoformat(),
        "function": {"id": function.pk, "name": function.name},
        "environment": rule.environment.name,
        "project": {"id": function.project_id, "name": function.project.name},
        "org": function.project.org.slug,
        "url": f"{settings.PUBLIC_URL}/projects/{function.project_id}/alerts/{rule.pk}/",
    }


def email_recipients(rule: AlertRule) -> list[str]:
    """The rule's own addresses, or the emails of the project's members (everyone who may see it)."""
    if rule.email_to:
        return list(rule.email_to)
    from guardian.shortcuts import get_users_with_perms

    from apps.tenancy.models import Membership

    project = rule.function.project
    managers = Membership.objects.filter(org=project.org, role__in=permissions.ORG_MANAGERS).values_list(
        "user__email", flat=True
    )
    granted = get_users_with_perms(project, with_group_users=True, only_with_perms_in=["view_project"])
    members = set(Membership.objects.filter(org=project.org).values_list("user_id", flat=True))
    emails = set(managers) | {u.email for u in granted if not isinstance(u, str) and u.pk in members}
    return sorted(e for e in emails if e)


def notification_deliver(*, notification_id: int, now: datetime | None = None) -> float | None:
    """One delivery attempt of a pending notification, logged as a DeliveryAttempt. Returns the
    seconds until the next attempt when it failed and may be retried, else None. Claimed with a
    conditional update, so two senders never send the same attempt."""
    now = now or timezone.now()
    claimed = Notification.objects.filter(
        pk=notification_id, status=Notification.Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + timedelta(seconds=DELIVERY_CLAIM_S))
    if not claimed:
        return None
    notification = Notification.objects.select_related(
        "event__rule__function__project__org", "event__rule__environment"
    ).get(pk=notification_id)
    rule = notification.event.rule
    attempt = notification.attempts + 1
    payload = notification_payload(notification.event) | {"delivery": notification.pk}
    started = timezone.now()
    status_code: int | None = None
    retryable = True
    if notification.channel == Notification.Channel.WEBHOOK:
        target = rule.webhook_url
        error = "" if target else "the rule has no webhook URL any more"
        retryable = bool(target)
        if target:
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Stratus-Alerts/1",
                "Stratus-Event": payload["type"],
                "Stratus-Delivery": str(notification.pk),
                webhooks.SIGNATURE_HEADER: webhooks.sign(webhook_secret_of(rule), body, int(started.timestamp())),
            }
            answer = webhooks.post(target, body, headers)
            status_code, error = answer.status_code, answer.error
            if status_code is not None and not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
                # 4xx other than 408/429: the receiver refuses this request; sending it again won't help.
                retryable = status_code >= 500 or status_code in (408, 429)
    else:
        recipients = email_recipients(rule)
        target = ", ".join(recipients)
        error = "" if recipients else "no recipients: the rule lists none and no project member has an email"
        retryable = bool(recipients)
        if recipients:
            error = _send_email(payload, recipients)
    duration_ms = (timezone.now() - started).total_seconds() * 1000
    DeliveryAttempt.objects.create(
        notification=notification,
        attempt=attempt,
        at=started,
        status_code=status_code,
        error=error[:500],
        duration_ms=duration_ms,
        target=target[:2000],
    )
    fields: dict[str, Any] = {"attempts": attempt, "last_error": error[:500]}
    delay: float | None = None
    if not error:
        fields.update(status=Notification.Status.DELIVERED, delivered_at=timezone.now(), next_attempt_at=None)
    elif retryable and attempt < _max_attempts():
        delay = retry_delay_s(attempt)
        fields["next_attempt_at"] = now + timedelta(seconds=delay)
    else:
        fields.update(status=Notification.Status.FAILED, next_attempt_at=None)
    Notification.objects.filter(pk=notification.pk).update(**fields)
    return delay


def _send_email(payload: dict[str, Any], recipients: list[str]) -> str:
    state = "FIRING" if payload["state"] == AlertState.FIRING else "RESOLVED"
    rule = payload["rule"]
    subject = f"[Stratus] {state}: {rule['name']} on {payload['function']['name']} ({payload['environment']})"
    value = "no data" if payload["value"] is None else f"{payload['value']:g}"
    body = (
        f"{state}: {rule['name']} ({rule['severity']})\n\n"
        f"Function: {payload['function']['name']} in {payload['environment']} "
        f"(project {payload['project']['name']}, org {payload['org']})\n"
        f"Condition: {rule['metric']} {rule['comparison']} {rule['threshold']:g} over {rule['window_s']} s, "
        f"at least {rule['min_invocations']} invocations\n"
        f"Value: {value} ({payload['invocations']} invocations) at {payload['at']}\n\n"
        f"Rule, history and silences: {payload['url']}\n"
    )
    try:
        EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, recipients).send(fail_silently=False)
    except Exception as exc:  # noqa: BLE001 - SMTP, DNS, socket: every failure is logged and retried
        return f"{type(exc).__name__}: {exc}"[:500]
    return ""


def notifications_requeue(*, now: datetime | None = None, limit: int = 200) -> int:
    """Pending notifications whose task was lost (a restart of the embedded worker, whose
    in-memory broker forgets queued tasks): queued again. Their claim makes this harmless when
    the task was only late."""
    from apps.alerts.tasks import notification_deliver

    now = now or timezone.now()
    lost = Notification.objects.filter(
        status=Notification.Status.PENDING, next_attempt_at__lte=now - timedelta(seconds=DELIVERY_CLAIM_S)
    ).values_list("pk", flat=True)[:limit]
    count = 0
    for pk in list(lost):
        enqueue_after_commit(notification_deliver, pk)
        count += 1
    return count


# --- silences -----------------------------------------------------------------------------------


@transaction.atomic
def silence_create(
    *,
    actor: Actor,
    function: Function,
    ends_at: datetime,
    environment: Environment | None = None,
    rule: AlertRule | None = None,
    comment: str = "",
    now: datetime | None = None,
) -> Silence:
    """Mute a rule, or every rule of the function (in one environment, or all), until ``ends_at``."""
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Silencing alerts")
    now = now or timezone.now()
    if rule is not None and rule.function_id != function.pk:
        raise _bad("rule", "the rule is not one of this function's.")
    if environment is not None and environment.project_id != function.project_id:
        raise _bad("environment", f"'{environment.name}' is not an environment of this function's project.")
    if rule is not None:
        environment = rule.environment
    if ends_at <= now:
        raise _bad("ends_at", "a silence ends in the future.")
    if (ends_at - now).total_seconds() > SILENCE_MAX_S:
        raise _bad("ends_at", "a silence lasts at most 30 days (disable the rule for longer).")
    if len(comment) > 500:
        raise _bad("comment", "at most 500 characters.")
    silence = Silence.objects.create(
        function=function,
        environment=environment,
        rule=rule,
        starts_at=now,
        ends_at=ends_at,
        comment=comment.strip(),
        created_by=signed_in(actor),
    )
    audit_record(
        actor=actor,
        org=function.project.org,
        action="alert_silence.create",
        target=function,
        changes={
            "silence": silence.pk,
            "rule": rule.pk if rule else None,
            "environment": environment.name if environment else None,
            "ends_at": ends_at.isoformat(),
        },
    )
    return silence


@transaction.atomic
def silence_expire(*, actor: Actor, silence: Silence, now: datetime | None = None) -> Silence:
    """End a silence now (one already over stays as it was)."""
    function = silence.function
    permissions.require_project_permission(actor, function.project, roles.EDIT_CODE, "Ending a silence")
    now = now or timezone.now()
    updated = Silence.objects.filter(pk=silence.pk, ends_at__gt=now).update(ends_at=now)
    if updated:
        audit_record(
            actor=actor,
            org=function.project.org,
            action="alert_silence.expire",
            target=function,
            changes={"silence": silence.pk},
        )
    silence.refresh_from_db()
    return silence
