"""Seed the demo: org `demo` (alice owner, bob developer, carol viewer), project `shop`
with dev/staging/prod, and dave, owner of another org `acme`. alice is also an operator
(staff: she can use /admin/; apps/tenancy/operators.py). Idempotent: a second run
changes nothing and prints the same lines (the last one: where functions are served from).
Demo tokens are derived from the secret key (HMAC), so they can be printed again although
only their hash is stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.tenancy import org_services, project_services, token_services
from apps.tenancy.models import ApiToken, Organization, Project
from apps.tenancy.operators import make_operator
from apps.tenancy.roles import Role

User = get_user_model()

DEMO_USERS = [
    # username, password, org, org role, role on project shop (None: by org role)
    ("alice", "alice-demo-pass", "demo", Role.OWNER, None),
    ("bob", "bob-demo-pass", "demo", Role.DEVELOPER, Role.DEVELOPER),
    ("carol", "carol-demo-pass", "demo", Role.VIEWER, Role.VIEWER),
    ("dave", "dave-demo-pass", "acme", Role.OWNER, None),
]
ORGS = {"demo": "Demo Inc.", "acme": "Acme Corp."}
TOKEN_NAME = "demo (seed_demo)"
ALL_SCOPES = [s.value for s in ApiToken.Scope]


class Command(BaseCommand):
    help = "Create the demo org, users and project (idempotent) and print their logins and API tokens."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        users = {}
        for username, password, _, _, _ in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                user = User.objects.create_user(username=username, email=f"{username}@example.com", password=password)
            users[username] = user
        orgs = {}
        for slug, name in ORGS.items():
            owner = next(users[u] for u, _, o, r, _ in DEMO_USERS if o == slug and r == Role.OWNER)
            org = Organization.objects.filter(slug=slug).first() or org_services.org_create(
                actor=owner, slug=slug, name=name
            )
            orgs[slug] = org
        for username, _, org_slug, role, _ in DEMO_USERS:
            org_services.membership_ensure(user=users[username], org=orgs[org_slug], role=role)
        alice = users["alice"]
        make_operator(alice)  # the demo's /admin/ user
        shop = Project.objects.filter(org=orgs["demo"], slug="shop").first() or project_services.project_create(
            actor=alice, org=orgs["demo"], slug="shop", name="Shop", description="The demo web shop"
        )
        for username, _, _, _, project_role in DEMO_USERS:
            if project_role is not None:
                project_services.project_grant_set(actor=alice, project=shop, role=project_role, user=users[username])

        for username, password, *_ in DEMO_USERS:
            plaintext = demo_token(username)
            if not ApiToken.objects.filter(token_hash=token_services.token_hash(plaintext)).exists():
                token_services.token_import(
                    user=users[username], name=TOKEN_NAME, scopes=ALL_SCOPES, plaintext=plaintext
                )
            self.stdout.write(f"user={username} password={password} token={plaintext}")
        # Next to the console's URL (`make run` prints it): where invoke URLs point.
        self.stdout.write(
            f"Functions are served from {settings.STRATUS_FUNCTIONS_URL} "
            "(/fn/<org>/<project>/<environment>/<function>/: an origin of their own, no console cookie reaches them)"
        )


def demo_token(username: str) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), f"stratus-demo-token:{username}".encode(), hashlib.sha256)
    return token_services.TOKEN_PREFIX + base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")
