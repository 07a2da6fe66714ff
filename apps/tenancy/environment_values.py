"""What an environment gives the code that runs in it: its variables and its decrypted secrets.

The one place they are merged. Functions add a version's own variables underneath
(apps.functions.deploy_services.merged_env, used by every backend and the engine's routes);
pipeline steps with ``secrets: true`` get these as they are. Never for API responses or logs.
"""

from __future__ import annotations

from apps.tenancy.environment_services import environment_secret_values
from apps.tenancy.models import Environment


def environment_values(*, environment: Environment, secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The environment's variables, then its decrypted secrets: a secret wins over a variable
    of the same name. Reads ``environment.variables`` and ``.secrets`` through ``all()``, so a
    prefetch serves them; ``secrets`` already decrypted (a caller that masks them) are used
    as they are."""
    values = {variable.name: variable.value for variable in environment.variables.all()}
    values.update(secrets if secrets is not None else environment_secret_values(environment=environment))
    return values
