from django.apps import AppConfig


class FunctionsConfig(AppConfig):
    name = "apps.functions"
    label = "functions"

    def ready(self) -> None:
        # Beat sends the refresh every third of the artifact URL lifetime; the embedded worker
        # keeps a chain going from worker_ready.
        from apps.core.periodic import beat_every
        from apps.functions import tasks

        beat_every("bindings-refresh", "apps.functions.tasks.bindings_refresh", tasks.refresh_interval_s())
