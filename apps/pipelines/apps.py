from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "apps.pipelines"
    label = "pipelines"

    def ready(self) -> None:
        # Beat sends the reaper every 15 s (runs whose worker vanished, queued runs whose
        # task was lost); the embedded worker keeps a chain going from worker_ready.
        from apps.core.periodic import beat_every
        from apps.pipelines import tasks

        beat_every("pipelines-reap", "apps.pipelines.tasks.runs_reap", tasks.REAP_INTERVAL_S)
