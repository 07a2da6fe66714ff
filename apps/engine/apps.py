from django.apps import AppConfig


class EngineConfig(AppConfig):
    name = "apps.engine"
    label = "engine"
    verbose_name = "Local execution engine and gateway"

    def ready(self) -> None:
        from apps.core.health import register_report
        from apps.engine.host import isolation_report

        register_report("isolation", isolation_report)
