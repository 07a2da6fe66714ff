"""The production shape, as README "Production" and docs/DEPLOY.md run it: a database and a Redis
database of its own, `migrate`, then two web processes (`serve`, STRATUS_ENGINE=remote), a
Celery worker, Celery beat and the engine's supervisor, each a real process of its own, with
STRATUS_PRODUCTION=1 behind a TLS-ending proxy (the tests send what the proxy would:
X-Forwarded-Proto and the public Host). Then the flows the issue names: a deploy called through
both web processes, 300 concurrent API requests without a 500 and with a bounded number of
database connections, a token websocket that stays open through 30 s of silence, an automatic
release advanced by beat, and the supervisor and the worker killed and restarted.

It needs PostgreSQL and Redis (DATABASE_URL and REDIS_URL, as CI sets them) and skips, saying
so, without them. It runs about two minutes."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from console.test_settings import uid_block_for
from tests.pipelines.hooks import body_of, push_payload, sign_headers
from tests.prerequisites import needs

ROOT = Path(__file__).resolve().parents[2]
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
HOST = "console.test"
FN_HOST = "fn.test"

pytestmark = [
    needs(
        DATABASE_URL.startswith("postgres") and REDIS_URL.startswith("redis"),
        "the production shape runs on PostgreSQL and Redis: set DATABASE_URL and REDIS_URL (CI does)",
    ),
    # A whole installation (web processes, supervisor, worker, beat) starts in the first test's
    # setup: ~30 s idle, several times that on a busy machine.
    pytest.mark.timeout(600),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


class Installation:
    """The processes of one installation, started and stopped as an operator would."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.data.mkdir()
        self.logs = base / "logs"
        self.logs.mkdir()
        parsed = urlparse(DATABASE_URL)
        self.database = f"stratus_shape_{os.getpid()}"
        self.admin_url = parsed._replace(path="/postgres").geturl()
        self.database_url = parsed._replace(path=f"/{self.database}").geturl()
        redis = urlparse(REDIS_URL)
        self.redis_url = redis._replace(path="/15").geturl()  # a database of its own
        (self.data / "secret_key").write_text(secrets.token_urlsafe(64))
        from cryptography.fernet import Fernet

        (self.data / "fernet").write_text(Fernet.generate_key().decode())
        self.ports = [free_port(), free_port()]
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "DJANGO_"))},
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "STRATUS_DATA_DIR": str(self.data),
            "STRATUS_PRODUCTION": "1",
            "STRATUS_SECRET_KEY_FILE": str(self.data / "secret_key"),
            "STRATUS_ENCRYPTION_KEYS_FILE": str(self.data / "fernet"),
            "STRATUS_ALLOWED_HOSTS": f"{HOST},{FN_HOST}",
            "STRATUS_CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
            "STRATUS_PUBLIC_URL": f"https://{HOST}",
            "STRATUS_FUNCTIONS_URL": f"https://{FN_HOST}",
            "STRATUS_BEHIND_PROXY": "1",
            "STRATUS_REPOSITORY_ALLOW_LOCAL": "1",
            # An installation beside this test run: uid ranges of its own.
            **uid_block_for(str(self.data)),
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    # --- processes ---------------------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)}: {done.stdout[-2000:]} {done.stderr[-3000:]}"
        return done.stdout

    def start(self, name: str, argv: list[str], **env: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            argv, cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_web(self, n: int) -> None:
        self.start(
            f"web{n}",
            [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.ports[n])],
            STRATUS_ENGINE="remote",
        )

    def start_supervisor(self) -> None:
        self.start("supervisor", [sys.executable, "manage.py", "run_supervisor"])

    def start_worker(self) -> None:
        celery = str(Path(sys.executable).with_name("celery"))
        self.start("worker", [celery, "-A", "console", "worker", "-l", "info", "--concurrency", "2"])

    def start_beat(self) -> None:
        celery = str(Path(sys.executable).with_name("celery"))
        self.start("beat", [celery, "-A", "console", "beat", "-l", "info"])

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        return process.returncode

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    # --- calls, as the proxy would forward them ---------------------------------------------------

    def client(self, n: int = 0, host: str = HOST) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.ports[n]}",
            headers={"Host": host, "X-Forwarded-Proto": "https"},
            timeout=30,
        )


