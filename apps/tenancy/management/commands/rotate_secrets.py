from typing import Any

from django.core.management.base import BaseCommand

from apps.tenancy.environment_services import secrets_rotate


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of STRATUS_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"re-encrypted {secrets_rotate()} secrets")
