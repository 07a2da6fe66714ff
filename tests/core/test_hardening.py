"""apps/core/isolation/hardening.py: the data-directory rule function instances and pipeline
steps share, on real directories."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.core.isolation.hardening import kill_group, protect_data_dir
from apps.engine.sandbox.files import SandboxFiles
from apps.pipelines import step_sandbox
from tests.prerequisites import needs


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def base() -> Iterator[Path]:
    """Outside /tmp's private pytest directory: other users traverse to what is reached."""
    path = Path(tempfile.mkdtemp(prefix="stratus-hardening-", dir="/var/tmp"))
    os.chmod(path, 0o711)  # noqa: S103 - traversable, as a data directory's parent is
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def data(base: Path) -> Path:
    """A data directory as the console lays it out, everything open to start with."""
    root = base / "data"
    for directory in ("sandbox", "pipelines/runs/7", "pipelines/mirrors", "artifacts"):
        (root / directory).mkdir(parents=True)
    (root / "secret.key").write_text("k")
    (root / "stratus.sqlite3").write_text("db")
    (root / "link").symlink_to(root / "secret.key")
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, 0o777 if path.is_dir() else 0o666)  # noqa: S103 - the state being closed
    return root


def test_the_way_to_the_reached_directory_is_traversable_and_the_rest_closed(data: Path):
    assert protect_data_dir(data, data / "pipelines" / "runs", keep=[data / "sandbox"])

    assert [mode(data / p) for p in ("", "pipelines", "pipelines/runs")] == [0o711, 0o711, 0o711]
    assert mode(data / "sandbox") == 0o777  # another tenant's way in: kept
    assert mode(data / "pipelines/runs/7") == 0o777  # inside the reached directory: the caller's
    assert [mode(data / p) for p in ("secret.key", "stratus.sqlite3", "artifacts", "pipelines/mirrors")] == [
        0o600,
        0o600,
        0o700,
        0o700,
    ]
    assert (data / "link").is_symlink()


def test_a_directory_outside_the_data_directory_changes_nothing(data: Path, base: Path):
    (base / "elsewhere").mkdir()
    assert not protect_data_dir(data, base / "elsewhere")
    assert mode(data) == 0o777
    assert mode(data / "secret.key") == 0o666


@needs(os.geteuid() == 0, "function sandboxing needs root")
def test_the_engine_closes_the_data_directory_by_the_same_rule(data: Path):
    SandboxFiles(sandbox_dir=data / "sandbox", data_dir=data, sandboxing=True).prepare_base()

    assert (mode(data), mode(data / "sandbox")) == (0o711, 0o711)
    assert (mode(data / "secret.key"), mode(data / "pipelines")) == (0o600, 0o700)


@needs(os.geteuid() == 0, "a step user needs root")
def test_a_step_workspace_is_its_own_and_the_data_directory_closed(data: Path):
    workspace = data / "pipelines" / "runs" / "7"
    (workspace / "src").mkdir()
    step_sandbox.harden_workspace(workspace, 1_000_000_007, data_dir=data, keep=(data / "sandbox",))

    assert (os.stat(workspace).st_uid, os.stat(workspace / "src").st_uid) == (1_000_000_007, 1_000_000_007)
    assert mode(workspace) == 0o700
    assert (mode(data), mode(data / "pipelines"), mode(data / "pipelines" / "runs")) == (0o711, 0o711, 0o711)
    assert (mode(data / "secret.key"), mode(data / "sandbox")) == (0o600, 0o777)


def test_killing_a_group_that_is_gone_is_nothing():
    kill_group(2**22 + 12345)  # no such group: no error
