"""A function's environments and traffic, one-click rollback, and its timeline.

- ``/functions/<id>/environments/``: a card per environment of the project: traffic bar,
  binding status (an htmx fragment that polls only while the binding is in motion), auth
  mode, invoke URL; Deploy version → environment, Promote environment → environment, the
  header/cookie rules and sticky key, and Rollback with a dialog naming what comes back.
- ``/functions/<id>/environments/<env>/``: the same, for one environment (bookmarkable).
- ``/functions/<id>/timeline/``: the bindings' history, filtered by environment, paged.

Every action parses its input with the API's serializer and calls the API's service
(DeployView, PromoteView, RollbackView, BindingDetailView.patch), so the rules, the audit and
the messages are the same. A member without the right sees the controls disabled with the
reason in words; a forged POST gets the same words and changes nothing. A failed action
renders the page again with the errors next to the fields and the form as it was sent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import DomainError, NotFound
from apps.core.page_utils import domain_field_errors, field_errors, or_404
from apps.functions import binding_services, rollback_services, selectors, version_selectors
from apps.functions.api import serializers as s
from apps.functions.deploy_services import binding_url, deploy, environment_config_snapshot
from apps.functions.models import Binding, Function, TrafficChange, Version
from apps.functions.page_tabs import function_page_context
from apps.functions.pages.common import traffic_segments
from apps.pipelines.models import Run
from apps.releases.models import Release
from apps.tenancy import permissions
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import Environment

PAGE_SIZE = 25
RECENT_PER_ENVIRONMENT = 5
# The versions offered by the Deploy picker (newest first) and the newest timeline entries
# read for the rollback choices and the cards' recent changes: one query each, whatever the
# history's length.
VERSION_CHOICES = 100
HISTORY_SCAN = 500

REASON_WORDS: dict[str, str] = {
    TrafficChange.Reason.DEPLOY: "deploy",
    TrafficChange.Reason.RELEASE_START: "release started",
    TrafficChange.Reason.STEP: "release step",
    TrafficChange.Reason.COMPLETE: "release completed",
    TrafficChange.Reason.GATE_FAILURE: "gate failed",
    TrafficChange.Reason.ABORT: "release aborted",
    TrafficChange.Reason.ROLLBACK: "rollback",
    TrafficChange.Reason.PROMOTE: "promote",
    TrafficChange.Reason.RULES: "rules changed",
}


# --- what the pages show ---------------------------------------------------------------------------


def deploy_refusal(environment: Environment) -> str:
    """The reason, in words, why someone without the deploy right cannot act on ``environment``
    (shown next to the disabled controls, and as the answer to a forged POST)."""
    name = environment.name
    if environment.protected:
        return f"Deploying to {name} needs an admin or a deployer grant on {name}"
    return f"Deploying to {name} needs the developer role or higher on this project"


def _url(name: str, **kwargs: Any) -> str | None:
    """A page's URL, or None when no page route has that name (the page does not exist yet)."""
    try:
        return reverse(name, kwargs=kwargs)
    except NoReverseMatch:
        return None


def release_url(function: Function, release_id: int) -> str | None:
    return (
        _url("function-release", function_id=function.pk, release_id=release_id)
        or _url("release", release_id=release_id)
        or (lambda base: f"{base}#release-{release_id}" if base else None)(
            _url("function-releases", function_id=function.pk)
        )
    )


def _config_line(config: Mapping[str, Any]) -> str:
    parts = [str(config.get(key)) for key in ("runtime", "handler", "kind") if config.get(key)]
    if config.get("memory_mb"):
        parts.append(f"{config['memory_mb']} MB")
    if config.get("timeout_s"):
        parts.append(f"{config['timeout_s']} s timeout")
    if config.get("min_instances") is not None and config.get("max_instances") is not None:
        parts.append(f"{config['min_instances']}–{config['max_instances']} instances")
    return " · ".join(parts)


