"""Console pages of alerts: a project's Alerts page (rules of every function, create form,
recent transitions, silences) and one rule's page (edit, history, delivery log, silence it,
delete). Reads go through the caller-scoped selectors (another org's project or rule is a
404, as in the API); writes call the same services as the API, and a refusal comes back as
the service's own message on the page it came from."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.alerts import selectors, services
from apps.alerts.models import AlertRule, Comparison, Metric, Severity
from apps.core.errors import DomainError
from apps.core.page_utils import or_404, refused
from apps.functions import selectors as function_selectors
from apps.tenancy import permissions, roles
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import Project

WRITE_REASON = "Changing alert rules and silences needs the developer role (or higher) on this project."
SILENCE_CHOICES = ((30, "30 minutes"), (60, "1 hour"), (240, "4 hours"), (1440, "1 day"), (10080, "7 days"))


def _project(request: HttpRequest, project_id: int) -> Project:
    return or_404(tenancy_selectors.project_get, user=request.user, project_id=project_id)


def _rule(request: HttpRequest, project_id: int, alert_rule_id: int) -> AlertRule:
    rule = or_404(selectors.alert_rule_get, user=request.user, alert_rule_id=alert_rule_id)
    if rule.function.project_id != project_id:
        raise Http404
    return rule


def _can_write(request: HttpRequest, project: Project) -> bool:
    return roles.EDIT_CODE in permissions.project_permissions(request.user, project)


def _choices() -> dict[str, Any]:
    return {
        "metrics": Metric.choices,
        "comparisons": Comparison.choices,
        "severities": Severity.choices,
        "silence_choices": SILENCE_CHOICES,
    }


def _number(text: str) -> Any:
    """A form's number as the API would get it (int when whole); text that is no number is
    passed on as is, so the service's message names the rule."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def _fields_from_form(post: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": post.get("name", ""),
        "metric": post.get("metric", ""),
        "comparison": post.get("comparison", ""),
        "threshold": _number(post.get("threshold", "")),
        "severity": post.get("severity", "warning"),
        "notify_email": post.get("notify_email") == "on",
        # The edit form has the checkbox (absent when unticked); the create form has none.
        "enabled": post.get("enabled") == "on" if "enabled_present" in post else True,
        "email_to": [e.strip() for e in post.get("email_to", "").replace(";", ",").split(",") if e.strip()],
        "webhook_url": post.get("webhook_url", ""),
    }
    for name, form_name, factor in (("window_s", "window_min", 60), ("min_invocations", "min_invocations", 1)):
        value = _number(post.get(form_name, ""))
        fields[name] = value * factor if isinstance(value, int) else value
    fields["for_s"] = _number(post.get("for_s", "0") or "0")
    return fields


