"""apps/engine/sandbox/ with real processes: the Python zygote, Node instances, limits, the
privilege drop (when the tests run as root) and cold-start time."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from apps.engine.sandbox import InstanceSpec, SpawnedInstance, Spawner
from tests.prerequisites import needs, needs_node

ROOT = os.geteuid() == 0
# This test run's own uid range (console/test_settings.py): another run on the host uses others.
UID_BASE = int(settings.STRATUS_SANDBOX_UID_BASE)
FRAME_TIMEOUT = 20.0
root_only = needs(ROOT, "the privilege drop needs root (CI runs as root)")

# Defined by the bootstraps for every function (Lambda's and SCF's documented runtime variables).
PLATFORM_NAMES = {
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "_HANDLER",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "TZ",
    "SCF_FUNCTIONNAME",
    "SCF_FUNCTIONVERSION",
    "SCF_NAMESPACE",
    "SCF_RUNTIME",
    "USER_CODE_ROOT",
    "TENCENTCLOUD_RUNENV",
    "TENCENTCLOUD_REGION",
}


class Conn:
    """The supervisor's side of the frame protocol on SpawnedInstance.sock."""

    def __init__(self, inst: SpawnedInstance) -> None:
        self.inst = inst
        self.logs: list[dict[str, Any]] = []

    async def _exact(self, n: int) -> bytes:
        loop = asyncio.get_running_loop()
        buf = b""
        while len(buf) < n:
            chunk = await loop.sock_recv(self.inst.sock, n - len(buf))
            if not chunk:
                raise EOFError("the instance closed its channel")
            buf += chunk
        return buf

    async def read(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        async def frame() -> dict[str, Any]:
            (length,) = struct.unpack(">I", await self._exact(4))
            return json.loads(await self._exact(length))

        return await asyncio.wait_for(frame(), timeout)

    async def reply(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next non-log frame; log frames are collected in self.logs."""
        while True:
            msg = await self.read(timeout)
            if msg["type"] != "log":
                return msg
            self.logs.append(msg)

    async def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        await asyncio.get_running_loop().sock_sendall(self.inst.sock, struct.pack(">I", len(body)) + body)

    async def invoke(self, event: Any, request_id: str = "req-1", timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        deadline_ms = time.time() * 1000 + timeout * 1000
        await self.send({"type": "invoke", "id": request_id, "deadline_ms": deadline_ms, "event": event})
        reply = await self.reply(timeout)
        assert reply.get("id") == request_id, reply
        return reply


class Env:
    """Directories for one test: base (0711, under /var/tmp so a dropped uid can traverse it,
    and outside /tmp, which instances see as their own private tmpfs), data_dir inside it,
    sandbox_dir inside data_dir (as the console lays them out)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="stratus-sandbox-", dir="/var/tmp"))
        os.chmod(self.base, 0o711)
        self.data_dir = self.base / "data"
        self.data_dir.mkdir()
        self.sandbox_dir = self.data_dir / "sandbox"
        self.versions = self.data_dir / "versions"
        self.versions.mkdir()

    def code(self, function_id: int, files: dict[str, str], version: str = "1") -> Path:
        code_dir = self.versions / str(function_id) / version
        code_dir.mkdir(parents=True)
        for name, text in files.items():
            (code_dir / name).write_text(textwrap.dedent(text))
        return code_dir

    def spec(self, function_id: int, code_dir: Path, **overrides: Any) -> InstanceSpec:
        values: dict[str, Any] = {
            "runtime": "python3.11",
            "kind": "event",
            "handler": "index.handler",
            "code_dir": code_dir,
            "function_id": function_id,
            "function_name": f"fn{function_id}",
            "function_version": "1",
            "memory_mb": 128,
            "timeout_s": 5,
            "env": {},
            "identity": function_id,
        }
        values.update(overrides)
        return InstanceSpec(**values)


@pytest.fixture
def env():
    e = Env()
    yield e
    shutil.rmtree(e.base, ignore_errors=True)


def run(env: Env, body: Callable[[Spawner], Awaitable[None]], timeout: float = 90) -> None:
    """Run ``body(spawner)`` on a fresh event loop with a started Spawner; kill leftovers."""

    async def main() -> None:
        spawner = Spawner(sandbox_dir=env.sandbox_dir, data_dir=env.data_dir)
        await spawner.start()
        spawned: list[SpawnedInstance] = []
        original_spawn = spawner.spawn

        async def tracking_spawn(spec: InstanceSpec) -> SpawnedInstance:
            inst = await original_spawn(spec)
            spawned.append(inst)
            return inst

        spawner.spawn = tracking_spawn  # type: ignore[method-assign]
        try:
            await asyncio.wait_for(body(spawner), timeout)
        finally:
            for inst in spawned:
                inst.kill()
            for inst in spawned:
                await asyncio.wait_for(inst.wait_exit(), 10)
                inst.sock.close()
            await spawner.close()

    asyncio.run(main())


