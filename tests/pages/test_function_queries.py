"""Issue 14's performance rule: the project overview, the functions page and the versions tab
issue as many queries for 200 functions (or versions) as for 10. The projects are built as
bench/pages.py builds its big one (3 environments, every function bound in each, prod split
between two versions). The render times themselves: `python -m bench.pages`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from apps.tenancy import project_services
from apps.tenancy.roles import Role
from bench.pages import populate
from tests.conftest import World


def queries_of(client: Client, path: str) -> int:
    # A wrapper rather than CaptureQueriesContext: the Client's request_started resets the log.
    count = 0

    def counting(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal count
        count += 1
        return execute(sql, params, many, context)

    client.get(path)  # warm: sessions, content types
    with connection.execute_wrapper(counting):
        response = client.get(path)
    assert response.status_code == 200, path
    return count


@pytest.fixture
def projects(world: World) -> dict[str, Any]:
    made = {}
    for size, slug in ((10, "small"), (200, "big")):
        project = project_services.project_create(actor=world.alice, org=world.alpha, slug=slug, name=slug)
        project_services.project_grant_set(actor=world.alice, project=project, role=Role.DEVELOPER, user=world.bob)
        made[slug] = (project, populate(project=project, actor=world.alice, functions=size, versions=3))
    for versions, slug in ((10, "few-versions"), (200, "many-versions")):
        project = project_services.project_create(actor=world.alice, org=world.alpha, slug=slug, name=slug)
        project_services.project_grant_set(actor=world.alice, project=project, role=Role.DEVELOPER, user=world.bob)
        made[slug] = (project, populate(project=project, actor=world.alice, functions=1, versions=versions))
    return made


def test_the_project_pages_query_the_same_for_10_and_200_functions(world: World, projects: dict[str, Any]) -> None:
    bob = Client()
    bob.force_login(world.bob)  # a developer: rights come from grants, the slower path
    for page in ("/projects/{}/", "/projects/{}/functions/"):
        small = queries_of(bob, page.format(projects["small"][0].pk))
        big = queries_of(bob, page.format(projects["big"][0].pk))
        assert small == big, (page, small, big)
    # and the rows are all there
    html = bob.get(f"/projects/{projects['big'][0].pk}/").content.decode()
    assert html.count('<tr data-testid="function-fn-') == 200
    assert html.count("v2 · 90%") == 200 and html.count("v3 · 10%") == 200  # prod's split, per function


def test_the_versions_tab_queries_the_same_for_10_and_200_versions(world: World, projects: dict[str, Any]) -> None:
    bob = Client()
    bob.force_login(world.bob)
    few = projects["few-versions"][1][0]
    many = projects["many-versions"][1][0]
    for page in ("/functions/{}/versions/", "/functions/{}/", "/functions/{}/settings/"):
        assert queries_of(bob, page.format(few.pk)) == queries_of(bob, page.format(many.pk)), page
    html = bob.get(f"/functions/{many.pk}/versions/").content.decode()
    assert html.count('<tr data-testid="version-') == 50  # a page of them, then "Older"
    assert 'href="?page=2"' in html
