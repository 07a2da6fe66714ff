"""Tenant code is hostile: real function instances behind the gateway attack each other and the
host, and every attempt must fail.

- dev vs prod of one function, two functions of one project, two organizations: another
  instance's environ, memory, /tmp, ptrace, signals, the process list;
- the network: the console's port, PostgreSQL, Redis, a private address, the metadata
  address (and an allow-listed loopback port that must work);
- disk and memory: /tmp and /dev/shm past their size, memory outside the heap.

These need root (a uid per identity, mount namespaces, cgroups, nftables); elsewhere they are
skipped with the reason. CI runs as root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from apps.engine.sandbox import CGROUP_PARENT
from apps.functions.models import ExecutionIdentity
from apps.tenancy.environment_services import environment_secret_set, environment_update
from apps.tenancy.models import Environment
from tests.conftest import process_ids
from tests.engine.conftest import deploy_latest, make_function, running_as_root, url, wait_routed
from tests.prerequisites import missing, needs

pytestmark = needs(running_as_root(), "tenant isolation needs the engine to run as root (CI runs as root)")

PROBE = r"""
import ctypes, errno, json, os, signal, socket, time

libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17


def attempt(action):
    try:
        return ["ok", action()]
    except OSError as exc:
        return [errno.errorcode.get(exc.errno, str(exc.errno)), str(exc)]


def read(path, size=4096):
    with open(path, "rb") as f:
        return f.read(size).decode("latin-1")


def read_mem(pid):
    with open(f"/proc/{pid}/mem", "rb") as f:
        f.seek(0x400000)
        return f.read(16).hex()