def _sql(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def _connections(installation: Installation) -> int:
    import psycopg

    with psycopg.connect(installation.admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (installation.database,)
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def installation() -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="stratus-shape-"))
    base.chmod(0o711)  # function uids traverse it to their sandbox, as under /var/lib
    shape = Installation(base)
    _sql(shape.admin_url, f'DROP DATABASE IF EXISTS "{shape.database}"')
    _sql(shape.admin_url, f'CREATE DATABASE "{shape.database}"')
    import redis

    redis.Redis.from_url(shape.redis_url).flushdb()
    try:
        shape.manage("migrate", "--noinput", "-v", "0")
        seeded = shape.manage("seed_demo")
        tokens = dict(
            (part.split("=")[1], line.split("token=")[1].split()[0])
            for line in seeded.splitlines()
            if line.startswith("user=") and "token=" in line
            for part in [line.split()[0]]
        )
        shape.start_supervisor()
        shape.start_web(0)
        shape.start_web(1)
        shape.start_worker()
        shape.start_beat()
        for n in (0, 1):
            wait_until(
                lambda n=n: shape.client(n).get("/readyz").status_code == 200,
                120,
                f"web{n} ready ({shape.log(f'web{n}')})",
            )
        yield {"shape": shape, "tokens": tokens}
    finally:
        for name in list(shape.processes):
            shape.stop(name, signal.SIGKILL)
        with contextlib.suppress(Exception):  # cleanup only
            _sql(shape.admin_url, f'DROP DATABASE IF EXISTS "{shape.database}" WITH (FORCE)')
        if not os.environ.get("STRATUS_SHAPE_KEEP"):  # set it to read the processes' logs after a failure
            shutil.rmtree(base, ignore_errors=True)


def api(client: httpx.Client, token: str, method: str, path: str, body: Any = None) -> Any:
    response = client.request(method, f"/api/v1{path}", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:500]}"
    return response.json() if response.content else None


def deployed_function(shape: Installation, token: str, name: str, body: str) -> dict[str, Any]:
    with shape.client(0) as web:
        project = api(web, token, "GET", "/projects/")["results"][0]["id"]
        function = api(
            web,
            token,
            "POST",
            f"/projects/{project}/functions/",
            {"name": name, "runtime": "python3.11", "handler": "main.handler"},
        )
        code = f"def handler(event, context):\n    return {{'statusCode': 200, 'body': {body!r}}}\n"
        api(web, token, "PUT", f"/functions/{function['id']}/draft/files/main.py", {"content": code})
        version = api(web, token, "POST", f"/functions/{function['id']}/draft/publish", {"message": "shape"})
        api(
            web,
            token,
            "POST",
            f"/functions/{function['id']}/deploy",
            {"environment": "dev", "version": version["number"], "auth_mode": "public"},
        )
        binding = wait_until(
            lambda: (
                (b := api(web, token, "GET", f"/functions/{function['id']}/bindings/")["results"][0])["status"]
                == "ready"
                and b
            ),
            60,
            f"the worker applies the deploy ({shape.log('worker')})",
        )
    return {"function": function, "binding": binding, "version": version}


def test_a_deploy_answers_through_both_web_processes(installation: dict[str, Any]) -> None:
    shape, token = installation["shape"], installation["tokens"]["alice"]
    deployed = deployed_function(shape, token, "shape-hello", "hello from production")
    path = urlparse(deployed["binding"]["url"]).path
    for n in (0, 1):
        with shape.client(n, host=FN_HOST) as web:
            answer = wait_until(
                lambda web=web: (r := web.get(path)).status_code == 200 and r,
                30,
                f"web{n} serves the function ({web.get(path).text[:300]}; supervisor: {shape.log('supervisor')})",
            )
            assert answer.text == "hello from production"
            assert answer.headers["X-Stratus-Version"] == str(deployed["version"]["number"])


def test_300_concurrent_api_requests_answer_without_a_500_on_a_bounded_pool(installation: dict[str, Any]) -> None:
    shape, token = installation["shape"], installation["tokens"]["alice"]
    clients = [shape.client(n % 2) for n in range(60)]
    try:

        def one(n: int) -> int:
            return clients[n % 60].get("/api/v1/projects/", headers={"Authorization": f"Bearer {token}"}).status_code

        with concurrent.futures.ThreadPoolExecutor(60) as pool:
            statuses = list(pool.map(one, range(300)))
    finally:
        for client in clients:
            client.close()
    assert statuses.count(200) == 300, {s: statuses.count(s) for s in set(statuses)}
    # Per process at most the pool's size, whatever the number of threads that served them.
    assert _connections(shape) <= 40, _connections(shape)


