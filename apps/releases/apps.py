from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "apps.releases"
    label = "releases"
    verbose_name = "Batch gray releases and rollbacks"

    def ready(self) -> None:
        # Production runs `celery -A console beat` beside the workers: it sends the sweep
        # every 10 s (gates of manual releases, auto steps whose task was lost). The embedded
        # default has no beat; there the worker_ready kick keeps a sweep chain going
        # (apps.releases.tasks).
        from apps.core.periodic import beat_every
        from apps.releases.tasks import SWEEP_INTERVAL_S

        beat_every("releases-sweep", "apps.releases.tasks.releases_sweep", SWEEP_INTERVAL_S)