async def start(spawner: Spawner, spec: InstanceSpec) -> Conn:
    conn = Conn(await spawner.spawn(spec))
    ready = await conn.reply()
    assert ready["type"] == "ready", ready
    return conn


def tasks_of_uid(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(entry.path, "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("Uid:") and int(line.split()[1]) == uid:
                    count += 1
    return count


# --- 1. a Python event handler ---------------------------------------------------------------


def test_python_event_handler_ready_invoke_and_logs(env):
    code = env.code(
        1,
        {
            "index.py": """
                print("at import")
                def handler(event, context):
                    print("hello", event["name"])
                    print("second line")
                    return {"greeting": "hi " + event["name"], "request_id": context.aws_request_id}
            """
        },
    )

    async def body(spawner: Spawner) -> None:
        inst = await spawner.spawn(env.spec(1, code))
        assert inst.pid > 0
        conn = Conn(inst)
        ready = await conn.reply()
        assert ready["type"] == "ready"
        assert isinstance(ready["init_ms"], float) and ready["init_ms"] >= 0
        assert [(m["id"], m["text"]) for m in conn.logs] == [(None, "at import")]
        conn.logs.clear()
        reply = await conn.invoke({"name": "ada"}, "r-1")
        assert reply["type"] == "result"
        assert reply["result"] == {"greeting": "hi ada", "request_id": "r-1"}
        assert [(m["id"], m["stream"], m["text"]) for m in conn.logs] == [
            ("r-1", "stdout", "hello ada"),
            ("r-1", "stdout", "second line"),
        ]
        assert (inst.peak_rss_kb() or 0) > 1000
        await conn.send({"type": "shutdown"})
        info = await asyncio.wait_for(inst.wait_exit(), 10)
        assert (info.returncode, info.signal, info.out_of_memory) == (0, None, False)
        assert info.reason == "exited with status 0"
        assert inst.peak_rss_kb() is None
        assert (await inst.wait_exit()) == info  # may be awaited again

    run(env, body)


# --- 2. environment and isolation ------------------------------------------------------------

DUMP_ENV = """
    import os
    def handler(event, context):
        out = {"env": dict(os.environ), "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
               "cwd": os.getcwd(), "denied": {}, "readable": {}}
        for name, path in event["paths"].items():
            try:
                if os.path.isdir(path):
                    out["readable"][name] = sorted(os.listdir(path))
                else:
                    with open(path) as f:
                        out["readable"][name] = f.read()
            except OSError as exc:
                out["denied"][name] = exc.errno
        home = os.environ["HOME"]
        with open(os.path.join(home, "scratch.txt"), "w") as f:
            f.write("writable")
        try:
            open("written-into-code.txt", "w").close()
            out["code_writable"] = True
        except OSError:
            out["code_writable"] = False
        return out
"""


def test_environment_is_scrubbed_and_only_own_vars_reach_the_function(env, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://console:pw@db/stratus")
    monkeypatch.setenv("STRATUS_SECRET_KEY", "console-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_fake_token")
    monkeypatch.setenv("REDIS_URL", "redis://localhost")
    code = env.code(1, {"index.py": DUMP_ENV})

    async def body(spawner: Spawner) -> None:
        spec = env.spec(1, code, env={"GREETING": "hello", "API_URL": "https://example.test"})
        conn = await start(spawner, spec)
        reply = await conn.invoke({"paths": {}})
        assert reply["type"] == "result", reply
        seen = reply["result"]["env"]
        home = seen["HOME"]
        # The Lambda/SCF variables the bootstrap defines (tests/runtime/test_runtime_environment.py
        # checks their values), and nothing else beyond the function's own and the sandbox's.
        assert set(seen) >= PLATFORM_NAMES
        assert seen["AWS_REGION"] == "us-east-1" and seen["SCF_FUNCTIONNAME"] == "fn1"
        assert {k: v for k, v in seen.items() if k not in PLATFORM_NAMES} == {
            "GREETING": "hello",
            "API_URL": "https://example.test",
            "AWS_LAMBDA_FUNCTION_NAME": "fn1",
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "TMPDIR": home,
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if spawner.isolation.namespace:
            assert home == "/tmp"  # its own tmpfs
        else:
            assert Path(home).is_relative_to(env.sandbox_dir)

    run(env, body)


@root_only
def test_privilege_drop_hides_secrets_and_other_functions_code(env):
    secret = env.data_dir / "secret_key"
    secret.write_text("console secret")
    os.chmod(secret, 0o600)
    db = env.data_dir / "db.sqlite3"
    db.write_text("tables")
    os.chmod(db, 0o644)  # world-readable before start(): start() must fix it
    mine = env.code(1, {"index.py": DUMP_ENV})
    theirs = env.code(2, {"index.py": "SECRET = 'other function code'\ndef handler(e, c):\n    return 2\n"})

    async def body(spawner: Spawner) -> None:
        assert spawner.sandboxing
        other = await start(spawner, env.spec(2, theirs))  # makes the other function's sandbox copy
        assert (await other.invoke({}))["result"] == 2
        other_copy = env.sandbox_dir / str(UID_BASE + 2) / "code" / "1"
        assert (other_copy / "index.py").is_file()

        conn = await start(spawner, env.spec(1, mine))
        paths = {
            "secret_key": str(secret),
            "db": str(db),
            "data_dir": str(env.data_dir),
            "other_copy": str(other_copy / "index.py"),
            "other_copy_dir": str(other_copy),
            "other_source": str(theirs / "index.py"),
            "other_home": str(env.sandbox_dir / str(UID_BASE + 2) / "home"),
        }
        reply = await conn.invoke({"paths": paths})
        assert reply["type"] == "result", reply
        result = reply["result"]
        assert result["readable"] == {}
        assert result["denied"] == {name: errno.EACCES for name in paths}
        assert (result["uid"], result["gid"], result["groups"]) == (UID_BASE + 1, UID_BASE + 1, [])
        my_copy = env.sandbox_dir / str(UID_BASE + 1) / "code" / "1"
        assert result["cwd"] == str(my_copy)
        assert result["code_writable"] is False
        if spawner.isolation.namespace:  # HOME is the instance's private /tmp: nothing lands on the host
            assert result["env"]["HOME"] == "/tmp"
            assert not Path("/tmp/scratch.txt").exists()
        else:
            assert (env.sandbox_dir / str(UID_BASE + 1) / "home" / "scratch.txt").read_text() == "writable"
        assert oct(my_copy.stat().st_mode & 0o777) == oct(0o550)
        assert oct((my_copy / "index.py").stat().st_mode & 0o777) == oct(0o440)
        # Owned by root, readable through the function's group: readable, not changeable.
        assert (my_copy.stat().st_uid, my_copy.stat().st_gid) == (0, UID_BASE + 1)
        assert ((my_copy / "index.py").stat().st_uid, (my_copy / "index.py").stat().st_gid) == (0, UID_BASE + 1)
        assert oct(env.data_dir.stat().st_mode & 0o777) == oct(0o711)
        assert oct(db.stat().st_mode & 0o777) == oct(0o600)

    run(env, body)


@root_only
def test_start_refuses_a_sandbox_dir_others_cannot_reach(env):
    private = env.base / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    spawner = Spawner(sandbox_dir=private / "sandbox", data_dir=env.base / "elsewhere")
    with pytest.raises(RuntimeError, match=str(private)):
        asyncio.run(spawner.start())


# --- 3-5. limits ---------------------------------------------------------------------------------

MEMORY = """
    def handler(event, context):
        size = event["mb"] * 1024 * 1024
        block = bytearray(size)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        return len(block) // (1024 * 1024)
"""


def test_memory_limit_gives_memory_error(env):
    code = env.code(1, {"index.py": MEMORY})

    async def body(spawner: Spawner) -> None:
        conn = await start(spawner, env.spec(1, code, memory_mb=128))
        ok = await conn.invoke({"mb": 100}, "fits")
        assert ok == {**ok, "type": "result", "result": 100}
        too_big = await conn.invoke({"mb": 1024}, "too-big")
        assert too_big["type"] == "error", too_big
        assert too_big["error"]["type"] == "MemoryError"
        # The instance survives a MemoryError in the handler and serves the next request.
        again = await conn.invoke({"mb": 50}, "after")
        assert again["result"] == 50
        assert (conn.inst.peak_rss_kb() or 0) > 100 * 1024

    run(env, body)


def test_open_file_limit(env):
    code = env.code(
        1,
        {
            "index.py": """
                import os
                def handler(event, context):
                    fds = []
                    try:
                        for _ in range(2000):
                            fds.append(os.open("/dev/null", os.O_RDONLY))
                    except OSError as exc:
                        return {"opened": len(fds), "errno": exc.errno}
                    finally:
                        for fd in fds:
                            os.close(fd)
                    return {"opened": len(fds), "errno": None}
            """
        },
    )

    async def body(spawner: Spawner) -> None:
        conn = await start(spawner, env.spec(1, code, max_open_files=1024))
        result = (await conn.invoke({}))["result"]
        assert result["errno"] == errno.EMFILE
        assert 1000 <= result["opened"] < 1024

    run(env, body)


FORK_BOMB = """
    import os, threading, time
    def handler(event, context):
        if event == "fork":
            pids = []
            try:
                while len(pids) < 5000:
                    pid = os.fork()
                    if pid == 0:
                        time.sleep(120)
                        os._exit(0)
                    pids.append(pid)
            except BlockingIOError as exc:
                return {"made": len(pids), "error": type(exc).__name__}
            return {"made": len(pids), "error": None}
        stop = threading.Event()
        threads = []
        try:
            while len(threads) < 5000:
                t = threading.Thread(target=stop.wait)
                t.start()
                threads.append(t)
        except RuntimeError as exc:
            return {"made": len(threads), "error": str(exc)}
        finally:
            stop.set()
        return {"made": len(threads), "error": None}
"""


def test_fork_bomb_and_thread_bomb_are_contained(env):
    fork_code = env.code(1, {"index.py": FORK_BOMB})
    thread_code = env.code(2, {"index.py": FORK_BOMB})

    async def body(spawner: Spawner) -> None:
        started = time.monotonic()
        conn = await start(spawner, env.spec(1, fork_code, max_processes=32))
        result = (await conn.invoke("fork"))["result"]
        assert result["error"] == "BlockingIOError"
        # Without root the cap is "tasks of our uid at spawn time + 32": a few more or less.
        assert 0 < result["made"] <= (32 if ROOT else 40)
        if ROOT:
            assert tasks_of_uid(UID_BASE + 1) <= 32
        conn.inst.kill()
        conn.inst.kill()  # idempotent
        info = await asyncio.wait_for(conn.inst.wait_exit(), 10)
        assert (info.returncode, info.signal, info.out_of_memory) == (None, signal.SIGKILL, False)
        assert info.reason == "killed by SIGKILL"
        if ROOT:  # the whole process group died, not just the instance
            for _ in range(100):
                if tasks_of_uid(UID_BASE + 1) == 0:
                    break
                await asyncio.sleep(0.05)
            assert tasks_of_uid(UID_BASE + 1) == 0

        threads = await start(spawner, env.spec(2, thread_code, max_processes=32))
        result = (await threads.invoke("threads"))["result"]
        assert result["error"] == "can't start new thread"
        assert 0 < result["made"] <= (32 if ROOT else 40)
        assert time.monotonic() - started < 30

    run(env, body)


# --- 6-7. init errors and crashes ---------------------------------------------------------------


def test_init_error_then_exit_status_1(env):
    code = env.code(1, {"index.py": "print('loading')\nraise ValueError('broken at import')\n"})

    async def body(spawner: Spawner) -> None:
        inst = await spawner.spawn(env.spec(1, code))
        conn = Conn(inst)
        msg = await conn.reply()
        assert msg["type"] == "init_error"
        assert msg["error"]["type"] == "ValueError"
        assert msg["error"]["message"] == "broken at import"
        assert [m["text"] for m in conn.logs] == ["loading"]
        info = await asyncio.wait_for(inst.wait_exit(), 10)
        assert (info.returncode, info.signal, info.reason, info.out_of_memory) == (
            1,
            None,
            "exited with status 1",
            False,
        )

    run(env, body)


CRASH = """
    import os, signal
    def handler(event, context):
        if event == "exit":
            os._exit(7)
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_crash_mid_request_reports_status_and_signal(env):
    code = env.code(1, {"index.py": CRASH})

    async def body(spawner: Spawner) -> None:
        conn = await start(spawner, env.spec(1, code))
        await conn.send({"type": "invoke", "id": "x", "event": "exit"})
        with pytest.raises((EOFError, ConnectionError)):
            await conn.reply()
        info = await asyncio.wait_for(conn.inst.wait_exit(), 10)
        assert (info.returncode, info.signal, info.reason) == (7, None, "exited with status 7")

        conn = await start(spawner, env.spec(1, code))
        await conn.send({"type": "invoke", "id": "k", "event": "kill"})
        with pytest.raises((EOFError, ConnectionError)):
            await conn.reply()
        info = await asyncio.wait_for(conn.inst.wait_exit(), 10)
        assert (info.returncode, info.signal, info.reason) == (None, 9, "killed by SIGKILL")
        assert info.out_of_memory is False

    run(env, body)


# --- 8. Node ------------------------------------------------------------------------------------


@needs_node
def test_node_handler_and_heap_limit(env):
    code = env.code(
        1,
        {
            "index.js": """
                exports.handler = async (event, context) => {
                  console.log('node says', event.name);
                  if (event.grow) {
                    const hoard = [];
                    for (;;) hoard.push(new Array(100000).fill(Math.random()));
                  }
                  return { hello: event.name, uid: process.getuid(), env: Object.keys(process.env).sort() };
                };
            """
        },
    )

    async def body(spawner: Spawner) -> None:
        spec = env.spec(1, code, runtime="node20", memory_mb=64, env={"MINE": "1"})
        conn = await start(spawner, spec)
        reply = await conn.invoke({"name": "ada"}, "n-1")
        assert reply["type"] == "result", reply
        assert reply["result"]["hello"] == "ada"
        assert reply["result"]["uid"] == (UID_BASE + 1 if ROOT else os.getuid())
        assert [k for k in reply["result"]["env"] if k not in PLATFORM_NAMES] == sorted(
            [
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                "AWS_LAMBDA_FUNCTION_NAME",
                "AWS_LAMBDA_FUNCTION_VERSION",
                "HOME",
                "LANG",
                "MINE",
                "PATH",
                "TMPDIR",
            ]
        )
        assert [(m["id"], m["text"]) for m in conn.logs] == [("n-1", "node says ada")]

        await conn.send({"type": "invoke", "id": "n-2", "event": {"name": "x", "grow": True}})
        with pytest.raises((EOFError, ConnectionError)):
            await conn.reply(timeout=60)
        info = await asyncio.wait_for(conn.inst.wait_exit(), 30)
        assert info.out_of_memory is True, info
        assert info.reason == "out of memory (limit 64 MB)"
        assert "JavaScript heap out of memory" in info.stderr_tail

    run(env, body, timeout=120)


# --- 9. the zygote comes back -------------------------------------------------------------------


def test_zygote_is_restarted_after_it_dies(env):
    code = env.code(1, {"index.py": "def handler(e, c):\n    return 'ok'\n"})

    async def body(spawner: Spawner) -> None:
        before = await start(spawner, env.spec(1, code))
        zygote_pid = spawner.zygote_pid
        assert zygote_pid is not None
        os.kill(zygote_pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        after = await start(spawner, env.spec(1, code))
        assert spawner.zygote_pid not in (None, zygote_pid)
        assert (await after.invoke({}))["result"] == "ok"
        # The orphaned instance still works, and its exit is still noticed (status unknown).
        assert (await before.invoke({}))["result"] == "ok"
        before.inst.kill()
        info = await asyncio.wait_for(before.inst.wait_exit(), 10)
        assert info.returncode is None and not info.out_of_memory

    run(env, body)


# --- 10. cold start -----------------------------------------------------------------------------


def test_cold_start_time(env):
    code = env.code(1, {"index.py": "def handler(e, c):\n    return 1\n"})

    async def body(spawner: Spawner) -> None:
        spec = env.spec(1, code)
        conn = await start(spawner, spec)  # first spawn also copies the code into the sandbox
        conn.inst.kill()
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            inst = await spawner.spawn(spec)
            ready = await Conn(inst).reply()
            times.append((time.perf_counter() - t0) * 1000)
            assert ready["type"] == "ready"
            inst.kill()
            await asyncio.wait_for(inst.wait_exit(), 10)
        times.sort()
        p50 = statistics.median(times)
        p99 = times[-1]
        print(f"\ncold start spawn()->ready over {len(times)}: p50 {p50:.1f} ms, p99/max {p99:.1f} ms")
        assert p50 < 150

    run(env, body)


def test_http_kind_reaches_the_handler(env):
    code = env.code(
        1,
        {
            "app.py": """
                def app(environ, start_response):
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    return [environ["PATH_INFO"].encode()]
            """
        },
    )

    async def body(spawner: Spawner) -> None:
        conn = await start(spawner, env.spec(1, code, kind="http", handler="app:app"))
        await conn.send({"type": "http", "id": "h", "method": "GET", "path": "/x/y", "query_string": "", "headers": []})
        reply = await conn.reply()
        assert reply["type"] == "http_response" and reply["status"] == 200, reply

    run(env, body)


def test_unknown_runtime_is_refused(env):
    code = env.code(1, {"index.py": ""})

    async def body(spawner: Spawner) -> None:
        with pytest.raises(ValueError, match="ruby"):
            await spawner.spawn(env.spec(1, code, runtime="ruby3"))

    run(env, body)


def test_socket_is_non_blocking(env):
    code = env.code(1, {"index.py": "def handler(e, c):\n    return 1\n"})

    async def body(spawner: Spawner) -> None:
        inst = await spawner.spawn(env.spec(1, code))
        assert inst.sock.getblocking() is False
        assert inst.sock.family == socket.AF_UNIX

    run(env, body)


def test_concurrent_spawns_get_their_own_instances_and_leak_no_fds(env):
    code = env.code(
        1,
        {"index.py": "import os\ndef handler(e, c):\n    return {'pid': os.getpid(), 'n': e}\n"},
    )

    async def body(spawner: Spawner) -> None:
        await start(spawner, env.spec(1, code))  # warm: code copied, zygote up
        fds_before = len(os.listdir("/proc/self/fd"))
        for _ in range(2):
            conns = await asyncio.gather(*(start(spawner, env.spec(1, code)) for _ in range(12)))
            assert len({c.inst.pid for c in conns}) == 12
            replies = await asyncio.gather(*(c.invoke(i, f"r{i}") for i, c in enumerate(conns)))
            assert [r["result"] for r in replies] == [{"pid": c.inst.pid, "n": i} for i, c in enumerate(conns)]
            for c in conns:
                c.inst.kill()
            for c in conns:
                info = await asyncio.wait_for(c.inst.wait_exit(), 10)
                assert info.signal == signal.SIGKILL
                c.inst.sock.close()
        assert len(os.listdir("/proc/self/fd")) <= fds_before + 2

    run(env, body)


def test_exits_are_still_noticed_after_close(env):
    code = env.code(1, {"index.py": "def handler(e, c):\n    return 1\n"})

    async def main() -> None:
        spawner = Spawner(sandbox_dir=env.sandbox_dir, data_dir=env.data_dir)
        await spawner.start()
        conn = await start(spawner, env.spec(1, code))
        zygote_pid = spawner.zygote_pid
        await spawner.close()
        assert spawner.zygote_pid is None
        assert zygote_pid is not None and not Path(f"/proc/{zygote_pid}").exists()
        assert (await conn.invoke({}))["result"] == 1  # the instance outlives the zygote
        conn.inst.kill()
        info = await asyncio.wait_for(conn.inst.wait_exit(), 10)
        assert info.returncode is None and info.out_of_memory is False
        conn.inst.sock.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_sys_exit_and_exit_builtin_in_a_handler(env):
    code = env.code(
        1,
        {
            "index.py": """
                import sys
                def handler(event, context):
                    if event == "sys":
                        sys.exit(4)
                    exit(5)
            """
        },
    )

    async def body(spawner: Spawner) -> None:
        for event, status in (("sys", 4), ("builtin", 5)):
            conn = await start(spawner, env.spec(1, code))
            await conn.send({"type": "invoke", "id": "x", "event": event})
            with pytest.raises((EOFError, ConnectionError)):
                await conn.reply()
            info = await asyncio.wait_for(conn.inst.wait_exit(), 10)
            assert (info.returncode, info.signal) == (status, None), info

    run(env, body)


def test_a_crash_outside_the_handler_protocol_lands_in_stderr_tail(env):
    code = env.code(1, {"index.py": "def handler(e, c):\n    raise KeyboardInterrupt('stop right there')\n"})

    async def body(spawner: Spawner) -> None:
        conn = await start(spawner, env.spec(1, code))
        await conn.send({"type": "invoke", "id": "x", "event": {}})
        with pytest.raises((EOFError, ConnectionError)):
            await conn.reply()
        info = await asyncio.wait_for(conn.inst.wait_exit(), 10)
        assert info.returncode == 70 and not info.out_of_memory, info
        assert "stratus_bootstrap: fatal error" in info.stderr_tail
        assert "KeyboardInterrupt: stop right there" in info.stderr_tail

    run(env, body)