PIPELINE = """\
functions:
  - name: pushed
    path: functions/pushed
    runtime: python3.11
    handler: main.handler
steps:
  - name: test
    run: python3 -c "print('testing')"
    timeout_s: 60
triggers:
  - branch: main
    environment: dev
"""
PUSHED = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'pushed through the pipeline'}\n"


def deliver_push(web: httpx.Client, repository: dict[str, Any], sha: str, delivery: str) -> int:
    """A push of ``sha`` to main, delivered and signed as GitHub does (tests/pipelines/hooks.py);
    the run it started."""
    body = body_of(push_payload("github", after=sha))
    headers = sign_headers("github", body, repository["webhook_secret"], delivery=delivery)
    delivered = web.post(
        f"/hooks/github/{repository['hook_id']}/", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert delivered.status_code == 202, delivered.text
    return int(delivered.json()["run"])


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Ann", "-c", "user.email=ann@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_signed_push_runs_on_the_worker_and_its_token_websocket_outlives_30_s_of_silence(
    installation: dict[str, Any],
) -> None:

    from websockets.sync.client import connect

    shape, token = installation["shape"], installation["tokens"]["alice"]
    origin, work = shape.base / "origin.git", shape.base / "work"
    origin.mkdir()
    git(origin, "init", "-q", "--bare", "-b", "main")
    origin.chmod(0o755)
    git(shape.base, "clone", "-q", str(origin), str(work))
    (work / "functions" / "pushed").mkdir(parents=True)
    (work / "functions" / "pushed" / "main.py").write_text(PUSHED)
    (work / "stratus.yaml").write_text(PIPELINE)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    git(work, "push", "-q", "origin", "HEAD:main")
    sha = git(work, "rev-parse", "HEAD")
    with shape.client(0) as web:
        project = api(web, token, "GET", "/projects/")["results"][0]["id"]
        repository = api(
            web,
            token,
            "PUT",
            f"/projects/{project}/repository",
            {"url": str(origin), "default_branch": "main", "rotate_secret": True},
        )
        installation["repository"] = repository  # the worker test pushes to it again
        run = deliver_push(web, repository, sha, "shape-1")
    # The run's live log on the other web process, opened with a token and no Origin.
    url = f"ws://127.0.0.1:{shape.ports[1]}/ws/runs/{run}/?token={token}"
    with connect(url, additional_headers={"Host": HOST, "X-Forwarded-Proto": "https"}, open_timeout=10) as ws:
        state = None
        deadline = time.monotonic() + 120
        while state not in ("succeeded", "failed", "canceled") and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message["type"] == "state":
                state = message["state"]
        assert state == "succeeded", (state, shape.log("worker"))
        # Then 30 s and more without a message (after the run's last lines, if any): the socket
        # is still open and answers.
        quiet_since, deadline = time.monotonic(), time.monotonic() + 120
        while time.monotonic() - quiet_since < 31:
            assert time.monotonic() < deadline, "never 30 s of silence"
            try:
                ws.recv(timeout=31 - (time.monotonic() - quiet_since))
                quiet_since = time.monotonic()
            except TimeoutError:
                pass
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"
    with shape.client(1, host=FN_HOST) as fn:
        answer = wait_until(
            lambda: (
                (r := fn.get("/fn/demo/shop/dev/pushed/", headers={"Authorization": f"Bearer {token}"})).status_code
                == 200
                and r
            ),
            60,
            "the pushed function answers on the other web process",
        )
        assert answer.text == "pushed through the pipeline"


def test_an_automatic_release_is_advanced_by_beat_to_100_percent(installation: dict[str, Any]) -> None:
    shape, token = installation["shape"], installation["tokens"]["alice"]
    deployed = deployed_function(shape, token, "shape-release", "stable one")
    function = deployed["function"]["id"]
    with shape.client(0) as web:
        code = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'canary two'}\n"
        api(web, token, "PUT", f"/functions/{function}/draft/files/main.py", {"content": code})
        canary = api(web, token, "POST", f"/functions/{function}/draft/publish", {"message": "two"})
        release = api(
            web,
            token,
            "POST",
            f"/functions/{function}/releases/",
            {
                "environment": "dev",
                "version": canary["number"],
                "plan": {"steps": [50, 100], "advance": "auto", "dwell_s": 1},
            },
        )
        # Beat's sweep (every 10 s) moves it on; nobody calls promote.
        done = wait_until(
            lambda: (r := api(web, token, "GET", f"/releases/{release['id']}/"))["state"] == "completed" and r,
            90,
            f"beat advances the release ({api(web, token, 'GET', '/releases/' + str(release['id']) + '/')}; "
            f"beat: {shape.log('beat')[-400:]}; worker: {shape.log('worker')[-600:]})",
        )
        assert done["state"] == "completed"
    with shape.client(1, host=FN_HOST) as fn:
        path = urlparse(deployed["binding"]["url"]).path
        assert (
            wait_until(lambda: (r := fn.get(path)).text == "canary two" and r, 30, "the canary serves all").status_code
            == 200
        )


