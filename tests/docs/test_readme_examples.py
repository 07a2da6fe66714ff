"""The README's shell examples, run as written against a fresh install (issue 20.9).

A fresh data directory, `manage.py migrate` and `seed_demo` (its printed tokens), then
`manage.py serve` in a subprocess, as `make run` does. Every ```sh block preceded by
``<!-- readme-test: run -->`` runs, in README order, in one bash process (variables carry
from one block to the next), with `set -euo pipefail` and a `curl` that fails on any answer
of 400 or more. Substituted: the console's and the functions' base URLs (the port), the demo
users' tokens (``<alice's token>``, ``<bob's token>``, ``<carol's token>``, ``<token>``: bob's)
and the repository URL of the pipeline example, which points at a local git repository
holding the README's own stratus.yaml (the block preceded by ``<!-- readme-test: stratus.yaml -->``),
so nothing is fetched from the network. Blocks without the marker (production commands,
placeholders) are not run; every block that talks to the API has it
(test_every_api_example_is_run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from console.test_settings import uid_block_for

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN_MARK = "<!-- readme-test: run -->"
YAML_MARK = "<!-- readme-test: stratus.yaml -->"
REPO_URL = "https://github.com/acme/shop.git"
BLOCK = re.compile(r"^(?P<mark><!-- readme-test: [^>]+ -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)

PRELUDE = """\
set -euo pipefail
curl() { command curl --silent --show-error --fail-with-body "$@"; echo; }
"""

# A function and its test, beside the README's stratus.yaml (functions/hello, tests/).
REPO_FILES = {
    "functions/hello/main.py": 'def handler(event, context):\n    return {"hi": 1}\n',
    "tests/test_hello.py": (
        "import sys\nimport unittest\n\nsys.path.insert(0, 'functions/hello')\nimport main  # noqa: E402\n\n\n"
        "class HelloTest(unittest.TestCase):\n    def test_hi(self):\n"
        "        self.assertEqual(main.handler({}, None), {'hi': 1})\n"
    ),
}


def blocks() -> list[tuple[int, str, str, str]]:
    """(line, mark, language, body) of every fenced block of the README."""
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start()) + 1, (m.group("mark") or "").strip(), m.group("lang"), m.group("body"))
        for m in BLOCK.finditer(text)
    ]


def test_every_api_example_is_run():
    for line, mark, lang, body in blocks():
        if lang == "sh" and "$API" in body or "/api/v1" in body and "curl" in body:
            assert mark == RUN_MARK, f"README.md:{line}: an API example without {RUN_MARK}"
    assert sum(mark == RUN_MARK for _, mark, _, _ in blocks()) >= 5
    assert sum(mark == YAML_MARK for _, mark, _, _ in blocks()) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(data_dir: Path, port: int) -> dict[str, str]:
    # A fresh install: none of the test run's STRATUS_* settings, database or Redis.
    dropped = {"DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_") and k not in dropped}
    env.update(
        STRATUS_DATA_DIR=str(data_dir),
        PORT=str(port),
        # The pipeline example's repository is a local one here (the README's is on GitHub).
        STRATUS_REPOSITORY_ALLOW_LOCAL="1",
        # Uid ranges of its own, as the README asks of a second installation on one host: with
        # the defaults, any other installation running on the machine (a developer's console,
        # another run's) makes the server refuse to start (overlapping uid ranges).
        **uid_block_for(str(data_dir)),
    )
    return env


def make_repository(path: Path, stratus_yaml: str) -> str:
    for name, text in {**REPO_FILES, "stratus.yaml": stratus_yaml}.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(path)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "shop"], check=True)
    return f"file://{path}"


@pytest.fixture
def console(tmp_path):
    # Under /tmp and traversable: sandboxed function instances (other uids, as root) reach
    # their code there, which pytest's 0700 tmp dirs do not allow.
    data_dir, port = Path(tempfile.mkdtemp(prefix="stratus-readme-", dir="/tmp")), free_port()
    data_dir.chmod(0o711)
    env = clean_env(data_dir, port)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    seeded = subprocess.run(
        [*manage, "seed_demo"], cwd=ROOT, env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    tokens = dict(re.findall(r"^user=(\w+) password=\S+ token=(\S+)$", seeded, re.M))
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [*manage, "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.2)
        yield base, port, tokens, tmp_path
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_readme_examples_run_as_written_on_a_fresh_install(console):
    base, port, tokens, tmp_path = console
    all_blocks = blocks()
    stratus_yaml = next(body for _, mark, _, body in all_blocks if mark == YAML_MARK)
    (tmp_path / "shop").mkdir()
    repo_url = make_repository(tmp_path / "shop", stratus_yaml)

    substitutions = {
        "http://127.0.0.1:8000": base,
        "http://localhost:8000": f"http://localhost:{port}",
        "<alice's token>": tokens["alice"],
        "<bob's token>": tokens["bob"],
        "<carol's token>": tokens["carol"],
        "<token>": tokens["bob"],
        REPO_URL: repo_url,
    }
    script = [PRELUDE]
    for line, mark, _, body in all_blocks:
        if mark != RUN_MARK:
            continue
        for old, new in substitutions.items():
            body = body.replace(old, new)
        script.append(f"echo '>>> README.md:{line}' >&2\n{body}\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    (tmp_path / "readme.sh").write_text("".join(script))
    result = subprocess.run(
        ["bash", str(tmp_path / "readme.sh")], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (
        f"exit {result.returncode}\n--- stderr (the last block started is the failing one)\n{result.stderr[-4000:]}"
        f"\n--- stdout\n{result.stdout[-4000:]}\n--- serve.log\n{(tmp_path / 'serve.log').read_text()[-3000:]}"
    )

    # The pipeline example's run (the README's stratus.yaml): its test step passes.
    headers = {"Authorization": f"Bearer {tokens['alice']}"}
    deadline = time.monotonic() + 60
    while True:
        runs = httpx.get(f"{base}/api/v1/projects/1/runs/", headers=headers).json()["results"]
        run = httpx.get(f"{base}/api/v1/runs/{runs[0]['id']}/", headers=headers).json()
        if run["state"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, json.dumps(run)
        time.sleep(0.5)
    steps = {step["name"]: step for step in run["steps"]}
    assert steps["test"]["state"] == "succeeded", json.dumps(run, indent=1)

    # print() lines of the function are found with level=info (the logs example says so).
    deadline = time.monotonic() + 10
    while True:
        logs = httpx.get(f"{base}/api/v1/functions/1/logs?level=info", headers=headers).json()["results"]
        if any(line["text"].startswith("hello ") and line["stream"] == "stdout" for line in logs):
            break
        assert time.monotonic() < deadline, logs
        time.sleep(0.2)

    # /api/v1/ is an index, and the API docs load their assets from this host (no internet).
    index = httpx.get(f"{base}/api/v1/").json()
    assert index["docs"] == f"{base}/api/v1/docs/"
    docs = httpx.get(index["docs"]).text
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', docs):
        assert httpx.get(f"{base}{asset}").status_code == 200, asset
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs
