from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"
    label = "monitoring"

    def ready(self) -> None:
        from apps.core.health import register_report
        from apps.functions.routes import function_deleted
        from apps.monitoring.sink import sink_report

        # A deleted function's live-tail watchers are closed (apps/monitoring/tail.py).
        function_deleted.subscribe(_close_watchers_of_deleted_function)

        # Informational: what waits in memory and in the journal, written, dropped and why.
        register_report("records", sink_report)


def _close_watchers_of_deleted_function(function_id: int) -> None:
    from apps.monitoring.services import function_deleted_publish

    function_deleted_publish(function_id=function_id)
