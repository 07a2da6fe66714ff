"""A function's settings tab: runtime knobs, kind, handler and variables, through the same
serializer and service as ``PATCH /api/v1/functions/{id}/``; and delete, with a typed
confirmation (the function's name), through the service of ``DELETE``."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.errors import DomainError, NotFound
from apps.core.page_utils import domain_field_errors, field_errors, or_404, refused
from apps.functions import selectors, services
from apps.functions.api.serializers import FunctionConfigSerializer
from apps.functions.knobs import KNOB
from apps.functions.models import Function, Runtime
from apps.functions.page_tabs import function_page_context
from apps.functions.pages.common import KIND_SHORT, can_edit, form_errors

# (field, label, unit, min, max, help): the knobs as number inputs (apps/functions/knobs.py).
KNOBS: tuple[tuple[str, str, str, int, int | None, str], ...] = tuple(
    (k.name, k.label, k.unit, k.min, k.max, k.help) for k in KNOB.values()
)
TEXT_FIELDS = ("runtime", "handler", "kind", "description")


def _env_text(env: dict[str, str]) -> str:
    return "\n".join(f"{k}={v}" for k, v in sorted(env.items()))


def _parse_env(text: str) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    errors = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            errors.append(f"Line {number}: write NAME=value.")
            continue
        env[name.strip()] = value
    return env, errors


def _form_of(function: Function) -> dict[str, Any]:
    form: dict[str, Any] = {name: getattr(function, name) for name in TEXT_FIELDS}
    form.update({knob[0]: getattr(function, knob[0]) for knob in KNOBS})
    form["env"] = _env_text(function.env)
    return form


def _render(
    request: HttpRequest, function: Function, form: dict[str, Any], errors: dict[str, list[str]], status: int = 200
) -> HttpResponse:
    errors = form_errors(errors, (*TEXT_FIELDS, *(k[0] for k in KNOBS), "env"))
    knobs = [
        {
            "name": name,
            "label": label,
            "unit": unit,
            "min": low,
            "max": high,
            "help": help_text,
            "value": form.get(name, ""),
            "errors": errors.get(name),
        }
        for name, label, unit, low, high, help_text in KNOBS
    ]
    context = function_page_context(
        function,
        "settings",
        form=form,
        errors=errors,
        knobs=knobs,
        runtimes=Runtime.choices,
        kinds=KIND_SHORT,
        edit_right=can_edit(request.user, function.project, "Changing a function's settings"),
        delete_right=can_edit(request.user, function.project, "Deleting a function"),
    )
    return render(request, "functions/settings.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def function_settings(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    if request.method == "GET":
        return _render(request, function, _form_of(function), {})

    form = {name: request.POST.get(name, "") for name in (*TEXT_FIELDS, *(k[0] for k in KNOBS), "env")}
    # The API's PATCH body: the fields the form sends (blank numbers are left out, unchanged).
    data: dict[str, Any] = {name: form[name] for name in TEXT_FIELDS if name in request.POST}
    data.update({k[0]: form[k[0]].strip() for k in KNOBS if form[k[0]].strip()})
    errors: dict[str, list[str]] = {}
    if "env" in request.POST:
        data["env"], env_errors = _parse_env(form["env"])
        if env_errors:
            errors["env"] = env_errors
    serializer = FunctionConfigSerializer(data=data)
    if not serializer.is_valid():
        errors = {**field_errors(serializer.errors), **errors}
    if errors:
        return _render(request, function, form, errors, status=400)
    try:
        services.function_update(actor=request.user, function=function, **serializer.validated_data)
    except NotFound:
        raise Http404 from None
    except DomainError as exc:
        return _render(request, function, form, domain_field_errors(exc), status=exc.status_code)
    messages.success(request, "Settings saved. New versions use them; deployed versions keep theirs.")
    return redirect("function-settings", function_id=function.pk)


@login_required
@require_POST
def function_delete(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    back = f"/functions/{function.pk}/settings/"
    if request.POST.get("confirm_name", "").strip() != function.name:
        messages.error(request, f"Type the function's name ({function.name}) to delete it. Nothing was deleted.")
        return redirect(back)
    project_id, name = function.project_id, function.name
    try:
        services.function_delete(actor=request.user, function=function)
    except DomainError as exc:
        return refused(request, exc, back)
    messages.success(request, f"Function {name} deleted, with its versions and deployments.")
    return redirect("project-functions", project_id=project_id)


urlpatterns: list[URLPattern] = [
    path("functions/<int:function_id>/settings/", function_settings, name="function-settings"),
    path("functions/<int:function_id>/delete", function_delete, name="function-delete"),
]
