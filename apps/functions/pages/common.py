"""Shared reads of the function pages (overview.py, versions.py, function_settings.py): the
rights a page shows as enabled or disabled with a reason, the traffic bar's segments, and the
functions table of a project, read in a fixed number of queries whatever its size.

The reasons are the words a user reads next to a disabled control; the services still decide
(a forged POST is refused by the same service the API calls, and its message is shown)."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.urls import NoReverseMatch, reverse
from django.utils.safestring import SafeString, mark_safe

from apps.audit.models import AuditEvent
from apps.core.templatetags.console import badge, when
from apps.functions.models import Binding, Function, Runtime, TrafficChange
from apps.functions.traffic import CANARY, STABLE, Traffic
from apps.releases.models import Release
from apps.tenancy import permissions, roles
from apps.tenancy.models import Environment, Project

EDIT_REASON = "{action} needs a developer role on this project"
# The kind select's words (the model's labels are too long for a form column).
KIND_SHORT = [("event", "Event handler"), ("http", "HTTP app (WSGI/ASGI)")]
ACTIVITY_LIMIT = 12


@dataclass(frozen=True)
class Right:
    allowed: bool
    reason: str = ""


def can_edit(user: Any, project: Project, action: str) -> Right:
    """``action``: the words of the sentence, e.g. "Creating functions"."""
    if roles.EDIT_CODE in permissions.project_permissions(user, project):
        return Right(True)
    return Right(False, EDIT_REASON.format(action=action))


def route(name: str, **kwargs: Any) -> str:
    """A page of another engineer's module when it exists, else ""."""
    try:
        return reverse(name, kwargs=kwargs)
    except NoReverseMatch:
        return ""


def traffic_segments(traffic: Traffic | Iterable[Mapping[str, Any]], canary: int | None = None) -> list[dict[str, Any]]:
    """A binding's traffic as the traffic bar draws it ({% traffic_bar %}), the one rule for
    every page: a version's tag (a release tags its versions stable/canary) names its role;
    untagged, the active release's version (``canary``) is the canary and the others stable;
    a version serving alone is plainly the stable one."""
    split = traffic if isinstance(traffic, Traffic) else Traffic.parse(traffic)
    segments = []
    for entry in split:
        role = entry.tag if entry.tag in (STABLE, CANARY) else ""
        if not role and len(split) == 1:
            role = STABLE
        elif not role and canary is not None:
            role = CANARY if entry.version == canary else STABLE
        segments.append({"version": entry.version, "weight": entry.weight, "role": role})
    return segments


def active_canaries(bindings: Iterable[int]) -> dict[int, int]:
    """{binding id: version number of its active release} in one query."""
    return dict(
        Release.objects.filter(binding_id__in=list(bindings), state__in=Release.ACTIVE_STATES).values_list(
            "binding_id", "version__number"
        )
    )


@dataclass
class BindingCell:
    """What the functions table shows of one binding (a row of ``values()``, not a model)."""

    status: str
    segments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EnvCell:
    environment: Environment
    binding: BindingCell | None


@dataclass
class FunctionRow:
    function: dict[str, Any]  # pk, name, runtime, kind, description, last_deploy_at, last_deploy_by
    cells: list[EnvCell]


def _functions_with_last_deploy(project: Project) -> QuerySet[Function, dict[str, Any]]:
    # The newest traffic change of any of the function's bindings (a rules-only change is not
    # a deploy): correlated subqueries in the one query, not a query per row.
    last = (
        TrafficChange.objects.filter(binding__function=OuterRef("pk"))
        .exclude(reason=TrafficChange.Reason.RULES)
        .order_by("-created_at", "-id")
    )
    return (
        Function.objects.filter(project=project)
        .annotate(
            last_deploy_at=Subquery(last.values("created_at")[:1]),
            last_deploy_by=Subquery(last.values("actor__username")[:1]),
        )
        .order_by("name")
        .values("pk", "name", "runtime", "kind", "description", "last_deploy_at", "last_deploy_by")
    )


def function_table(*, project: Project, environments: list[Environment]) -> list[FunctionRow]:
    """Every function of ``project`` with, per environment, what it serves and the binding's
    status. Three queries (functions with their last deploy, bindings, active releases),
    however many functions, environments and versions there are; rows as dicts, not models
    (200 functions × 3 environments: model instances alone would cost ~15 ms)."""
    functions = list(_functions_with_last_deploy(project))
    bindings = list(
        Binding.objects.filter(function__project=project).values_list(
            "id", "function_id", "environment_id", "traffic", "status"
        )
    )
    canaries = active_canaries(b[0] for b in bindings) if bindings else {}
    by_key = {
        (function_id, env_id): BindingCell(status, traffic_segments(traffic, canaries.get(pk)))
        for pk, function_id, env_id, traffic, status in bindings
    }
    runtimes = dict(Runtime.choices)
    rows = []
    for function in functions:
        function["runtime_label"] = runtimes.get(function["runtime"], function["runtime"])
        cells = [EnvCell(env, by_key.get((function["pk"], env.pk))) for env in environments]
        rows.append(FunctionRow(function, cells))
    return rows


