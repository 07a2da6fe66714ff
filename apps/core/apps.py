from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        # Imported for what they register: the deploy checks (origins; database and Redis
        # credentials), the OpenAPI auth extension.
        from apps.core import checks, schema, service_checks  # noqa: F401
        from apps.core.health import register_report
        from apps.core.outbox import pending_report
        from apps.core.periodic import beat_every
        from apps.core.tasks import DRAIN_INTERVAL_S

        # Tasks that state changes still owe the broker (apps/core/outbox.py).
        beat_every("outbox-drain", "apps.core.tasks.outbox_drain", DRAIN_INTERVAL_S)
        # /readyz shows how many wait and for how long: a stuck broker is seen there.
        register_report("outbox", pending_report)