@dataclass
class RollbackChoice:
    """A version the rollback dialog offers: what comes back and when it last served here."""

    number: int
    version: Version | None
    default: bool
    change: TrafficChange | None  # the newest timeline entry that put it at 100% here
    config_line: str
    function_env: list[str]
    variables: dict[str, str]
    secrets: list[str]
    env_changed: bool  # the environment's variables or secrets differ from then

    @property
    def label(self) -> str:
        """The option in the dialog's picker: the version, and who put it here."""
        parts = [f"v{self.number}"]
        if self.default:
            parts.append("the previous stable version")
        if self.change is not None:
            who = self.change.actor.username if self.change.actor is not None else "system"
            parts.append(f"{REASON_WORDS.get(self.change.reason, self.change.reason)} by {who}")
        return " · ".join(parts)


@dataclass
class Card:
    environment: Environment
    binding: Binding | None
    can_deploy: bool
    reason: str
    segments: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    serving: str = ""
    release: Release | None = None
    release_url: str | None = None
    promote_sources: list[dict[str, Any]] = field(default_factory=list)
    rollback_choices: list[RollbackChoice] = field(default_factory=list)
    rollback_reason: str = ""
    current_config: dict[str, Any] = field(default_factory=dict)
    recent: list[TrafficChange] = field(default_factory=list)
    rule_rows: list[dict[str, Any]] = field(default_factory=list)
    sticky_source: str = ""
    sticky_name: str = ""
    errors: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def polling(self) -> bool:
        return binding_in_motion(self.binding)


def binding_in_motion(binding: Binding | None) -> bool:
    """Pending: the traffic changed and the backend has not confirmed it yet."""
    return binding is not None and binding.status == Binding.Status.PENDING


