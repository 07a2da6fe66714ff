"""Settings the deployment relies on (issue 20.8): beat's schedule in the data directory, the
S3 artifact storage (the `s3` extra) or a clear error without it. Each case reads its own
environment in a subprocess."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.core.test_settings import manage

SHOW = "from django.conf import settings; import json; print(json.dumps({{'v': {expr}}}))"


def show(expr: str, env: dict[str, str], tmp_path) -> object:
    result = manage("shell", "-c", SHOW.format(expr=expr), env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["v"]


def test_beat_writes_its_schedule_into_the_data_directory(tmp_path):
    expr = "__import__('console.celery', fromlist=['app']).app.conf.beat_schedule_filename"
    path = show(expr, {}, tmp_path)
    assert path == str(tmp_path / "beat" / "celerybeat-schedule")
    assert (tmp_path / "beat").is_dir()


def test_s3_artifact_storage_without_the_extra_says_what_to_install(tmp_path):
    if importlib.util.find_spec("storages") is not None:
        pytest.skip("django-storages is installed here")
    result = manage(
        "check", env={"STRATUS_ARTIFACT_STORAGE": "storages.backends.s3.S3Storage"}, tmp_path=tmp_path
    )
    assert result.returncode != 0
    assert "pip install 'django-storages[s3]>=1.14,<2'" in result.stderr


def test_filesystem_artifacts_live_in_the_data_directory(tmp_path):
    assert show("settings.STORAGES['artifacts']", {}, tmp_path) == {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path)},
    }


def test_the_s3_extra_is_declared_with_django_storages():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("django-storages[s3]") for dep in project["optional-dependencies"]["s3"])


def test_s3_options_come_from_the_environment(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from console.settings import _artifact_storage_options

    s3 = "storages.backends.s3.S3Storage"
    monkeypatch.delenv("STRATUS_S3_BUCKET", raising=False)
    with pytest.raises(ImproperlyConfigured, match="STRATUS_S3_BUCKET"):
        _artifact_storage_options(s3)
    monkeypatch.setenv("STRATUS_S3_BUCKET", "stratus-artifacts")
    monkeypatch.setenv("STRATUS_S3_ENDPOINT_URL", "https://minio.internal:9000")
    assert _artifact_storage_options(s3) == {
        "bucket_name": "stratus-artifacts",
        "location": "",
        "default_acl": None,
        "querystring_auth": True,
        "endpoint_url": "https://minio.internal:9000",
    }
