"""A function's versions tab: the list (number, message, author, source, sha256, where each
serves), upload a zip (the service of ``POST /api/v1/functions/{id}/versions/``), one
version's files, and the diff of two versions (the selector of ``GET .../diff``). Archives
download from the API's own endpoint, which takes the session."""

from __future__ import annotations

import html
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import URLPattern, path
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods

from apps.core.errors import DomainError, NotFound
from apps.core.page_utils import domain_field_errors, field_errors, or_404
from apps.core.templatetags.console import short, when
from apps.functions import selectors, version_selectors, version_services
from apps.functions.api.version_serializers import VersionUploadSerializer
from apps.functions.models import Binding, Function, Version
from apps.functions.page_tabs import function_page_context
from apps.functions.pages.common import can_edit, form_errors
from apps.functions.pages.highlight import diff_lines, highlighted_lines
from apps.functions.traffic import Traffic

PAGE_SIZE = 50
FILE_VIEW_LIMIT = 1024 * 1024  # larger files: sizes and a download, not a page of text


def _serving(function: Function) -> dict[int, list[dict[str, Any]]]:
    """{version number: [{"environment": name, "weight": pct}, ...]}: where each version serves."""
    serving: dict[int, list[dict[str, Any]]] = {}
    for environment, traffic in Binding.objects.filter(function=function).values_list("environment__name", "traffic"):
        for entry in Traffic.parse(traffic):
            serving.setdefault(entry.version, []).append({"environment": environment, "weight": entry.weight})
    return serving


def _versions_context(request: HttpRequest, function: Function, **extra: Any) -> dict[str, Any]:
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    start = (page - 1) * PAGE_SIZE
    rows = list(version_selectors.version_list(function=function)[start : start + PAGE_SIZE + 1])
    serving = _serving(function)
    versions = rows[:PAGE_SIZE]
    return function_page_context(
        function,
        "versions",
        versions=versions,
        rows_html=_version_rows_html(function, versions, serving),
        page=page,
        next_page=page + 1 if len(rows) > PAGE_SIZE else None,
        upload_right=can_edit(request.user, function.project, "Uploading a version"),
        latest=rows[0].number if rows and page == 1 else None,
        **extra,
    )