def ptrace(pid):
    if libc.ptrace(PTRACE_ATTACH, pid, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    libc.ptrace(PTRACE_DETACH, pid, 0, 0)
    return "attached"


def connect(host, port):
    started = time.monotonic()
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(5)
        try:
            s.connect((host, port))
            result = "connected"
        except OSError as exc:
            result = errno.errorcode.get(exc.errno, str(exc)) if exc.errno else type(exc).__name__
    return [result, round(time.monotonic() - started, 2)]


def fill(path, limit_mb):
    written = 0
    chunk = b"x" * (1 << 20)
    try:
        with open(path, "wb") as f:
            while written < limit_mb << 20:
                f.write(chunk)
                f.flush()
                written += len(chunk)
        return ["ok", written >> 20]
    except OSError as exc:
        return [errno.errorcode.get(exc.errno, str(exc.errno)), written >> 20]
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


SHM_KEY = 0x5354  # a System V shared memory segment, world-readable: only the IPC namespace keeps it


def shm(create):
    segment = libc.shmget(SHM_KEY, 4096, (0o1000 | 0o666) if create else 0)  # IPC_CREAT
    if segment < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return segment


def handler(event, context):
    req = json.loads(event.get("body") or "{}")
    op = req.get("op")
    if op == "whoami":
        planted = f"/tmp/planted-{os.getpid()}.txt"
        with open(planted, "w") as f:
            f.write("planted by " + os.environ.get("WHO", "?"))
        if req.get("plant_shm"):
            shm(create=True)
        return {"pid": os.getpid(), "uid": os.getuid(), "home": os.environ["HOME"], "planted": planted,
                "secret": os.environ.get("DB_PASSWORD"),
                "visible": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
    if op == "attack":
        pid, planted = req["pid"], req["planted"]
        return {
            "environ": attempt(lambda: read(f"/proc/{pid}/environ")),
            "mem": attempt(lambda: read_mem(pid)),
            "their_tmp": attempt(lambda: read(f"/proc/{pid}/root{planted}")),
            "tmp_by_path": attempt(lambda: read(planted)),
            "cwd": attempt(lambda: os.readlink(f"/proc/{pid}/cwd")),
            "ptrace": attempt(lambda: ptrace(pid)),
            "signal0": attempt(lambda: os.kill(pid, 0)),
            "kill": attempt(lambda: os.kill(pid, signal.SIGKILL)),
            "sysv_shm": attempt(lambda: shm(create=False)),
            "visible": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        }
    if op == "connect":
        return {f"{h}:{p}": connect(h, p) for h, p in req["targets"]}
    if op == "unix":
        out = {}
        for path in req["paths"]:
            with socket.socket(socket.AF_UNIX) as s:
                out[path] = attempt(lambda: s.connect(path))[0]
        return out
    if op == "fill":
        return {path: fill(path, mb) for path, mb in req["paths"]}
    if op == "ls":
        return {path: attempt(lambda: sorted(os.listdir(path)))[0 if req.get("status") else 1] for path in req["paths"]}
    raise ValueError(op)
"""


def need(engine_host: Any, *protections: str) -> None:
    """Skip (fail under CI), naming why, where this host does not give a protection the test checks."""
    iso = engine_host.engine.spawner.isolation
    have = {
        "namespace": iso.namespace and iso.tmpfs and iso.hidepid and iso.readonly_root,
        "cgroups": iso.complete_cgroups,
        "firewall": iso.network_enforced,
    }
    for name in protections:
        if not have[name]:
            missing(f"this host gives no {name}: {iso.report()['missing']}")


def call(served: Any, function: Any, environment: str = "dev", **body: Any) -> dict[str, Any]:
    response = served.post(url(function, environment), content=json.dumps(body))
    assert response.status_code == 200, response.text
    return response.json()


def probe_function(world: Any, name: str, project: Any = None, **config: Any) -> Any:
    if project is None:
        return make_function(world, name, {"main.py": PROBE}, **config)
    from apps.functions import services, version_services

    function = services.function_create(
        actor=world.charlie, project=project, name=name, runtime="python3.11", handler="main.handler", **config
    )
    version_services.version_create(
        actor=world.charlie, function=function, files={"main.py": PROBE.encode()}, source="files"
    )
    return function


def deploy_as(world: Any, function: Any, environment: str, actor: Any) -> None:
    from apps.functions.deploy_services import binding_apply_revision, deploy

    env = Environment.objects.get(project=function.project, name=environment)
    binding = deploy(
        actor=actor, function=function, environment=env, version=function.versions.last(), auth_mode="public"
    )
    applied = binding_apply_revision(binding_id=binding.pk, revision=binding.revision)
    assert applied is not None and applied.status == "ready", applied and applied.status_message


def assert_attack_failed(result: dict[str, Any], victim: dict[str, Any]) -> None:
    # Not visible, not readable, not traceable, not signalable.
    for name in ("environ", "mem", "their_tmp", "cwd"):
        assert result[name][0] in ("ENOENT", "EACCES", "EPERM", "ESRCH"), (name, result[name])
    assert result["tmp_by_path"][0] == "ENOENT", result["tmp_by_path"]  # its own /tmp is another tmpfs
    assert result["ptrace"][0] == "EPERM", result["ptrace"]
    assert result["signal0"][0] == "EPERM", result["signal0"]
    assert result["kill"][0] == "EPERM", result["kill"]
    assert result["sysv_shm"][0] == "ENOENT", result["sysv_shm"]  # another IPC namespace
    assert victim["pid"] not in result["visible"]
    assert "planted by" not in json.dumps(result)
    assert "prod-only-password" not in json.dumps(result)


# --- identities -------------------------------------------------------------------------------


def test_dev_cannot_reach_the_prod_instance_of_the_same_function(world, engine, served):
    need(engine, "namespace")
    prod = Environment.objects.get(project=world.web, name="prod")
    environment_secret_set(actor=world.alice, environment=prod, name="DB_PASSWORD", value="prod-only-password")
    fn = probe_function(world, "shop", env={"WHO": "the function"})
    deploy_latest(world, fn, "prod")
    deploy_latest(world, fn, "dev")
    wait_routed(engine, fn, "prod")
    wait_routed(engine, fn, "dev")

    victim = call(served, fn, "prod", op="whoami", plant_shm=True)
    attacker = call(served, fn, "dev", op="whoami")

    assert victim["secret"] == "prod-only-password" and attacker["secret"] is None
    identities = {
        env.name: settings.STRATUS_SANDBOX_UID_BASE + ExecutionIdentity.objects.get(function=fn, environment=env).pk
        for env in Environment.objects.filter(project=world.web, name__in=["dev", "prod"])
    }
    assert (victim["uid"], attacker["uid"]) == (identities["prod"], identities["dev"])
    assert victim["uid"] != attacker["uid"]
    assert attacker["home"] == "/tmp"
    assert attacker["visible"] == [attacker["pid"]]  # hidepid: it sees itself only

    result = call(served, fn, "dev", op="attack", pid=victim["pid"], planted=victim["planted"])

    assert_attack_failed(result, victim)
    again = call(served, fn, "prod", op="whoami")
    assert again["pid"] == victim["pid"]  # the prod instance lives on, untouched


def test_a_function_cannot_reach_another_function_or_another_organization(world, engine, served):
    need(engine, "namespace")
    victim_fn = probe_function(world, "victim", env={"WHO": "victim"})
    attacker_fn = probe_function(world, "attacker")
    outsider_fn = probe_function(world, "outsider", project=world.outsider_project)
    deploy_latest(world, victim_fn)
    deploy_latest(world, attacker_fn)
    deploy_as(world, outsider_fn, "dev", world.charlie)
    for fn in (victim_fn, attacker_fn, outsider_fn):
        wait_routed(engine, fn)

    victim = call(served, victim_fn, op="whoami", plant_shm=True)
    for attacker in (attacker_fn, outsider_fn):
        result = call(served, attacker, op="attack", pid=victim["pid"], planted=victim["planted"])
        assert_attack_failed(result, victim)
    assert call(served, victim_fn, op="whoami")["pid"] == victim["pid"]


def test_instances_are_not_dumpable_python_and_node_alike(world, engine, served):
    node = make_function(
        world,
        "node-victim",
        {"index.js": "exports.handler = async () => ({pid: process.pid});\n"},
        runtime="node20",
        handler="index.handler",
    )
    python = probe_function(world, "py-victim")
    deploy_latest(world, node)
    deploy_latest(world, python)
    wait_routed(engine, node)
    wait_routed(engine, python)

    pids = [served.get(url(node)).json()["pid"], call(served, python, op="whoami")["pid"]]

    for pid in pids:
        # A non-dumpable process's /proc files belong to root: not even its own uid's other
        # processes can read its environ or memory or attach to it.
        st = os.stat(f"/proc/{pid}/environ")
        assert (st.st_uid, st.st_gid) == (0, 0), pid
        status = Path(f"/proc/{pid}/status").read_text()
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        assert uid >= settings.STRATUS_SANDBOX_UID_BASE
        assert "NoNewPrivs:\t1" in status


# --- files ------------------------------------------------------------------------------------


def test_tmp_and_dev_shm_are_private_size_limited_and_gone_with_the_instance(world, engine, served):
    need(engine, "namespace", "cgroups")
    fn = probe_function(world, "filler", ephemeral_storage_mb=32)
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    result = call(served, fn, op="fill", paths=[["/tmp/big", 100], ["/dev/shm/big", 100], ["/var/tmp/x", 1]])

    assert result["/tmp/big"][0] == "ENOSPC" and 28 <= result["/tmp/big"][1] <= 32, result
    assert result["/dev/shm/big"][0] == "ENOSPC" and 60 <= result["/dev/shm/big"][1] <= 64, result
    assert result["/var/tmp/x"][0] == "EROFS", result  # the rest of the tree is read-only
    assert not os.path.exists("/tmp/big")  # nothing reached the host's /tmp

    whoami = call(served, fn, op="whoami")
    planted = whoami["planted"]
    host_groups = _instance_cgroups(whoami["pid"])
    assert host_groups, "the instance runs in a cgroup of its own"
    engine.call_sync(_kill_all(engine, fn))
    after = call(served, fn, op="ls", paths=["/tmp"])
    assert os.path.basename(planted) not in after["/tmp"]  # a new instance, a fresh /tmp
    assert all(not os.path.exists(g) for g in host_groups)  # its cgroups went with it


def test_host_unix_sockets_are_hidden(world, engine, served):
    need(engine, "namespace")
    fn = probe_function(world, "sockets")
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    result = call(
        served,
        fn,
        op="unix",
        paths=["/var/run/postgresql/.s.PGSQL.5432", "/run/mysqld/mysqld.sock", "/tmp/.s.PGSQL.5432"],
    )

    assert set(result.values()) == {"ENOENT"}, result


def test_memory_outside_the_heap_is_capped_by_the_cgroup(world, engine, served):
    need(engine, "cgroups")
    # Buffers live outside V8's heap (--max-old-space-size does not see them): only the
    # instance's memory cgroup stops this one.
    fn = make_function(
        world,
        "hog",
        {
            "index.js": (
                "const kept = [];\n"
                "exports.handler = async () => {\n"
                "  for (let i = 0; i < 40; i++) kept.push(Buffer.alloc(32 * 1024 * 1024, 1));\n"
                "  return {allocated_mb: kept.length * 32};\n"
                "};\n"
            )
        },
        runtime="node20",
        handler="index.handler",
        memory_mb=128,
        ephemeral_storage_mb=16,
    )
    deploy_latest(world, fn)
    wait_routed(engine, fn)

    response = served.get(url(fn))

    assert response.status_code == 502, response.text
    assert "out of memory" in response.json()["error"]["message"].lower()


# --- network ----------------------------------------------------------------------------------


def test_functions_reach_no_host_service_and_no_private_address(world, engine, served, tcp_listener):
    need(engine, "firewall")
    fn = probe_function(world, "netprobe")
    deploy_latest(world, fn)
    wait_routed(engine, fn)
    console_port = int(served.base_url.rsplit(":", 1)[1])
    targets = [
        ["127.0.0.1", console_port],  # the console
        ["127.0.0.1", 5432],  # PostgreSQL
        ["127.0.0.1", 6379],  # Redis
        ["127.0.0.1", tcp_listener],  # a loopback service nobody allowed
        ["10.1.2.3", 80],  # a private address
        ["169.254.169.254", 80],  # the cloud metadata service
        ["::1", 6379],
    ]

    result = call(served, fn, op="connect", targets=targets)

    for target, (outcome, seconds) in result.items():
        # Refused at once by the firewall (an ICMP "administratively prohibited": IPv4 says
        # EHOSTUNREACH, IPv6 EACCES), not a timeout, not "connection refused".
        assert outcome in ("EHOSTUNREACH", "EACCES") and seconds < 2, (target, outcome, seconds)
    # The same connections from the console's own uid work: the rules touch tenant uids only.
    for port in (console_port, 5432, 6379, tcp_listener):
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_an_environments_allow_list_opens_exactly_its_entries(world, engine, served, tcp_listener):
    need(engine, "firewall")
    dev = Environment.objects.get(project=world.web, name="dev")
    environment_update(actor=world.alice, environment=dev, egress_allow=[f"127.0.0.1:{tcp_listener}", "127.0.0.0/8"])
    fn = probe_function(world, "allowed")
    other_env_fn = probe_function(world, "elsewhere")
    deploy_latest(world, fn)
    deploy_latest(world, other_env_fn, "staging")
    wait_routed(engine, fn)
    wait_routed(engine, other_env_fn, "staging")
    console_port = int(served.base_url.rsplit(":", 1)[1])

    result = call(served, fn, op="connect", targets=[["127.0.0.1", tcp_listener], ["127.0.0.1", console_port]])
    elsewhere = call(served, other_env_fn, "staging", op="connect", targets=[["127.0.0.1", tcp_listener]])

    assert result[f"127.0.0.1:{tcp_listener}"][0] == "connected"
    # 127.0.0.0/8 is allowed, but the console's port stays protected inside it.
    assert result[f"127.0.0.1:{console_port}"][0] == "EHOSTUNREACH"
    assert elsewhere[f"127.0.0.1:{tcp_listener}"][0] == "EHOSTUNREACH"  # another environment, another uid

    # Taking the entry away closes it for the next instance.
    environment_update(actor=world.alice, environment=dev, egress_allow=[])
    engine.call_sync(_kill_all(engine, fn))
    wait_routed(engine, fn)
    _wait_spec_allow(engine, fn, ())
    closed = call(served, fn, op="connect", targets=[["127.0.0.1", tcp_listener]])
    assert closed[f"127.0.0.1:{tcp_listener}"][0] == "EHOSTUNREACH"


# --- helpers ----------------------------------------------------------------------------------


def _instance_cgroups(pid: int) -> list[str]:
    groups = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if CGROUP_PARENT not in path:
            continue
        if controllers == "":
            groups.append(
                f"/sys/fs/cgroup/unified{path}" if os.path.isdir("/sys/fs/cgroup/unified") else f"/sys/fs/cgroup{path}"
            )
        elif controllers in ("memory", "pids"):
            groups.append(f"/sys/fs/cgroup/{controllers}{path}")
    return groups


async def _kill_all(engine_host: Any, fn: Any) -> None:
    for key, pool in list(engine_host.engine.pools.items()):
        if key[2] != fn.pk:
            continue
        for instance in list(pool.instances):
            instance.kill()
            await instance.spawned.wait_exit()


def _wait_spec_allow(engine_host: Any, fn: Any, wanted: tuple[str, ...]) -> None:
    from tests.engine.conftest import wait_for

    key = (fn.project.org.slug, fn.project.slug, "dev", fn.name)
    wait_for(lambda: all(rv.spec.egress_allow == wanted for rv in engine_host.engine.routes[key].versions.values()))


def test_readyz_says_what_confines_function_instances(world, engine, served):
    body = served.get("/readyz").json()

    iso = engine.engine.spawner.isolation
    assert body["isolation"] == {**iso.describe(), "complete": not iso.missing(), "missing": iso.missing()}
    assert set(body["isolation"]) >= {"identity", "filesystem", "cgroups", "network", "complete", "missing"}
    if iso.missing():  # a host without some protection names it, with the reason
        assert all(": " in line for line in body["isolation"]["missing"])
    else:
        assert body["isolation"]["network"] == "nftables egress policy"


WHO = {
    "python3.11": (
        "main.py",
        "main.handler",
        "import os\ndef handler(event, context):\n    return {'pid': os.getpid()}\n",
    ),
    "node20": ("index.js", "index.handler", "exports.handler = async () => ({ pid: process.pid });\n"),
}


@pytest.mark.parametrize("runtime", list(WHO))
def test_an_instance_holds_no_supplementary_groups_after_the_uid_drop(
    supplementary_groups, world, engine, served, runtime
):
    # Given an engine (and its zygote) started by a process holding supplementary groups
    if runtime == "node20" and shutil.which("node") is None:
        missing("node is not installed (Node.js 20; CI has it)")
    filename, handler, source = WHO[runtime]
    fn = make_function(world, f"who-{runtime[:4]}", {filename: source}, runtime=runtime, handler=handler)
    deploy_latest(world, fn)
    wait_routed(engine, fn)
    assert set(supplementary_groups) <= set(process_ids(engine.engine.spawner.zygote_pid)["Groups"])

    # When an instance answers
    pid = call(served, fn)["pid"]

    # Then the live instance runs as its function's uid, with no group but its own
    ids = process_ids(pid)
    uid = ids["Uid"][0]
    assert uid != 0 and ids["Uid"] == [uid] * 4 and ids["Gid"] == [uid] * 4
    assert ids["Groups"] == []