def environment_summary(rows: list[FunctionRow], environments: list[Environment]) -> list[dict[str, Any]]:
    """Per environment: how many functions it serves, by binding status."""
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        for cell in row.cells:
            if cell.binding is not None:
                counts[cell.environment.pk][cell.binding.status] += 1
    out = []
    for env in environments:
        by_status = counts.get(env.pk, {})
        out.append(
            {
                "environment": env,
                "deployed": sum(by_status.values()),
                "statuses": sorted(by_status.items()),
                "backend": env.execution_backend or "default",
            }
        )
    return out


def project_activity(*, project: Project, limit: int = ACTIVITY_LIMIT) -> list[AuditEvent]:
    """The project's newest audit events: the project itself and anything under it (functions,
    versions, bindings and environments are recorded as ``<org>/<project>/...``)."""
    under = Q(target_repr__startswith=f"{project}/") | Q(target_type="project", target_id=str(project.pk))
    return list(AuditEvent.objects.filter(under, org_id=project.org_id).order_by("-created_at", "-id")[:limit])


def form_errors(errors: Mapping[str, list[str]], fields: Iterable[str]) -> dict[str, list[str]]:
    """Errors for a template: those of the form's own fields by name, everything else (not
    about one field, or about a field this form does not show) under "form" with its name.
    (Templates cannot read a key starting with an underscore, such as "__all__".)"""
    known = set(fields)
    out: dict[str, list[str]] = {}
    for key, messages in errors.items():
        if key in known:
            out.setdefault(key, []).extend(messages)
        elif key == "__all__":
            out.setdefault("form", []).extend(messages)
        else:
            out.setdefault("form", []).extend(f"{key}: {m}" for m in messages)
    return out


def sparkline_svg(spark: Mapping[str, Any] | None) -> str:
    """24 hourly points of invocations (and errors, in red) as a tiny inline SVG: no script,
    so it draws under the console's CSP and without JavaScript. Empty text when nothing ran."""
    if not spark or not any(spark["invocations"]):
        return '<span class="muted">no calls</span>'
    calls, errors = spark["invocations"], spark["errors"]
    width, height, top = 96, 22, max(max(calls), 1)
    step = width / max(len(calls) - 1, 1)

    def points(values: list[int]) -> str:
        return " ".join(f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in enumerate(values))

    total, failed = sum(calls), sum(errors)
    label = f"{total:,} invocations, {failed:,} errors in the last 24 hours"
    error_line = f'<polyline points="{points(errors)}" class="spark-errors"/>' if failed else ""
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{label}"><title>{label}</title><polyline points="{points(calls)}" class="spark-calls"/>'
        f"{error_line}</svg>"
    )


def function_rows_html(rows: list[FunctionRow], sparks: Mapping[int, Any] | None = None) -> SafeString:
    """The functions table's rows as HTML, built here rather than in a template loop: a
    project of 200 functions × 3 environments is 800 cells, which Django's template engine
    renders in ~150 ms and this in a few (the page budget is 100 ms: bench/pages.py). Every value
    is escaped; the badge and the time come from the same tags as everywhere else."""
    link = reverse("function", kwargs={"function_id": 1}).replace("/1/", "/{}/")
    badges: dict[str, str] = {}
    out: list[str] = []
    for row in rows:
        f = row.function
        desc = f'<div class="muted fn-desc">{_esc(_truncate(f["description"], 80))}</div>' if f["description"] else ""
        cells = []
        for cell in row.cells:
            env = _esc(cell.environment.name)
            if cell.binding is None:
                cells.append(f'<td data-env="{env}"><span class="muted" title="not deployed to {env}">—</span></td>')
                continue
            chips = "".join(_chip(s) for s in cell.binding.segments) or '<span class="muted">no traffic</span>'
            status = cell.binding.status
            if status not in badges:
                badges[status] = str(badge(status))
            cells.append(f'<td data-env="{env}"><span class="fn-chips">{chips}</span> {badges[status]}</td>')
        if f["last_deploy_at"]:
            who = _esc(f["last_deploy_by"] or "system")
            last = f'{when(f["last_deploy_at"])}<span class="muted"> · {who}</span>'
        else:
            last = '<span class="muted">never deployed</span>'
        name = _esc(f["name"])
        spark = ""
        if sparks is not None:
            spark = f'<td data-testid="spark-{name}">{sparkline_svg(sparks.get(f["pk"]))}</td>'
        out.append(
            f'<tr data-testid="function-{name}"><th scope="row"><a href="{link.format(f["pk"])}">{name}</a>{desc}</th>'
            f"<td>{_esc(f['runtime_label'])}</td><td>{_esc(f['kind'])}</td>{''.join(cells)}<td>{last}</td>"
            + spark
            + "</tr>"
        )
    return mark_safe("\n".join(out))  # noqa: S308 - every value above is escaped


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _chip(segment: Mapping[str, Any]) -> str:
    role = segment.get("role") or ""
    version, weight = int(segment["version"]), int(segment["weight"])
    title = f"version {version} takes {weight}% of requests" + (f" ({role})" if role else "")
    share = "" if weight == 100 else f" · {weight}%"
    return f'<span class="fn-chip role-{_esc(role or "plain")}" title="{title}">v{version}{share}</span>'


def _truncate(value: str, length: int) -> str:
    return value if len(value) <= length else value[: length - 1] + "…"
