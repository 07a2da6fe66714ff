"""Webhook to live: a real git push, a GitHub-signed delivery to the served console, and the
time until the gateway answers with the version the run built (and the intake's own answer
time). Dependency installs are not part of the pipeline used here."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import latency

PIPELINE = """functions:
  - name: hooked
    path: functions/hooked
    runtime: python3.11
    handler: main.handler
steps:
  - name: test
    run: python3 -c "import sys; sys.exit(0)"
triggers:
  - branch: main
    environment: dev
"""
HANDLER = 'def handler(event, context):\n    return {{"statusCode": 200, "body": "build {n}"}}\n'


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(  # noqa: S603 - the git CLI with fixed arguments
        ["git", *args],  # noqa: S607 - git from PATH, like a developer runs it
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,  # noqa: S607
    )
    return result.stdout.strip()


class WebhookBench:
    def __init__(self, console: Any, project_id: int, work: Path) -> None:
        self.console = console
        self.project_id = project_id
        self.origin = work / "origin.git"
        self.clone = work / "clone"
        self.pushes = 0

    def setup(self) -> None:
        git("init", "-q", "--bare", "-b", "main", str(self.origin), cwd=self.origin.parent)
        self.clone.mkdir()
        git("init", "-q", "-b", "main", cwd=self.clone)
        git("config", "user.email", "bench@example.com", cwd=self.clone)
        git("config", "user.name", "Bench", cwd=self.clone)
        git("remote", "add", "origin", str(self.origin), cwd=self.clone)
        (self.clone / "stratus.yaml").write_text(PIPELINE)
        repo = self.console.call(
            "PUT", f"/projects/{self.project_id}/repository", json={"url": str(self.origin), "default_branch": "main"}
        )
        self.hook = repo["webhooks"]["github"]
        self.secret = repo["webhook_secret"]

    def push(self) -> str:
        self.pushes += 1
        code = self.clone / "functions" / "hooked"
        code.mkdir(parents=True, exist_ok=True)
        (code / "main.py").write_text(HANDLER.format(n=self.pushes))
        git("add", "-A", cwd=self.clone)
        git("commit", "-q", "-m", f"build {self.pushes}", cwd=self.clone)
        git("push", "-q", "origin", "main", cwd=self.clone)
        return git("rev-parse", "HEAD", cwd=self.clone)

    def deliver(self, sha: str) -> tuple[int, float]:
        body = json.dumps(
            {
                "ref": "refs/heads/main",
                "before": "0" * 40,
                "after": sha,
                "head_commit": {"id": sha, "message": f"build {self.pushes}", "author": {"name": "Bench"}},
                "pusher": {"name": "bench"},
            }
        ).encode()
        signature = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        path = "/" + self.hook.split("/", 3)[3]
        begin = time.perf_counter()
        response = self.console.http.post(
            path,
            content=body,
            headers={
                "content-type": "application/json",
                "x-github-event": "push",
                "x-github-delivery": f"bench-{sha}",
                "x-hub-signature-256": signature,
            },
        )
        intake_ms = (time.perf_counter() - begin) * 1000
        if response.status_code not in (200, 202):
            raise RuntimeError(f"webhook -> {response.status_code}: {response.text[:500]}")
        return response.status_code, intake_ms

    def sample(self, timeout: float = 60.0) -> dict[str, float]:
        sha = self.push()
        expected = f"build {self.pushes}".encode()
        began = time.perf_counter()
        _, intake_ms = self.deliver(sha)
        client = latency.KeepAlive(self.console.port)
        try:
            while True:
                # Deployed by the pipeline with the default auth mode (token).
                response = client.get(
                    "/fn/demo/shop/dev/hooked/", headers={"authorization": f"Bearer {self.console.token}"}
                )
                if response.status == 200 and response.body == expected:
                    live = time.perf_counter()
                    break
                if time.perf_counter() - began > timeout:
                    raise RuntimeError(f"push {self.pushes} not live after {timeout} s ({response.status})")
                time.sleep(0.02)
        finally:
            client.close()
        return {"intake_ms": intake_ms, "live_ms": (live - began) * 1000}
