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
        from apps.releases.tasks import SWEEP_INTERVAL_S
        from console.celery import app

        schedule = dict(app.conf.beat_schedule or {})
        schedule.setdefault(
            "releases-sweep", {"task": "apps.releases.tasks.releases_sweep", "schedule": float(SWEEP_INTERVAL_S)}
        )
        app.conf.beat_schedule = schedule