@login_required
@require_http_methods(["GET", "POST"])
def versions_page(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    if request.method == "GET":
        return render(request, "functions/versions.html", _versions_context(request, function, form={}))

    form = {"message": request.POST.get("message", "")}
    data: dict[str, Any] = {"message": form["message"]}
    if "archive" in request.FILES:
        data["archive"] = request.FILES["archive"]
    serializer = VersionUploadSerializer(data=data)
    if not serializer.is_valid():
        errors, status = field_errors(serializer.errors), 400
    else:
        try:
            version, _ = version_services.version_create_from_zip(
                actor=request.user,
                function=function,
                upload=serializer.validated_data["archive"],
                message=serializer.validated_data["message"],
            )
        except NotFound:
            raise Http404 from None
        except DomainError as exc:
            errors, status = domain_field_errors(exc), exc.status_code
            if "__all__" in errors and exc.status_code == 400:
                errors = {"archive": errors.pop("__all__"), **errors}  # what was wrong is the zip
        else:
            count = version.artifact.file_count
            files = f"{count} file{'s' * (count != 1)}"
            messages.success(request, f"Version {version.number} created from the upload ({files}).")
            return redirect("function-versions", function_id=function.pk)
    errors = form_errors(errors, ("archive", "message"))
    context = _versions_context(request, function, form=form, errors=errors, open_upload=True)
    return render(request, "functions/versions.html", context, status=status)


def _version_rows_html(function: Function, versions: list[Version], serving: dict[int, list[dict[str, Any]]]) -> str:
    """The versions table's rows, built here rather than in a template loop (50 rows of links,
    shas and times cost Django's template engine ~30 ms of the page's 100 ms budget). Every
    value is escaped; shas, times and sizes come from the same helpers as everywhere else."""
    base = f"/functions/{function.pk}/versions/"
    api = f"/api/v1/functions/{function.pk}/versions/"
    out = []
    for v in versions:
        n = v.number
        if v.source == Version.Source.GIT:
            info = v.source_info
            ref = _esc(info.get("branch") or info.get("tag") or "")
            run = f' <span class="muted">run #{_esc(info["run"])}</span>' if info.get("run") else ""
            source = f'<span title="{_esc(info.get("repo", ""))}">git {ref}</span> {short(info.get("commit"), 10)}{run}'
        else:
            source = _esc(v.source)
        places = (
            "".join(
                f'<span class="fn-chip role-stable">{_esc(s["environment"])}'
                f"{'' if s['weight'] == 100 else ' ' + str(int(s['weight'])) + '%'}</span> "
                for s in serving.get(n, [])
            )
            or '<span class="muted">—</span>'
        )
        count = v.artifact.file_count
        diff = f'<a href="{base}diff?from={n - 1}&amp;to={n}">Diff</a>' if n > 1 else ""
        message = _esc(v.message if len(v.message) <= 90 else v.message[:89] + "…") if v.message else "—"
        out.append(
            f'<tr data-testid="version-{n}"><td class="num"><a href="{base}{n}/">v{n}</a></td>'
            f'<td class="msg">{message}</td><td>{_esc(v.author.username) if v.author else "—"}</td>'
            f"<td>{source}</td><td>{short(v.artifact.sha256, 12)}</td>"
            f'<td class="num">{filesizeformat(v.artifact.size)}<span class="muted"> · {count} file'
            f"{'s' if count != 1 else ''}</span></td><td>{places}</td><td>{when(v.created_at)}</td>"
            f'<td class="fn-row-actions"><a href="{base}{n}/">Files</a>{diff}'
            f'<a href="{api}{n}/archive" download aria-label="Download v{n} as a zip">Download</a></td></tr>'
        )
    return mark_safe("\n".join(out))  # noqa: S308 - every value above is escaped


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _version_or_404(function: Function, number: Any) -> Version:
    try:
        return version_selectors.version_get(function=function, number=int(number))
    except (NotFound, TypeError, ValueError):
        raise Http404 from None


@login_required
@require_GET
def version_page(request: HttpRequest, function_id: int, number: int) -> HttpResponse:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    version = _version_or_404(function, number)
    files = version_selectors.version_files(version=version)
    paths = sorted(files)
    selected = request.GET.get("file") or _entry_file(function, version, paths)
    if selected not in files:
        raise Http404
    data = files[selected]
    content = None
    if len(data) <= FILE_VIEW_LIMIT:
        try:
            content = highlighted_lines(selected, data.decode("utf-8"))
        except UnicodeDecodeError:
            content = None
    context = function_page_context(
        function,
        "versions",
        version=version,
        files=[{"path": p, "size": len(files[p])} for p in paths],
        selected=selected,
        selected_size=len(data),
        content=content,
        previous=version.number - 1 if version.number > 1 else None,
    )
    return render(request, "functions/version.html", context)


def _entry_file(function: Function, version: Version, paths: list[str]) -> str:
    """The file the handler names (main.handler → main.py, src/index.handler → src/index.js), else the first."""
    handler = str(version.config.get("handler") or function.handler)
    module = handler.rsplit(".", 1)[0]
    for candidate in (module.replace(".", "/") + ".py", module + ".js", module + ".mjs", module + ".cjs"):
        if candidate in paths:
            return candidate
    return paths[0] if paths else ""


@login_required
@require_GET
def diff_page(request: HttpRequest, function_id: int) -> HttpResponse:
    function = or_404(selectors.function_get, user=request.user, function_id=function_id)
    numbers = list(version_selectors.version_list(function=function).values_list("number", flat=True)[:500])
    context = function_page_context(function, "versions", numbers=numbers, diff=None)
    raw_from, raw_to = request.GET.get("from", ""), request.GET.get("to", "")
    if not raw_from and not raw_to and len(numbers) >= 2:
        raw_from, raw_to = str(numbers[1]), str(numbers[0])  # the newest change by default
    context.update({"from_": raw_from, "to": raw_to})
    try:
        old_n, new_n = int(raw_from), int(raw_to)
        if old_n < 1 or new_n < 1:
            raise ValueError
    except ValueError:
        # The API's words for the same mistake.
        context["error"] = "Give two version numbers: ?from=<n>&to=<m>."
        return render(request, "functions/diff.html", context, status=400 if (raw_from or raw_to) else 200)
    try:
        old = version_selectors.version_get(function=function, number=old_n)
        new = version_selectors.version_get(function=function, number=new_n)
    except NotFound as exc:
        context["error"] = exc.message
        return render(request, "functions/diff.html", context, status=404)
    diff = version_selectors.version_diff(old=old, new=new)
    for entry in diff["files"]["modified"]:
        entry["lines"] = diff_lines(entry["path"], entry["diff"]) if entry["diff"] is not None else None
    context["diff"] = diff
    context["unchanged"] = not (
        diff["config"] or diff["files"]["added"] or diff["files"]["removed"] or diff["files"]["modified"]
    )
    return render(request, "functions/diff.html", context)


urlpatterns: list[URLPattern] = [
    path("functions/<int:function_id>/versions/", versions_page, name="function-versions"),
    path("functions/<int:function_id>/versions/diff", diff_page, name="function-versions-diff"),
    path("functions/<int:function_id>/versions/<int:number>/", version_page, name="function-version"),
]
