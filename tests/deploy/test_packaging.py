"""deploy/: the console image, compose file, systemd units and Kubernetes manifests, checked
offline (issue 20.8): the compose file against the Compose spec's schema (bundled by
check-jsonschema), the manifests against Kubernetes' schemas (bundled by kubernetes-validate),
the units with `systemd-analyze verify` (or, where it is missing, a parse), the Dockerfile and
the entrypoint statically, and what the pieces must agree on (the data directory, the process
kinds, the settings)."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DATA_DIR = "/var/lib/stratus"
ENTRYPOINT_COMMANDS = {"web", "worker", "beat", "scheduler", "supervisor", "migrate", "create-admin", "healthcheck", "manage"}


# --- compose ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_matches_the_compose_spec_schema(compose):
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_compose_schema_check_catches_a_mistake(compose):
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["web-1"]["restart_policy"] = "always"  # not a service key
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def test_compose_runs_every_process_kind_from_one_image_on_postgres_and_redis(compose):
    services = compose["services"]
    commands = {name: s.get("command", [None])[0] for name, s in services.items() if "build" in s}
    assert commands == {
        "migrate": "migrate",
        "supervisor": "supervisor",
        "web-1": "web",
        "web-2": "web",
        "worker": "worker",
        "beat": "beat",
        "scheduler": "scheduler",
    }
    images = {services[name]["image"] for name in commands}
    assert len(images) == 1
    assert {services[n]["build"]["dockerfile"] for n in commands} == {"deploy/Dockerfile"}
    assert services["db"]["image"].startswith("postgres:") and services["redis"]["image"].startswith("redis:")
    for name in commands:
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://stratus:${POSTGRES_PASSWORD")
        assert env["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD")
        assert env["STRATUS_PRODUCTION"] == "1"
    # web and the supervisor share the data directory (the supervisor's socket, artifacts).
    for name in ("web-1", "web-2", "supervisor", "worker"):
        assert services[name]["environment"]["STRATUS_DATA_DIR"] == DATA_DIR
        assert f"stratus-data:{DATA_DIR}" in services[name]["volumes"]
        assert services[name]["environment"]["STRATUS_ENGINE"] == "remote"
    for name in ("web-1", "web-2", "worker", "beat", "scheduler", "supervisor"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert compose["secrets"]["stratus_secret_key"]["file"] == "./secrets/secret_key"


# --- Kubernetes -------------------------------------------------------------------------------


def manifests() -> list[tuple[str, dict]]:
    out = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


@pytest.mark.parametrize(("name", "doc"), manifests(), ids=[n for n, _ in manifests()])
def test_kubernetes_manifest_matches_the_kubernetes_schema(name, doc):
    kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_kubernetes_schema_check_catches_a_mistake():
    deployment = next(doc for name, doc in manifests() if name.startswith("web.yaml:Deployment"))
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["argz"] = ["web"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def test_kustomization_lists_every_manifest_but_the_migration_job():
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    on_disk = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml", "migrate-job.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_kubernetes_console_runs_functions_on_knative_with_the_rights_it_needs():
    docs = dict(manifests())
    config = docs["config.yaml:ConfigMap/stratus-config"]["data"]
    assert config["STRATUS_DEFAULT_BACKEND"] == "knative"
    assert config["STRATUS_DATA_DIR"] == DATA_DIR
    role = docs["rbac.yaml:Role/stratus-functions"]
    assert role["metadata"]["namespace"] == config["STRATUS_KNATIVE_NAMESPACE"]
    assert {"serving.knative.dev", ""} == {g for rule in role["rules"] for g in rule["apiGroups"]}
    deployments = {n: d for n, d in docs.items() if ":Deployment/" in n or ":Job/" in n}
    kinds = {}
    for name, doc in deployments.items():
        pod = doc["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        kinds[name.split("/")[1]] = container["args"][0]
        assert pod["serviceAccountName"] == "stratus-console"
        assert {"name": "data", "mountPath": DATA_DIR} in container["volumeMounts"]
        assert {"configMapRef": {"name": "stratus-config"}} in container["envFrom"]
    assert kinds == {"stratus-web": "web", "stratus-worker": "worker", "stratus-beat": "beat", "stratus-migrate": "migrate"}
    assert docs["worker.yaml:Deployment/stratus-beat"]["spec"]["replicas"] == 1
    assert docs["worker.yaml:Deployment/stratus-beat"]["spec"]["strategy"]["type"] == "Recreate"
    assert docs["web.yaml:Deployment/stratus-web"]["spec"]["replicas"] == 2


# --- systemd ---------------------------------------------------------------------------------

UNITS = sorted((DEPLOY / "systemd").iterdir())


def installed_units(tmp_path: Path) -> list[Path]:
    """The units as installed, with /opt/stratus pointing at this checkout (verify checks that
    ExecStart's program exists) and the template as the instance web@8001."""
    out = []
    for unit in UNITS:
        name = unit.name.replace("@.service", "@8001.service")
        target = tmp_path / name
        target.write_text(unit.read_text().replace("/opt/stratus/.venv/bin/", f"{Path(sys.executable).parent}/"))
        out.append(target)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify(tmp_path):
    units = installed_units(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)], capture_output=True, text=True, cwd=tmp_path
    )
    # Any complaint (unknown key, missing program, bad dependency) is printed; none is allowed.
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_unit_parses_and_runs_a_real_command(unit):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    assert "Unit" in parser and "Install" in parser
    if unit.suffix == ".target":
        return
    service = parser["Service"]
    assert service["EnvironmentFile"] == "/etc/stratus/stratus.env"
    assert "STRATUS_DATA_DIR=/var/lib/stratus" in service["Environment"]
    assert service["WorkingDirectory"] == "/opt/stratus"
    # configparser keeps the last of repeated keys: read every ExecStart= from the text.
    for line in re.findall(r"^ExecStart=(.*)$", unit.read_text(), re.M):
        program, *args = line.split()
        assert program in ("/opt/stratus/.venv/bin/python", "/opt/stratus/.venv/bin/celery")
        if program.endswith("python"):
            assert args[0] == "manage.py" and management_command_exists(args[1]), line


