"""A deploy made in one process is routed by another at once, over Redis pub/sub
(``stratus:<instance>:routes``), not at the periodic resync: this process (the control plane
that deploys, serving the supervisor) and a real second web process (``uvicorn
console.asgi:application`` in a subprocess, remote engine) whose resync is an hour away."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.engine.conftest import deploy_latest, make_function, url, wait_for
from tests.engine.test_token_revocation import redis_url, supervisor, web_process  # noqa: F401

HOUR_S = 3600


def test_a_deploy_in_one_process_is_routed_by_another_well_before_its_resync(
    world: Any,
    settings: Any,
    supervisor: Path,  # noqa: F811
    redis_url: str,  # noqa: F811
) -> None:
    # Given another web process that resyncs its routes only once an hour, up and answering
    fn = make_function(world, "spread", {"main.py": "def handler(event, context):\n    return {'v': 1}\n"})
    with web_process(settings, supervisor, redis_url, resync_s=HOUR_S) as other:
        assert other.get(url(fn)).status_code == 404  # nothing deployed: not routed there

        # When this process deploys the function
        deployed_at = time.monotonic()
        deploy_latest(world, fn)

        # Then the other routes it within seconds (the announcement), not at its resync
        wait_for(lambda: other.get(url(fn)).status_code == 200, timeout=30, interval=0.1)
        assert time.monotonic() - deployed_at < HOUR_S / 10
        assert other.get(url(fn)).json() == {"v": 1}
