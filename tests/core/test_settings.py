"""Production settings: fail loudly without secrets; `check --deploy` is clean with the
documented variables set. Runs manage.py in a subprocess so each case reads its own env."""

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "STRATUS_PRODUCTION": "1",
    "STRATUS_SECRET_KEY": "k" * 30 + "9fQ2-xZ7_wP4vL1tR8sY5uN3mB6cH0jD",
    "STRATUS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "STRATUS_ALLOWED_HOSTS": "console.example.com",
}


def manage(*args, env, tmp_path):
    # A clean environment: no STRATUS_* of the test run, no async-unsafe switch that page
    # tests set, and not the test run's database and Redis (password-less local servers):
    # check --deploy rightly rejects all three.
    inherited_out = {"DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_") and k not in inherited_out}
    full_env.update(env)
    full_env["STRATUS_DATA_DIR"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "STRATUS_SECRET_KEY"}
    result = manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "STRATUS_SECRET_KEY (or STRATUS_SECRET_KEY_FILE) must be set" in result.stderr


def test_production_refuses_to_start_without_encryption_keys(tmp_path):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "STRATUS_ENCRYPTION_KEYS"}
    result = manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "STRATUS_ENCRYPTION_KEYS" in result.stderr


def test_secret_key_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(PRODUCTION_ENV["STRATUS_SECRET_KEY"] + "\n")
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "STRATUS_SECRET_KEY"}
    env["STRATUS_SECRET_KEY_FILE"] = str(key_file)
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_bad_boolean_names_the_variable(tmp_path):
    result = manage("check", env={"STRATUS_DEBUG": "maybe"}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "STRATUS_DEBUG must be one of" in result.stderr


def test_embedded_default_generates_and_keeps_its_secret_key(tmp_path):
    first = manage(
        "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", env={}, tmp_path=tmp_path
    )
    second = manage(
        "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", env={}, tmp_path=tmp_path
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == second.stdout.strip()
    assert len(first.stdout.strip()) >= 50
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
