from typing import Any

from django.apps import AppConfig


class TriggersConfig(AppConfig):
    name = "apps.triggers"
    label = "triggers"
    verbose_name = "Triggers: schedules that invoke functions"

    def ready(self) -> None:
        # The embedded default runs the scheduler's 1 s loop beside its in-process worker,
        # started and stopped with it; production runs `manage.py run_scheduler` (or sets
        # STRATUS_SCHEDULER_IN_WORKER=1 to run a loop in each Celery worker: claims are safe
        # with any number of schedulers). See apps/triggers/scheduler.py.
        from celery.signals import worker_ready, worker_shutdown
        from django.conf import settings

        if not settings.STRATUS_SCHEDULER_IN_WORKER:
            return

        def start(sender: Any = None, **kwargs: Any) -> None:
            from apps.triggers import scheduler

            scheduler.start_in_process()

        def stop(sender: Any = None, **kwargs: Any) -> None:
            from apps.triggers import scheduler

            scheduler.stop_in_process()

        worker_ready.connect(start, weak=False, dispatch_uid="triggers:scheduler-start")
        worker_shutdown.connect(stop, weak=False, dispatch_uid="triggers:scheduler-stop")