@login_required
@require_GET
def project_alerts(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project(request, project_id)
    rules = list(selectors.alert_rule_list(project=project))
    functions = list(function_selectors.function_list(project=project))
    context = {
        "project": project,
        "section": "alerts",
        "rows": selectors.rows_with_silences(rules),
        "firing": sum(1 for r in rules if r.state == "firing"),
        "functions": functions,
        "environments": list(tenancy_selectors.environment_list(project=project)),
        "events": list(selectors.alert_event_list(project=project)[:20]),
        "silences": list(selectors.silence_list(project=project).filter(ends_at__gt=timezone.now())[:50]),
        "can_write": _can_write(request, project),
        "write_reason": WRITE_REASON,
        "selected_function": request.GET.get("function", ""),
        **_choices(),
    }
    return render(request, "alerts/alerts.html", context)


def _rule_context(request: HttpRequest, rule: AlertRule, **extra: Any) -> dict[str, Any]:
    project = rule.function.project
    until = selectors.silenced_until(rules=[rule])
    return {
        "project": project,
        "section": "alerts",
        "rule": rule,
        "silenced_until": until.get(rule.pk),
        "events": list(selectors.alert_event_list(rule=rule)[:50]),
        "notifications": list(selectors.notification_list(rule=rule)[:20]),
        "silences": list(selectors.silence_list(function=rule.function).filter(ends_at__gt=timezone.now())),
        "can_write": _can_write(request, project),
        "write_reason": WRITE_REASON,
        "window_min": rule.window_s // 60,
        **_choices(),
        **extra,
    }


@login_required
@require_GET
def alert_rule_page(request: HttpRequest, project_id: int, alert_rule_id: int) -> HttpResponse:
    rule = _rule(request, project_id, alert_rule_id)
    return render(request, "alerts/rule.html", _rule_context(request, rule))


@login_required
@require_POST
def alert_rule_create(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project(request, project_id)
    back = reverse("project-alerts", kwargs={"project_id": project.pk})
    try:
        chosen = _number(request.POST.get("function", ""))
        function = function_selectors.function_list(project=project).filter(pk=chosen).first()
        if function is None:
            raise DomainError("function: choose one of this project's functions.", fields={"function": ["Choose one."]})
        environment = tenancy_selectors.environment_get(project=project, name=request.POST.get("environment", ""))
        rule, secret = services.alert_rule_create(
            actor=request.user, function=function, environment=environment, fields=_fields_from_form(request.POST)
        )
    except (DomainError, ValueError) as exc:
        if isinstance(exc, ValueError):
            exc = DomainError("function: choose one of this project's functions.")
        return refused(request, exc, back)
    messages.success(request, f"Alert rule '{rule.name}' created.")
    if secret:  # shown once: rendered here, never put in the session's messages
        return render(request, "alerts/rule.html", _rule_context(request, rule, webhook_secret=secret))
    return redirect(reverse("alert-rule-page", kwargs={"project_id": project.pk, "alert_rule_id": rule.pk}))


@login_required
@require_POST
def alert_rule_edit(request: HttpRequest, project_id: int, alert_rule_id: int) -> HttpResponse:
    rule = _rule(request, project_id, alert_rule_id)
    back = reverse("alert-rule-page", kwargs={"project_id": project_id, "alert_rule_id": rule.pk})
    try:
        rule, secret = services.alert_rule_update(
            actor=request.user,
            rule=rule,
            fields=_fields_from_form(request.POST),
            rotate_webhook_secret=request.POST.get("rotate_webhook_secret") == "on",
        )
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, f"Alert rule '{rule.name}' saved.")
    if secret:
        return render(request, "alerts/rule.html", _rule_context(request, rule, webhook_secret=secret))
    return redirect(back)


@login_required
@require_POST
def alert_rule_delete(request: HttpRequest, project_id: int, alert_rule_id: int) -> HttpResponse:
    rule = _rule(request, project_id, alert_rule_id)
    back = reverse("alert-rule-page", kwargs={"project_id": project_id, "alert_rule_id": rule.pk})
    if request.POST.get("confirm", "") != rule.name:
        messages.error(request, f"Type the rule's name ('{rule.name}') to delete it.")
        return redirect(back)
    try:
        services.alert_rule_delete(actor=request.user, rule=rule)
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, f"Alert rule '{rule.name}' deleted.")
    return redirect(reverse("project-alerts", kwargs={"project_id": project_id}))


@login_required
@require_POST
def alert_rule_silence(request: HttpRequest, project_id: int, alert_rule_id: int) -> HttpResponse:
    """Silence this rule, or every rule of its function (scope=function), for a while."""
    rule = _rule(request, project_id, alert_rule_id)
    back = reverse("alert-rule-page", kwargs={"project_id": project_id, "alert_rule_id": rule.pk})
    minutes = _number(request.POST.get("minutes", ""))
    if not isinstance(minutes, int) or minutes <= 0:
        messages.error(request, "Choose how long the silence lasts.")
        return redirect(back)
    whole_function = request.POST.get("scope") == "function"
    try:
        services.silence_create(
            actor=request.user,
            function=rule.function,
            rule=None if whole_function else rule,
            ends_at=timezone.now() + timedelta(minutes=minutes),
            comment=request.POST.get("comment", ""),
        )
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, "Silenced." if not whole_function else f"Every rule of {rule.function.name} silenced.")
    return redirect(back)


@login_required
@require_POST
def silence_expire(request: HttpRequest, project_id: int, silence_id: int) -> HttpResponse:
    silence = or_404(selectors.silence_get, user=request.user, silence_id=silence_id)
    if silence.function.project_id != project_id:
        raise Http404
    back = request.POST.get("back", "")
    if not back.startswith(f"/projects/{project_id}/alerts/"):
        back = reverse("project-alerts", kwargs={"project_id": project_id})
    try:
        services.silence_expire(actor=request.user, silence=silence)
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, "Silence ended.")
    return redirect(back)


P = "projects/<int:project_id>/alerts/"
urlpatterns = [
    path(P, project_alerts, name="project-alerts"),
    path(f"{P}rules", alert_rule_create, name="alert-rule-create"),
    path(f"{P}<int:alert_rule_id>/", alert_rule_page, name="alert-rule-page"),
    path(f"{P}<int:alert_rule_id>/edit", alert_rule_edit, name="alert-rule-edit"),
    path(f"{P}<int:alert_rule_id>/delete", alert_rule_delete, name="alert-rule-delete"),
    path(f"{P}<int:alert_rule_id>/silence", alert_rule_silence, name="alert-rule-silence"),
    path(f"{P}silences/<int:silence_id>/expire", silence_expire, name="silence-expire-page"),
]
