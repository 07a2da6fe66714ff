import contextlib
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("stratus")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _logging(loglevel: Any = None, **kwargs: Any) -> None:
    """`celery worker -l info` / `beat -l info`: keep our JSON lines (settings.LOGGING, not
    Celery's hijacked root logger) and let Celery's own loggers speak at the level asked for,
    so task received / succeeded / failed lines show (LOGGING keeps them at WARNING for the
    embedded worker inside `serve`)."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        level = logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel
        logging.getLogger("celery").setLevel(level)


@worker_process_init.connect
def _own_process_group(**kwargs: Any) -> None:
    """A prefork pool child leaves the worker's process group. systemd (KillMode=mixed), a
    terminal's Ctrl-C or `kill -TERM -<pgid>` signals the group: the main process then does
    Celery's warm shutdown (no new tasks, those running finish) instead of every child dying
    on the spot with its task, pipeline step and all. The main process still ends its children
    itself at the end (or at a cold shutdown)."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
