from celery import shared_task

from apps.functions.deploy_services import binding_apply_revision


@shared_task
def binding_apply(binding_id: int, revision: int) -> None:
    """Apply one revision of a binding on its backend (idempotent; stale revisions no-op)."""
    binding_apply_revision(binding_id=binding_id, revision=revision)
