from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "apps.pipelines"
    label = "pipelines"

    def ready(self) -> None:
        # Beat sends the reaper every 15 s (runs whose worker vanished, queued runs whose
        # task was lost); the embedded worker keeps a chain going from worker_ready.
        from apps.pipelines import tasks
        from console.celery import app

        schedule = dict(app.conf.beat_schedule or {})
        schedule.setdefault(
            "pipelines-reap", {"task": "apps.pipelines.tasks.runs_reap", "schedule": float(tasks.REAP_INTERVAL_S)}
        )
        app.conf.beat_schedule = schedule