def test_systemd_units_cover_every_process_kind():
    text = {u.name: u.read_text() for u in UNITS}
    assert "manage.py serve" in text["stratus-web@.service"]
    assert "manage.py run_supervisor" in text["stratus-supervisor.service"]
    assert "Delegate=yes" in text["stratus-supervisor.service"]
    assert "console worker" in text["stratus-worker.service"] and "KillMode=mixed" in text["stratus-worker.service"]
    assert "console beat" in text["stratus-beat.service"]
    assert "manage.py migrate" in text["stratus-migrate.service"]


def management_command_exists(name: str) -> bool:
    return any((ROOT / "apps").glob(f"*/management/commands/{name}.py")) or name in {
        "migrate",
        "collectstatic",
        "check",
        "createsuperuser",
    }


# --- the image ----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_copies_only_what_exists_and_runs_the_entrypoint():
    instructions = dockerfile_instructions()
    ops = {op for op, _ in instructions}
    assert ops <= {"FROM", "WORKDIR", "COPY", "RUN", "ENV", "VOLUME", "EXPOSE", "ENTRYPOINT", "CMD", "ARG", "USER"}
    stages = [rest.split() for op, rest in instructions if op == "FROM"]
    assert stages[-1][0].startswith("python:3.11")
    names = {s[2] for s in stages if len(s) == 3 and s[1].upper() == "AS"}
    for op, rest in instructions:
        if op != "COPY":
            continue
        parts = rest.split()
        if parts[0].startswith("--from="):
            assert parts[0].removeprefix("--from=") in names
            continue
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    entrypoint = json.loads(next(rest for op, rest in instructions if op == "ENTRYPOINT"))
    assert entrypoint[-1] == "/usr/local/bin/stratus"
    assert json.loads(next(rest for op, rest in instructions if op == "CMD")) == ["web"]
    env = " ".join(rest for op, rest in instructions if op == "ENV")
    assert f"STRATUS_DATA_DIR={DATA_DIR}" in env
    assert any(op == "VOLUME" and DATA_DIR in rest for op, rest in instructions)
    # requirements.lock is what the image installs: the same pins as `make install`.
    assert any(op == "RUN" and "pip install" in rest and "requirements.lock" in rest for op, rest in instructions)
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "var", "frontend/node_modules"} <= set(ignored)


def test_entrypoint_dispatches_every_process_kind(tmp_path):
    script = DEPLOY / "entrypoint.sh"
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    # Run it with a stand-in python and celery that print what they were asked to run.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python", "celery"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*"\n')
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STRATUS_APP_DIR": str(tmp_path), "PORT": "8123"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(script), *args], env=env, capture_output=True, text=True)

    assert run("web").stdout.strip() == "python manage.py serve --host 0.0.0.0 --port 8123 --workers 1"
    assert run().stdout.strip() == "python manage.py serve --host 0.0.0.0 --port 8123 --workers 1"
    assert run("worker").stdout.startswith("celery -A console worker -l info")
    assert run("beat").stdout.startswith("celery -A console beat -l info")
    assert run("supervisor").stdout.strip() == "python manage.py run_supervisor"
    assert run("scheduler").stdout.strip() == "python manage.py run_scheduler"
    assert run("migrate").stdout.splitlines() == [
        "python manage.py migrate --noinput",
        "python manage.py collectstatic --noinput -v 0",
    ]
    assert run("create-admin", "ops", "--org", "acme").stdout.strip() == "python manage.py create_admin ops --org acme"
    assert run("manage", "check", "--deploy").stdout.strip() == "python manage.py check --deploy"
    unknown = run("webb")
    assert unknown.returncode == 64 and "unknown command 'webb'" in unknown.stderr
    documented = set(re.findall(r"^#   ([a-z-]+)", script.read_text(), re.M))
    assert documented == ENTRYPOINT_COMMANDS
    assert set(re.findall(r"^([a-z-]+)\)$", script.read_text(), re.M)) == ENTRYPOINT_COMMANDS
