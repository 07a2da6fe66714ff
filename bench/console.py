"""A real console (`manage.py serve`, embedded default) in a throwaway data dir, and the few
REST calls the bench needs."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procs import Processes, free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]
TOKEN_LINE = re.compile(r"^user=(?P<user>\S+) .*token=(?P<token>stt_\S+)", re.MULTILINE)


def console_env(data_dir: Path) -> dict[str, str]:
    """The embedded default: SQLite, in-process worker, embedded engine."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "STRATUS_ENGINE")}
    env["STRATUS_DATA_DIR"] = str(data_dir)
    # The webhook bench pushes to a bare repository on this machine (a path, not a URL).
    env["STRATUS_REPOSITORY_ALLOW_LOCAL"] = "1"
    env.pop("STRATUS_PRODUCTION", None)
    return env


def manage(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
        [sys.executable, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


class Console:
    def __init__(self, procs: Processes, data_dir: Path) -> None:
        self.procs = procs
        self.data_dir = data_dir
        self.port = 0
        self.base_url = ""
        self.token = ""
        self.api: httpx.Client | None = None
        self.http: httpx.Client | None = None

    def start(self) -> None:
        env = console_env(self.data_dir)
        manage(["migrate", "--noinput", "-v", "0"], env)
        tokens = {m["user"]: m["token"] for m in TOKEN_LINE.finditer(manage(["seed_demo"], env))}
        if "alice" not in tokens:
            raise RuntimeError("seed_demo printed no token for alice")
        self.token = tokens["alice"]
        self.port = free_port()
        proc = self.procs.start(
            [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            log=self.data_dir / "serve.log",
            cwd=ROOT,
        )
        wait_listening(self.port, proc)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.base_url, timeout=60)
        self.api = httpx.Client(
            base_url=self.base_url + "/api/v1", headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    def call(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        assert self.api is not None
        response = self.api.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:2000]}")
        return response.json()

    def project(self, slug: str) -> dict[str, Any]:
        page = self.call("GET", "/projects/", params={"page_size": 200})
        rows = page["results"] if isinstance(page, dict) else page
        for row in rows:
            if row.get("slug") == slug:
                return dict(row)
        raise RuntimeError(f"no project {slug!r} among {[r.get('slug') for r in rows]}")

    def create_function(self, project_id: int, name: str, **config: Any) -> dict[str, Any]:
        return dict(self.call("POST", f"/projects/{project_id}/functions/", json={"name": name, **config}))

    def publish(self, function_id: int, files: dict[str, str]) -> int:
        version = self.call("POST", f"/functions/{function_id}/versions/", json={"files": files})
        return int(version["number"])

    def deploy(self, function_id: int, version: int, environment: str = "dev") -> dict[str, Any]:
        body = {"environment": environment, "version": version, "auth_mode": "public"}
        return dict(self.call("POST", f"/functions/{function_id}/deploy", json=body))

    def invocation(self, function_id: int, request_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """The invocation record of one request (records are written in batches: wait a little)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            page = self.call("GET", f"/functions/{function_id}/invocations", params={"request_id": request_id})
            rows = page["results"] if isinstance(page, dict) else page
            if rows:
                return dict(rows[0])
            time.sleep(0.2)
        return None

    def close(self) -> None:
        if self.api is not None:
            self.api.close()
        kill_strays(self.data_dir)


def kill_strays(data_dir: Path) -> list[int]:
    """Function instances run in their own sessions, outside the console's process group: after
    the console is gone, SIGKILL (by pid) any process still working in this bench's data dir."""
    killed: list[int] = []
    marker = str(data_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(marker) or marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed
