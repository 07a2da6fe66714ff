"""Pipeline steps are tenant code: a step tries to reach the host's services, private
addresses, other processes and the host's files, and every attempt must fail, while what its
target environment allow-lists works. Needs root (CI runs as root)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from apps.pipelines import runner
from apps.pipelines.models import Run
from apps.tenancy.environment_services import environment_update
from apps.tenancy.models import Environment
from tests.pipelines.conftest import GitRepo, make_repository
from tests.pipelines.test_runs import _pipeline_repo, push
from tests.prerequisites import missing, needs

pytestmark = needs(os.geteuid() == 0, "confining steps needs the worker to run as root")

PROBE = r"""
import errno, json, os, socket, sys
targets = json.loads(sys.argv[1])
for host, port in targets:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(5)
        try:
            s.connect((host, port))
            result = "connected"
        except OSError as exc:
            result = errno.errorcode.get(exc.errno, str(exc)) if exc.errno else type(exc).__name__
    print(f"net {host}:{port} {result}")
print("procs", len([p for p in os.listdir("/proc") if p.isdigit()]))
with socket.socket(socket.AF_UNIX) as s:
    try:
        s.connect("/var/run/postgresql/.s.PGSQL.5432")
        print("pgsock connected")
    except OSError as exc:
        print("pgsock", errno.errorcode[exc.errno])
for path in ("/etc/stratus-step-was-here", "/tmp/stratus-step-scratch"):
    try:
        with open(path, "w") as f:
            f.write("x")
        print("write", path, "ok")
    except OSError as exc:
        print("write", path, errno.errorcode[exc.errno])
print("groups", os.getgroups())
"""


@pytest.fixture
def live_world(transactional_db: None) -> Any:
    from tests.conftest import build_world

    return build_world()


def _outputs(run: Run) -> dict[str, str]:
    found = {}
    for text in run.log_lines.filter(stream="stdout").values_list("text", flat=True):
        key, _, value = text.rpartition(" ")
        found[key] = value
    return found


def test_a_step_reaches_no_host_service_and_only_what_its_environment_allows(
    live_world: Any, git_repo: GitRepo, tcp_listener: int, settings: Any
) -> None:
    import json

    from apps.pipelines import step_sandbox

    support = step_sandbox.host_support()
    if not all(support.get(k) is True for k in ("namespace", "private", "tmpfs", "hidepid", "readonly_root")):
        missing(f"this host gives steps no private mounts: {support}")
    if not step_sandbox.firewall().available:
        missing(f"this host enforces no egress policy: {step_sandbox.firewall().problem}")
    other = socket.socket()  # a loopback service nobody allowed
    other.bind(("127.0.0.1", 0))
    other.listen(1)
    console_port = settings.STRATUS_LISTEN_PORTS[0]
    dev = Environment.objects.get(project=live_world.web, name="dev")
    environment_update(actor=live_world.alice, environment=dev, egress_allow=[f"127.0.0.1:{tcp_listener}"])
    targets = [
        ["127.0.0.1", tcp_listener],
        ["127.0.0.1", other.getsockname()[1]],
        ["127.0.0.1", console_port],
        ["127.0.0.1", 5432],
        ["127.0.0.1", 6379],
        ["10.1.2.3", 80],
        ["169.254.169.254", 80],
    ]
    git_repo.write({"probe.py": PROBE})
    steps = f"  - name: probe\n    run: /usr/bin/python3 probe.py '{json.dumps(targets)}'\n"
    sha = _pipeline_repo(git_repo, steps)  # commits probe.py too (written into the work tree)
    run = push(make_repository(live_world.web, str(git_repo.origin)), sha)

    try:
        assert runner.run_execute(run.pk) == Run.State.SUCCEEDED, Run.objects.get(pk=run.pk).reason
    finally:
        other.close()

    out = _outputs(run)
    assert out[f"net 127.0.0.1:{tcp_listener}"] == "connected"  # allow-listed for dev, the target
    for host, port in targets[1:]:
        assert out[f"net {host}:{port}"] == "EHOSTUNREACH", (host, port, out)
    assert out["procs"] == "1"  # hidepid: the step sees its own process only
    assert out["pgsock"] == "ENOENT"  # /run is hidden
    assert out["write /etc/stratus-step-was-here"] == "EROFS"
    assert out["write /tmp/stratus-step-scratch"] == "ok"  # its own private /tmp ...
    assert not os.path.exists("/tmp/stratus-step-scratch")  # ... not the host's
    uid = settings.STRATUS_PIPELINE_UID_BASE + run.pk
    assert out["groups"] == f"[{uid}]" or out["groups"] == "[]"
    # The run is over: its uid's rules are gone.
    assert f"id-{uid}" not in _nft_chains()


def _nft_chains() -> str:
    import subprocess

    return subprocess.run(["nft", "list", "chains", "inet"], capture_output=True, text=True, check=False).stdout