def _rule_rows(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [{**rule, "version": str(rule.get("version", "")), "errors": []} for rule in rules]
    rows.append({"source": "header", "name": "", "match": "equals", "value": "", "version": "", "errors": []})
    return rows


def _cards(user: Any, function: Function, only: str | None = None) -> tuple[list[Card], list[Version]]:
    """The environment cards, in a number of queries that does not grow with the history."""
    all_environments = list(tenancy_selectors.environment_list(project=function.project))
    environments = all_environments
    if only is not None:
        environments = [e for e in all_environments if e.name == only]
        if not environments:
            raise Http404
    bindings = {b.environment_id: b for b in selectors.binding_list(function=function)}
    versions = list(version_selectors.version_list(function=function)[:VERSION_CHOICES])
    by_number = {v.number: v for v in versions}
    history: dict[int, list[TrafficChange]] = defaultdict(list)
    for change in selectors.function_history(function=function)[:HISTORY_SCAN]:
        history[change.binding_id].append(change)
    releases = {
        r.binding_id: r
        for r in Release.objects.filter(
            binding__in=list(bindings.values()), state__in=Release.ACTIVE_STATES
        ).select_related("stable_version", "version")
    }
    serving_alone = {env_id: rollback_services.sole_version(b.traffic) for env_id, b in bindings.items()}
    names = {e.pk: e.name for e in all_environments}

    cards = []
    for environment in environments:
        allowed = permissions.can_deploy(user, environment)
        binding = bindings.get(environment.pk)
        card = Card(
            environment=environment,
            binding=binding,
            can_deploy=allowed,
            reason="" if allowed else deploy_refusal(environment),
        )
        card.promote_sources = [
            {"name": names[env_id], "version": number}
            for env_id, number in serving_alone.items()
            if number is not None and env_id != environment.pk and env_id in names
        ]
        if binding is None:
            card.rollback_reason = f"Not deployed to {environment.name} yet: nothing to roll back"
            card.rule_rows = _rule_rows([])
            cards.append(card)
            continue
        binding.environment = environment
        card.segments = traffic_segments(binding.traffic)
        card.url = binding_url(binding)
        card.serving = rollback_services.describe_traffic(binding.traffic)
        card.release = releases.get(binding.pk)
        if card.release is not None:
            card.release_url = release_url(function, card.release.pk)
        card.recent = history[binding.pk][:RECENT_PER_ENVIRONMENT]
        card.rule_rows = _rule_rows(binding.header_rules or [])
        card.sticky_source, _, card.sticky_name = (binding.sticky_key or "").partition(":")
        _rollback_choices(card, function, binding, history[binding.pk], by_number)
        cards.append(card)
    return cards, versions


def _rollback_choices(
    card: Card, function: Function, binding: Binding, history: list[TrafficChange], by_number: dict[int, Version]
) -> None:
    """What Rollback would bring back (the service's own choice, ``previous_stable``) and the
    other versions that served 100% here, newest first, each with who put it there and when."""
    current = rollback_services.sole_version(binding.traffic)
    default = rollback_services.previous_stable(binding=binding, release=card.release)
    last_served: dict[int, TrafficChange] = {}
    for entry in history:
        number = rollback_services.sole_version(entry.to_traffic)
        if number is not None and number != current and number not in last_served:
            last_served[number] = entry
    numbers = list(last_served)
    if default is not None and default not in last_served:
        numbers.insert(0, default)
    if not numbers:
        card.rollback_reason = f"Nothing to roll back to: no earlier version served 100% in {binding.environment.name}"
        return
    missing = [n for n in numbers if n not in by_number]
    if missing:
        by_number.update(
            {v.number: v for v in function.versions.select_related("artifact", "author").filter(number__in=missing)}
        )
    card.current_config = environment_config_snapshot(function=function, environment=binding.environment)
    for number in numbers:
        change = last_served.get(number)
        version = by_number.get(number)
        snapshot = change.config_snapshot if change is not None else {}
        card.rollback_choices.append(
            RollbackChoice(
                number=number,
                version=version,
                default=number == default,
                change=change,
                config_line=_config_line(version.config) if version is not None else "",
                function_env=sorted((version.config.get("env") or {}) if version is not None else {}),
                variables=dict(snapshot.get("variables") or {}),
                secrets=list(snapshot.get("secrets") or []),
                env_changed=bool(snapshot)
                and (
                    snapshot.get("variables") != card.current_config.get("variables")
                    or snapshot.get("secrets") != card.current_config.get("secrets")
                ),
            )
        )
    if default is None:  # only other choices (cannot happen while previous_stable walks the same timeline)
        card.rollback_choices[0].default = True


def _page(
    request: HttpRequest,
    function: Function,
    *,
    only: str | None = None,
    failed: tuple[str, str, dict[str, list[str]]] | None = None,
    status: int = 200,
) -> HttpResponse:
    cards, versions = _cards(request.user, function, only)
    if failed is not None:
        env_name, form, errors = failed
        for card in cards:
            if card.environment.name == env_name:
                # "__all__" cannot be read in a template: errors not about one field are "general".
                card.errors[form] = {("general" if key == "__all__" else key): v for key, v in errors.items()}
                card.data[form] = request.POST
                if form == "rules":
                    card.rule_rows, card.sticky_source, card.sticky_name = _posted_rules(request.POST, errors)
    context = function_page_context(
        function,
        "environments",
        cards=cards,
        versions=versions,
        only=only,
        versions_url=_url("function-versions", function_id=function.pk),
        timeline_url=reverse("function-timeline", kwargs={"function_id": function.pk}),
    )
    return render(request, "functions/environments.html", context, status=status)


# --- pages --------------------------------------------------------------------------------------


@login_required
@require_GET
def environments_page(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    return _page(request, function)


@login_required
@require_GET
def environment_page(request: HttpRequest, function_id: int, environment: str) -> HttpResponse:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    return _page(request, function, only=environment)


@login_required
@require_GET
def environment_status(request: HttpRequest, function_id: int, environment: str) -> HttpResponse:
    """The status part of a card (htmx): polls itself while the binding is in motion."""
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    binding = or_404(selectors.binding_get, function=function, environment_name=environment)
    context = {"function": function, "binding": binding, "env_name": binding.environment.name}
    return render(request, "functions/_env_status.html", context)


@login_required
@require_GET
def timeline_page(request: HttpRequest, function_id: int) -> HttpResponse:
    """Every traffic change of the function's bindings, newest first; the same rows as
    GET /api/v1/functions/{id}/bindings/{env}/history, for all environments or one."""
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    environments = list(tenancy_selectors.environment_list(project=function.project))
    env_filter = request.GET.get("env", "")
    if env_filter and env_filter not in {e.name for e in environments}:
        env_filter = ""
    changes = selectors.function_history(function=function, environment_name=env_filter)
    page = Paginator(changes, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    # Links to the pipeline runs that built the versions: one query for the page.
    run_numbers = {
        row.version.source_info.get("run")
        for row in rows
        if row.version is not None and isinstance(row.version.source_info, dict)
    } - {None}
    runs = dict(
        Run.objects.filter(project=function.project, number__in=run_numbers).values_list("number", "pk")
        if run_numbers
        else []
    )
    entries = []
    for row in rows:
        run_number = row.version.source_info.get("run") if row.version is not None else None
        entries.append(
            {
                "change": row,
                "reason": REASON_WORDS.get(row.reason, row.reason),
                "from": rollback_services.describe_traffic(row.from_traffic),
                "to": rollback_services.describe_traffic(row.to_traffic),
                "release_url": release_url(function, row.release_id) if row.release_id else None,
                "run_number": run_number if run_number in runs else None,
                "run_url": _url("run", run_id=runs[run_number]) if run_number in runs else None,
                "version_url": _url("function-version", function_id=function.pk, number=row.version.number)
                if row.version is not None
                else None,
            }
        )
    context = function_page_context(
        function,
        "timeline",
        environments=environments,
        env_filter=env_filter,
        page=page,
        entries=entries,
    )
    return render(request, "functions/timeline.html", context)


# --- actions --------------------------------------------------------------------------------------


def _target(request: HttpRequest, function_id: int, environment: str) -> tuple[Function, Environment]:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    env = or_404(tenancy_selectors.environment_get, project=function.project, name=environment)
    return function, env


def _done(request: HttpRequest, function: Function, environment: Environment, text: str) -> HttpResponse:
    messages.success(request, text)
    return redirect(reverse("function-environments", kwargs={"function_id": function.pk}) + f"#env-{environment.name}")


def _failed(
    request: HttpRequest,
    function: Function,
    environment: Environment,
    form: str,
    errors: dict[str, list[str]],
    status: int,
    summary: str,
) -> HttpResponse:
    """The page again, the errors next to the fields and the form as it was sent."""
    messages.error(request, summary)
    return _page(request, function, failed=(environment.name, form, errors), status=status)


def _refuse(request: HttpRequest, function: Function, environment: Environment, form: str) -> HttpResponse | None:
    """The same refusal as the disabled controls show, before any parsing (nothing changes)."""
    if permissions.can_deploy(request.user, environment):
        return None
    reason = deploy_refusal(environment)
    return _failed(request, function, environment, form, {"__all__": [reason]}, 403, reason + ".")


def _domain_failure(
    request: HttpRequest, function: Function, environment: Environment, form: str, exc: DomainError, what: str
) -> HttpResponse:
    status = 400 if isinstance(exc, NotFound) else exc.status_code  # a wrong number in a form, not a missing page
    return _failed(request, function, environment, form, domain_field_errors(exc), status, f"{what}: {exc.message}")


@login_required
@require_POST
def environment_deploy(request: HttpRequest, function_id: int, environment: str) -> HttpResponse:
    """Deploy version → environment at 100% (POST /api/v1/functions/{id}/deploy)."""
    function, env = _target(request, function_id, environment)
    refusal = _refuse(request, function, env, "deploy")
    if refusal is not None:
        return refusal
    body: dict[str, Any] = {"environment": env.name, "version": request.POST.get("version", "")}
    if request.POST.get("auth_mode"):
        body["auth_mode"] = request.POST["auth_mode"]
    serializer = s.DeploySerializer(data=body)
    what = f"Deploy to {env.name} failed"
    if not serializer.is_valid():
        return _failed(request, function, env, "deploy", field_errors(serializer.errors), 400, f"{what}.")
    data = serializer.validated_data
    try:
        version = version_selectors.version_get(function=function, number=data["version"])
        binding = deploy(
            actor=request.user, function=function, environment=env, version=version, auth_mode=data.get("auth_mode")
        )
    except NotFound as exc:
        return _failed(request, function, env, "deploy", {"version": [exc.message]}, 400, f"{what}: {exc.message}")
    except DomainError as exc:
        return _domain_failure(request, function, env, "deploy", exc, what)
    return _done(request, function, env, f"v{version.number} deployed to {env.name}: {binding_url(binding)}")


@login_required
@require_POST
def environment_promote(request: HttpRequest, function_id: int, environment: str) -> HttpResponse:
    """What another environment serves at 100% → this one (POST /api/v1/functions/{id}/promote)."""
    function, env = _target(request, function_id, environment)
    refusal = _refuse(request, function, env, "promote")
    if refusal is not None:
        return refusal
    serializer = s.PromoteSerializer(
        data={"from_environment": request.POST.get("from_environment", ""), "environment": env.name}
    )
    what = f"Promote to {env.name} failed"
    if not serializer.is_valid():
        return _failed(request, function, env, "promote", field_errors(serializer.errors), 400, f"{what}.")
    try:
        source = tenancy_selectors.environment_get(
            project=function.project, name=serializer.validated_data["from_environment"]
        )
    except NotFound as exc:
        return _failed(
            request, function, env, "promote", {"from_environment": [exc.message]}, 400, f"{what}: {exc.message}"
        )
    try:
        binding = rollback_services.function_promote(
            actor=request.user, function=function, from_environment=source, to_environment=env
        )
    except DomainError as exc:
        return _domain_failure(request, function, env, "promote", exc, what)
    served = rollback_services.describe_traffic(binding.traffic)
    return _done(request, function, env, f"{source.name} promoted to {env.name}: {env.name} serves {served} now.")


@login_required
@require_POST
def environment_rollback(request: HttpRequest, function_id: int, environment: str) -> HttpResponse:
    """Back to the previous stable version, or the one picked in the dialog
    (POST /api/v1/functions/{id}/rollback)."""
    function, env = _target(request, function_id, environment)
    refusal = _refuse(request, function, env, "rollback")
    if refusal is not None:
        return refusal
    body: dict[str, Any] = {"environment": env.name}
    if request.POST.get("version"):
        body["version"] = request.POST["version"]
    serializer = s.RollbackSerializer(data=body)
    what = f"Rollback of {env.name} failed"
    if not serializer.is_valid():
        return _failed(request, function, env, "rollback", field_errors(serializer.errors), 400, f"{what}.")
    try:
        binding = rollback_services.function_rollback(
            actor=request.user,
            function=function,
            environment=env,
            version_number=serializer.validated_data.get("version"),
        )
    except DomainError as exc:
        return _domain_failure(request, function, env, "rollback", exc, what)
    return _done(
        request,
        function,
        env,
        f"{env.name} rolled back: it serves {rollback_services.describe_traffic(binding.traffic)} now.",
    )


def _posted_rules(post: Any, errors: dict[str, list[str]]) -> tuple[list[dict[str, Any]], str, str]:
    """The rules rows as sent (for the page after a refusal), each with its own errors."""
    rows = [
        {"source": src, "name": name, "match": match, "value": value, "version": version, "errors": []}
        for src, name, match, value, version in zip(
            post.getlist("rule_source"),
            post.getlist("rule_name"),
            post.getlist("rule_match"),
            post.getlist("rule_value"),
            post.getlist("rule_version"),
            strict=False,
        )
    ]
    sent = [i for i, row in enumerate(rows) if not _blank(row)]
    for message in errors.get("header_rules", []):
        prefix, _, rest = message.partition(": ")
        index = prefix.removeprefix("rule ")
        if prefix.startswith("rule ") and index.isdigit() and int(index) < len(sent):
            rows[sent[int(index)]]["errors"].append(rest)
    if not rows or not _blank(rows[-1]):
        rows.append({"source": "header", "name": "", "match": "equals", "value": "", "version": "", "errors": []})
    return rows, post.get("sticky_source", ""), post.get("sticky_name", "")


def _blank(row: Mapping[str, Any]) -> bool:
    return not (str(row.get("name", "")).strip() or str(row.get("value", "")).strip())


def _rules_from(post: Any) -> list[dict[str, Any]]:
    """The rows of the rules editor as the API's header_rules (empty rows dropped; a version
    that is not a number is passed on as sent, for the service to name)."""
    rules = []
    for src, name, match, value, version in zip(
        post.getlist("rule_source"),
        post.getlist("rule_name"),
        post.getlist("rule_match"),
        post.getlist("rule_value"),
        post.getlist("rule_version"),
        strict=False,
    ):
        row = {"source": src, "name": name.strip(), "match": match, "value": value, "version": version.strip()}
        if _blank(row):
            continue
        number: Any = int(row["version"]) if row["version"].isdigit() else row["version"]
        rules.append({**row, "version": number})
    return rules


@login_required
@require_POST
def environment_rules(request: HttpRequest, function_id: int, environment: str) -> HttpResponse:
    """Header/cookie rules, sticky key and auth mode (PATCH /api/v1/functions/{id}/bindings/{env})."""
    function, env = _target(request, function_id, environment)
    refusal = _refuse(request, function, env, "rules")
    if refusal is not None:
        return refusal
    what = f"Routing rules of {env.name} not saved"
    source, name = request.POST.get("sticky_source", ""), request.POST.get("sticky_name", "").strip()
    body = {
        "header_rules": _rules_from(request.POST),
        "sticky_key": f"{source}:{name}" if source else "",
        "auth_mode": request.POST.get("auth_mode", ""),
    }
    serializer = s.BindingRulesSerializer(data=body)
    if not serializer.is_valid():
        return _failed(request, function, env, "rules", field_errors(serializer.errors), 400, f"{what}.")
    try:
        binding = selectors.binding_get(function=function, environment_name=env.name)
    except NotFound as exc:
        return _failed(request, function, env, "rules", {"__all__": [exc.message]}, 400, f"{what}: {exc.message}")
    try:
        binding_services.binding_rules_set(actor=request.user, binding=binding, **serializer.validated_data)
    except DomainError as exc:
        return _domain_failure(request, function, env, "rules", exc, what)
    return _done(request, function, env, f"Routing rules of {env.name} saved.")


urlpatterns: list[URLPattern] = [
    path("functions/<int:function_id>/environments/", environments_page, name="function-environments"),
    path("functions/<int:function_id>/timeline/", timeline_page, name="function-timeline"),
    path("functions/<int:function_id>/environments/<str:environment>/", environment_page, name="function-environment"),
    path(
        "functions/<int:function_id>/environments/<str:environment>/status",
        environment_status,
        name="function-environment-status",
    ),
    path(
        "functions/<int:function_id>/environments/<str:environment>/deploy",
        environment_deploy,
        name="function-environment-deploy",
    ),
    path(
        "functions/<int:function_id>/environments/<str:environment>/promote",
        environment_promote,
        name="function-environment-promote",
    ),
    path(
        "functions/<int:function_id>/environments/<str:environment>/rollback",
        environment_rollback,
        name="function-environment-rollback",
    ),
    path(
        "functions/<int:function_id>/environments/<str:environment>/rules",
        environment_rules,
        name="function-environment-rules",
    ),
]
