from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"
    label = "monitoring"

    def ready(self) -> None:
        from apps.core.health import register_report
        from apps.monitoring.sink import sink_report

        # Informational: what waits in memory and in the journal, written, dropped and why.
        register_report("records", sink_report)
