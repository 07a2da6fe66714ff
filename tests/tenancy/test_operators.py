"""Operators (/admin/ users): the demo's alice, and `manage.py create_admin` for production."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.tenancy.models import Membership, Project
from apps.tenancy.permissions import project_permissions

pytestmark = pytest.mark.django_db
User = get_user_model()


def run(*args: str, **env: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_seed_demo_makes_alice_an_operator_who_can_use_the_admin(client):
    out = run("seed_demo")
    assert re.search(r"^user=alice password=alice-demo-pass token=stt_\S+$", out, re.M)
    alice, bob = User.objects.get(username="alice"), User.objects.get(username="bob")
    assert alice.is_staff and not alice.is_superuser and not bob.is_staff

    client.force_login(alice)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/tenancy/organization/").status_code == 200
    client.force_login(bob)
    assert client.get("/admin/").status_code == 302  # to the admin's login

    # Model permissions open the admin only: alice gets nothing on acme's projects.
    run("seed_demo")  # idempotent
    acme = Project.objects.create(org=Membership.objects.get(user__username="dave").org, slug="x", name="X")
    assert project_permissions(alice, acme) == frozenset()


def test_create_admin_creates_the_first_user_org_and_token(client, monkeypatch, tmp_path):
    monkeypatch.delenv("STRATUS_ADMIN_PASSWORD", raising=False)
    out = run("create_admin", "ops", "--email", "ops@example.com", "--org", "acme", "--org-name", "Acme", "--token", "boot")
    password = re.search(r"^password=(\S+)", out, re.M).group(1)
    token = re.search(r"^token=(stt_\S+)", out, re.M).group(1)
    ops = User.objects.get(username="ops")
    assert ops.is_staff and not ops.is_superuser and ops.check_password(password)
    assert Membership.objects.get(user=ops, org__slug="acme").role == "owner"

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/v1/me/").json()["username"] == "ops"
    created = api.post("/api/v1/projects/", {"org": "acme", "slug": "web", "name": "Web"}, format="json")
    assert created.status_code == 201, created.content
    assert client.login(username="ops", password=password)
    assert client.get("/admin/").status_code == 200

    # Again, with a password from a file: updates the password, keeps the org, prints no new password.
    secret = tmp_path / "pw"
    secret.write_text("a-long-operator-password\n")
    again = run("create_admin", "ops", "--password-file", str(secret), "--org", "acme")
    assert "password=" not in again and "token=" not in again
    ops.refresh_from_db()
    assert ops.check_password("a-long-operator-password")
    assert Membership.objects.filter(user=ops).count() == 1


def test_create_admin_reads_the_password_from_the_environment_and_checks_scopes(monkeypatch):
    monkeypatch.setenv("STRATUS_ADMIN_PASSWORD", "from-the-environment")
    out = run("create_admin", "ops2", "--token", "ci", "--scopes", "read,deploy")
    assert "password=" not in out and "(scopes: read,deploy;" in out
    assert User.objects.get(username="ops2").check_password("from-the-environment")
    with pytest.raises(CommandError, match="unknown scope"):
        run("create_admin", "ops3", "--token", "ci", "--scopes", "read,root")
