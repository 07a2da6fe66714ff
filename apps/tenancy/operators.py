"""Operators: the people who run an installation and use the Django admin (/admin/).

An operator is a staff user holding every model permission. Not a Django superuser on
purpose: django-guardian answers every object permission of a superuser with yes, which
would make them an admin of every organization's projects in the API and the console. An
operator's model permissions count only in the admin; their org roles and project grants
stay what their memberships say (apps/tenancy/permissions.py checks object permissions only).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission


def make_operator(user: Any) -> None:
    """Let ``user`` use the Django admin: staff, with every model permission."""
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    user.user_permissions.add(*Permission.objects.all())