SLOW_PIPELINE = PIPELINE.replace(
    "run: python3 -c \"print('testing')\"",
    "run: python3 -c \"import time; print('slow step'); time.sleep(6); print('done')\"",
)


def test_a_worker_stopped_by_sigterm_finishes_its_running_step(installation: dict[str, Any]) -> None:
    """What systemd does on `systemctl stop` (KillMode=mixed: SIGTERM to the main process):
    Celery's warm shutdown lets the running step finish; the run succeeds; a new worker then
    takes the queue."""

    shape, token = installation["shape"], installation["tokens"]["alice"]
    repository = installation.get("repository")
    if repository is None:
        pytest.skip("needs the repository the signed-push test connected (run the module)")
    work = shape.base / "work"
    (work / "stratus.yaml").write_text(SLOW_PIPELINE)
    git(work, "commit", "-qam", "slow")
    git(work, "push", "-q", "origin", "HEAD:main")
    sha = git(work, "rev-parse", "HEAD")
    with shape.client(0) as web:
        run = deliver_push(web, repository, sha, "shape-2")
        wait_until(
            lambda: "slow step" in json.dumps(api(web, token, "GET", f"/runs/{run}/log")),
            60,
            f"the slow step starts ({shape.log('worker')})",
        )
        worker = shape.processes["worker"]
        worker.send_signal(signal.SIGTERM)  # the main process only, as KillMode=mixed does
        assert worker.wait(60) == 0, shape.log("worker")
        shape.processes.pop("worker")
        detail = api(web, token, "GET", f"/runs/{run}/")
        assert detail["state"] == "succeeded", (detail, shape.log("worker"))
        shape.start_worker()
    # The restarted worker serves the queue: a deploy's apply task is taken at once.
    assert deployed_function(shape, token, "after-restart", "new worker")["binding"]["status"] == "ready"


def test_the_supervisor_killed_and_restarted(installation: dict[str, Any]) -> None:
    shape, token = installation["shape"], installation["tokens"]["alice"]
    deployed = deployed_function(shape, token, "shape-kill", "still here")
    path = urlparse(deployed["binding"]["url"]).path
    with shape.client(0, host=FN_HOST) as fn, shape.client(0) as web:
        wait_until(lambda: fn.get(path).status_code == 200, 30, "served before the kill")
        shape.stop("supervisor", signal.SIGKILL)
        gone = fn.get(path)
        assert gone.status_code == 503 and gone.json()["error"]["code"] == "engine_unavailable", gone.text
        assert web.get("/readyz").status_code == 503  # the web process says its engine is down
        shape.start_supervisor()
        wait_until(lambda: fn.get(path).status_code == 200, 60, f"served again ({shape.log('supervisor')})")
        assert web.get("/readyz").status_code == 200
        # A second supervisor on the same data directory refuses to start and leaves the first be.
        second = subprocess.run(
            [sys.executable, "manage.py", "run_supervisor"],
            cwd=ROOT,
            env=shape.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode != 0 and "supervisor" in (second.stderr + second.stdout).lower()
        assert fn.get(path).status_code == 200
