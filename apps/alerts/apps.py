from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "apps.alerts"
    label = "alerts"
    verbose_name = "Alert rules, their evaluation and notifications"

    def ready(self) -> None:
        # Production runs `celery -A console beat`: it sends the evaluation every 30 s. The
        # embedded default has no beat; there the worker_ready kick keeps a chain going
        # (apps.alerts.tasks).
        from apps.alerts.tasks import EVALUATION_INTERVAL_S
        from apps.core.periodic import beat_every

        beat_every("alerts-evaluate", "apps.alerts.tasks.alerts_evaluate", EVALUATION_INTERVAL_S)
