"""Celery work for bindings (ids only; every task re-reads the rows).

- ``binding_apply(binding_id, revision)``: apply one revision on the binding's backend.
- ``bindings_refresh``: every ``refresh_interval_s()`` (beat, set in apps.functions.apps) and
  when a worker comes up: backends renew what they handed out that expires (Knative's signed
  artifact URLs, valid STRATUS_ARTIFACT_URL_TTL_S). Without beat (the embedded worker) each
  run queues the next, as the releases sweep does.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.core.periodic import chain_next, start_on_worker_ready
from apps.functions.deploy_services import binding_apply_revision
from apps.functions.deploy_services import bindings_refresh as refresh_all

_REFRESH_CHAIN_KEY = "stratus:functions:refresh:chain"


def refresh_interval_s() -> int:
    """A third of the URL lifetime: a URL is renewed twice before it could expire, so one
    failed or late run leaves every binding still serving a valid one."""
    return max(60, int(settings.STRATUS_ARTIFACT_URL_TTL_S) // 3)


@shared_task
def binding_apply(binding_id: int, revision: int) -> None:
    """Apply one revision of a binding on its backend (idempotent; stale revisions no-op)."""
    binding_apply_revision(binding_id=binding_id, revision=revision)


@shared_task
def bindings_refresh(chain: bool = False) -> tuple[int, int]:
    interval = refresh_interval_s()
    if chain and not chain_next(bindings_refresh, key=_REFRESH_CHAIN_KEY, interval_s=interval, gap_s=interval // 2):
        return (0, 0)  # another chain is alive
    return refresh_all()


start_on_worker_ready(bindings_refresh)
