from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        # Imported for what they register: the deploy checks (origins; database and Redis
        # credentials), the OpenAPI auth extension.
        from apps.core import checks, schema, service_checks  # noqa: F401
