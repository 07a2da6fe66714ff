"""``{% alert_banner %}`` in the base layout: the firing alerts of the project (or function)
the page shows. One indexed query, and none on pages without a project."""

from __future__ import annotations

from typing import Any

from django import template

from apps.alerts.selectors import firing_for_banner

register = template.Library()
LIMIT = 3


@register.inclusion_tag("alerts/_banner.html", takes_context=True)
def alert_banner(context: Any) -> dict[str, Any]:
    project = context.get("project")
    function = context.get("function")
    if project is None or not hasattr(project, "pk") or not getattr(context.get("user"), "is_authenticated", False):
        return {"rules": []}
    # The page's project is already scoped to the viewer (it was read through project_get or
    # function_get); a function of another project is not taken.
    if function is not None and getattr(function, "project_id", None) != project.pk:
        function = None
    rules = firing_for_banner(project=project, function=function, limit=LIMIT)
    return {"rules": rules[:LIMIT], "more": len(rules) > LIMIT, "project": project, "function": function}
