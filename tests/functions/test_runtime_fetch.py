"""runtime/fetch_artifact.py against a real HTTP server on 127.0.0.1: download, verify, unpack."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "runtime" / "fetch_artifact.py"
_spec = importlib.util.spec_from_file_location("fetch_artifact", SCRIPT)
assert _spec and _spec.loader
fetch_artifact = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fetch_artifact)


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def served() -> Iterator[dict[str, bytes]]:
    """A real HTTP server: path -> body; anything else is 403 (as an expired signed URL is)."""
    bodies: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies.get(self.path)
            self.send_response(200 if body is not None else 403)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    bodies["__base__"] = f"http://127.0.0.1:{server.server_address[1]}".encode()
    yield bodies
    server.shutdown()
    server.server_close()


def url(served: dict[str, bytes], path: str) -> str:
    return served["__base__"].decode() + path


def test_fetch_downloads_verifies_and_unpacks(served, tmp_path):
    archive = make_zip({"main.py": b"def handler(e, c):\n    return 1\n", "lib/util.py": b"X = 2\n"})
    served["/a.zip?sig=ok"] = archive

    files = fetch_artifact.fetch(url(served, "/a.zip?sig=ok"), hashlib.sha256(archive).hexdigest(), tmp_path)

    assert files == ["lib/util.py", "main.py"]
    assert (tmp_path / "main.py").read_bytes() == b"def handler(e, c):\n    return 1\n"
    assert (tmp_path / "lib" / "util.py").read_bytes() == b"X = 2\n"


def test_tampered_body_is_refused_and_nothing_unpacked(served, tmp_path):
    archive = make_zip({"main.py": b"print('original')\n"})
    tampered = make_zip({"main.py": b"print('evil')\n"})
    served["/a.zip"] = tampered

    with pytest.raises(fetch_artifact.FetchError, match="sha256 mismatch"):
        fetch_artifact.fetch(url(served, "/a.zip"), hashlib.sha256(archive).hexdigest(), tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../evil.py", "escapes the archive root"),
        ("a/../../evil.py", "escapes the archive root"),
        ("/etc/evil.py", "absolute path"),
        ("C:/evil.py", "absolute path"),
        ("..\\evil.py", "escapes the archive root"),
    ],
)
def test_zip_slip_is_refused_before_anything_is_written(served, tmp_path, name, rule):
    archive = make_zip({"ok.py": b"1", name: b"evil"})
    served["/slip.zip"] = archive
    dest = tmp_path / "task"

    with pytest.raises(fetch_artifact.FetchError, match=rule):
        fetch_artifact.fetch(url(served, "/slip.zip"), hashlib.sha256(archive).hexdigest(), dest)
    assert not dest.exists()
    assert not (tmp_path / "evil.py").exists()


def test_symlink_entry_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(fetch_artifact.FetchError, match="symlink"):
        fetch_artifact.unpack(buf.getvalue(), tmp_path)


def test_script_exits_nonzero_on_expired_url_without_printing_it(served, tmp_path):
    env = {
        **os.environ,
        "STRATUS_ARTIFACT_URL": url(served, "/gone.zip?sig=secret-signature"),
        "STRATUS_ARTIFACT_SHA256": "0" * 64,
        "STRATUS_TASK_DIR": str(tmp_path),
    }
    result = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "artifact download failed (403)" in result.stderr
    assert "secret-signature" not in result.stderr + result.stdout


def test_script_unpacks_as_the_entrypoint_does(served, tmp_path):
    archive = make_zip({"index.js": b"exports.handler = async () => 1;\n"})
    served["/ok.zip"] = archive
    env = {
        **os.environ,
        "STRATUS_ARTIFACT_URL": url(served, "/ok.zip"),
        "STRATUS_ARTIFACT_SHA256": hashlib.sha256(archive).hexdigest(),
        "STRATUS_TASK_DIR": str(tmp_path),
    }
    result = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "index.js").read_bytes() == b"exports.handler = async () => 1;\n"
