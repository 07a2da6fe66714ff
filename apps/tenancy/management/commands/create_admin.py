"""The first user of a production installation (and any operator after it): a user who can
sign in to the console and use the Django admin, optionally owning a new organization, with
an API token printed once.

    manage.py create_admin ops --email ops@example.com --password-file /run/secrets/ops \\
        --org acme --org-name "Acme Corp." --token bootstrap

The password comes from --password-file, else STRATUS_ADMIN_PASSWORD, else (a new user) is
generated and printed once. Running it again for the same user changes nothing but what it
is asked (a new password when one is given, the org membership, a new token): safe in a
provisioning script.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.tenancy import org_services, token_services
from apps.tenancy.models import ApiToken, Organization
from apps.tenancy.operators import make_operator
from apps.tenancy.roles import Role

User = get_user_model()
ALL_SCOPES = [s.value for s in ApiToken.Scope]


class Command(BaseCommand):
    help = "Create (or update) an operator: staff for /admin/, optionally owner of a new org, with an API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--password-file", help="read the password from this file (else STRATUS_ADMIN_PASSWORD)")
        parser.add_argument("--org", help="slug of an organization to create (or join) as its owner")
        parser.add_argument("--org-name", help="the organization's name (default: the slug)")
        parser.add_argument("--token", metavar="NAME", help="create an API token with this name and print it once")
        parser.add_argument(
            "--scopes", default=",".join(ALL_SCOPES), help="the token's scopes, comma-separated (default: all)"
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        password = self._password(options["password_file"])
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        unknown = sorted(set(scopes) - set(ALL_SCOPES))
        if unknown:
            raise CommandError(f"unknown scope(s) {', '.join(unknown)}: choose from {', '.join(ALL_SCOPES)}")

        user = User.objects.filter(username=username).first()
        generated = ""
        if user is None:
            if not password:
                password = generated = secrets.token_urlsafe(18)
            user = User.objects.create_user(username=username, email=options["email"], password=password)
            self.stdout.write(f"created user={username}")
        else:
            if password:
                user.set_password(password)
                user.save(update_fields=["password"])
            self.stdout.write(f"updated user={username}")
        make_operator(user)
        if generated:
            self.stdout.write(f"password={generated}  (generated: shown once)")

        if options["org"]:
            slug = options["org"]
            org = Organization.objects.filter(slug=slug).first()
            if org is None:
                org = org_services.org_create(actor=user, slug=slug, name=options["org_name"] or slug)
                self.stdout.write(f"created org={slug} (owner: {username})")
            else:
                org_services.membership_ensure(user=user, org=org, role=Role.OWNER)
                self.stdout.write(f"org={slug}: {username} is an owner")

        if options["token"]:
            _, plaintext = token_services.token_create(user=user, name=options["token"], scopes=scopes)
            self.stdout.write(f"token={plaintext}  (scopes: {','.join(scopes)}; shown once)")

    @staticmethod
    def _password(path: str | None) -> str:
        if path:
            try:
                return Path(path).read_text().strip()
            except OSError as exc:
                raise CommandError(f"cannot read --password-file {path}: {exc.strerror}") from None
        return os.environ.get("STRATUS_ADMIN_PASSWORD", "")
