from django.apps import AppConfig


class FunctionsConfig(AppConfig):
    name = "apps.functions"
    label = "functions"

    def ready(self) -> None:
        # Beat sends the refresh every third of the artifact URL lifetime; the embedded worker
        # keeps a chain going from worker_ready.
        from apps.functions import tasks
        from console.celery import app

        schedule = dict(app.conf.beat_schedule or {})
        schedule.setdefault(
            "bindings-refresh",
            {"task": "apps.functions.tasks.bindings_refresh", "schedule": float(tasks.refresh_interval_s())},
        )
        app.conf.beat_schedule = schedule
