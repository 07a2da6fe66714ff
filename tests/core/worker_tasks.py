"""Tasks for the worker-process tests (loaded with `celery worker --include`)."""

import time
from pathlib import Path

from celery import shared_task


@shared_task(name="tests.sleep_and_touch")
def sleep_and_touch(directory: str, seconds: float) -> str:
    Path(directory, "started").touch()
    time.sleep(seconds)
    Path(directory, "done").touch()
    return "done"
