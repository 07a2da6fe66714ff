"""Environment secrets are write-only: encrypted at rest, never returned, logged or audited
by value; keys rotate with `manage.py rotate_secrets`; who may set them depends on the
environment's protection."""

from __future__ import annotations

import io
import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.core import crypto
from apps.core.logging import JsonFormatter, RequestIdFilter
from apps.tenancy import environment_services
from apps.tenancy.models import Environment, EnvironmentSecret

pytestmark = pytest.mark.django_db

VALUE = "s3cr3t-value-xyz"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The world's users get passwords; a fast hasher keeps setup from dominating (no test
    here checks a password)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def secret_url(world, env: str = "dev", name: str = "DB_PASSWORD") -> str:
    return f"/api/v1/projects/{world.web.pk}/environments/{env}/secrets/{name}"


def put_secret(client, world, env: str = "dev", name: str = "DB_PASSWORD", value: str = VALUE):
    return client.put(secret_url(world, env, name), {"value": value}, format="json")


class JsonLines(logging.Handler):
    """Formats every record the way production does (JsonFormatter + RequestIdFilter)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_lines(caplog):
    """Every logger at DEBUG, every record seen twice: by pytest's caplog and by a handler
    on the root logger using the production JsonFormatter. Loggers that do not propagate
    get both handlers directly."""
    handler = JsonLines()
    root = logging.getLogger()
    loggers = [root] + [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    saved = [(lg, lg.level) for lg in loggers]
    attached = []
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        if lg is root or not lg.propagate:
            for h in (handler, caplog.handler):
                if h not in lg.handlers:
                    lg.addHandler(h)
                    attached.append((lg, h))
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, h in attached:
            lg.removeHandler(h)
        for lg, level in saved:
            lg.setLevel(level)


def dev(world) -> Environment:
    return Environment.objects.get(project=world.web, name="dev")


def rows_containing(text: str) -> list[str]:
    hits = []
    for model in apps.get_models():
        for row in model.objects.values():
            for field, value in row.items():
                raw = bytes(value) if isinstance(value, memoryview | bytes) else str(value).encode()
                if text.encode() in raw:
                    hits.append(f"{model._meta.label}.{field}")
    return hits


def test_secret_value_never_leaves_the_database_in_plaintext(world, client_for, caplog, json_lines):
    client = client_for(world.alice)
    base = f"/api/v1/projects/{world.web.pk}"

    # force_debug_cursor makes django.db.backends log every SQL statement at DEBUG too.
    with CaptureQueriesContext(connection) as queries:
        put = put_secret(client, world)
        reads = [
            client.get(f"{base}/environments/dev/secrets/"),
            client.get(f"{base}/environments/dev/"),
            client.get(f"{base}/environments/"),
            client.get(f"{base}/"),
            client.get("/api/v1/projects/"),
            client.get("/api/v1/audit-events/"),
            client.get("/api/v1/audit-events/", {"action": "environment.secret_set"}),
        ]

    assert put.status_code == 200, put.content
    body = put.json()
    assert set(body) == {"name", "created_at", "updated_at"}
    assert body["name"] == "DB_PASSWORD"

    for response in reads:
        assert response.status_code == 200, response.content
        assert VALUE not in response.content.decode()
    listing = reads[0].json()
    assert listing["count"] == 1
    assert [set(r) for r in listing["results"]] == [{"name", "created_at", "updated_at"}]
    assert listing["results"][0]["name"] == "DB_PASSWORD"
    [audit_row] = reads[-1].json()["results"]
    assert audit_row["changes"] == {"name": "DB_PASSWORD", "created": True}

    # Logs: pytest's capture (every record at DEBUG) and the production JSON formatting.
    request_lines = [r for r in caplog.records if r.name == "stratus.request"]
    assert [(r.method, r.status) for r in request_lines] == [("PUT", 200)] + [("GET", 200)] * len(reads)
    json_request_lines = [json.loads(line) for line in json_lines.lines if '"logger": "stratus.request"' in line]
    assert [(line["method"], line["status"]) for line in json_request_lines] == [("PUT", 200)] + [("GET", 200)] * len(
        reads
    )
    sql_records = [r for r in caplog.records if r.name == "django.db.backends"]
    assert len(sql_records) == len(queries.captured_queries)  # every SQL statement was logged too...
    for record in caplog.records:
        assert VALUE not in record.getMessage()
        assert VALUE not in str(vars(record))
    for line in json_lines.lines:
        assert VALUE not in line
    for query in queries.captured_queries:  # ...and no statement carries the plaintext
        assert VALUE not in query["sql"]

    # Audit: names the secret, never its value.
    event = AuditEvent.objects.get(action="environment.secret_set")
    assert event.changes == {"name": "DB_PASSWORD", "created": True}
    assert event.actor == world.alice
    assert event.org == world.alpha
    assert event.target_type == "environment"
    assert event.target_id == str(dev(world).pk)

    # At rest: Fernet ciphertext, with no column anywhere holding the plaintext.
    secret = EnvironmentSecret.objects.get(environment=dev(world), name="DB_PASSWORD")
    ciphertext = bytes(secret.ciphertext)
    assert VALUE.encode() not in ciphertext
    assert ciphertext.startswith(b"gAAAAA")  # Fernet version byte 0x80, base64url
    assert rows_containing(VALUE) == []
    assert repr(secret) == "<EnvironmentSecret DB_PASSWORD>"
    assert str(secret) == "DB_PASSWORD"

    # The deploy path decrypts it.
    assert environment_services.environment_secret_values(environment=dev(world)) == {"DB_PASSWORD": VALUE}


def test_overwriting_a_secret_reencrypts_and_audits_without_values(world, client_for):
    client = client_for(world.alice)
    assert put_secret(client, world).status_code == 200
    first = bytes(EnvironmentSecret.objects.get(name="DB_PASSWORD").ciphertext)
    response = put_secret(client, world, value="another-value-123")
    assert response.status_code == 200
    assert "another-value-123" not in response.content.decode()
    assert bytes(EnvironmentSecret.objects.get(name="DB_PASSWORD").ciphertext) != first
    assert EnvironmentSecret.objects.count() == 1
    assert environment_services.environment_secret_values(environment=dev(world)) == {
        "DB_PASSWORD": "another-value-123"
    }
    assert list(
        AuditEvent.objects.filter(action="environment.secret_set").order_by("id").values_list("changes", flat=True)
    ) == [{"name": "DB_PASSWORD", "created": True}, {"name": "DB_PASSWORD", "created": False}]


def test_delete_secret(world, client_for):
    client = client_for(world.alice)
    assert put_secret(client, world).status_code == 200
    assert client.delete(secret_url(world)).status_code == 204
    assert EnvironmentSecret.objects.count() == 0
    missing = client.delete(secret_url(world))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert AuditEvent.objects.get(action="environment.secret_delete").changes == {"name": "DB_PASSWORD"}


@pytest.mark.parametrize("kind", ["secrets", "vars"])
def test_invalid_name_in_the_url_is_a_400_naming_it(world, client_for, kind):
    url = f"/api/v1/projects/{world.web.pk}/environments/dev/{kind}/1BAD-NAME"
    response = client_for(world.alice).put(url, {"value": VALUE}, format="json")
    assert response.status_code == 400
    message = "Use letters, digits and underscores, not starting with a digit (at most 128)."
    assert response.json() == {
        "error": {"code": "invalid", "message": f"name: {message}", "fields": {"name": [message]}}
    }
    assert EnvironmentSecret.objects.count() == 0
    assert AuditEvent.objects.filter(action__startswith="environment.").count() == 0


def test_rotate_secrets_reencrypts_with_the_new_primary_key(world, client_for, settings):
    old_key = settings.ENCRYPTION_KEYS[0]
    client = client_for(world.alice)
    assert put_secret(client, world).status_code == 200
    assert put_secret(client, world, env="prod", name="API_KEY", value="prod-key-987").status_code == 200
    prod = Environment.objects.get(project=world.web, name="prod")
    before = {s.pk: bytes(s.ciphertext) for s in EnvironmentSecret.objects.all()}

    new_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new_key]
    crypto._fernet.cache_clear()
    with pytest.raises(ImproperlyConfigured):  # not yet readable with the new key alone
        environment_services.environment_secret_values(environment=dev(world))

    settings.ENCRYPTION_KEYS = [new_key, old_key]
    crypto._fernet.cache_clear()
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    assert out.getvalue() == "re-encrypted 2 secrets\n"
    after = {s.pk: bytes(s.ciphertext) for s in EnvironmentSecret.objects.all()}
    assert set(after) == set(before)
    assert all(after[pk] != before[pk] for pk in before)
    event = AuditEvent.objects.get(action="secrets.rotate")
    assert event.actor is None
    assert event.actor_repr == "system"
    assert event.changes == {"count": 2}

    settings.ENCRYPTION_KEYS = [new_key]
    crypto._fernet.cache_clear()
    assert environment_services.environment_secret_values(environment=dev(world)) == {"DB_PASSWORD": VALUE}
    assert environment_services.environment_secret_values(environment=prod) == {"API_KEY": "prod-key-987"}

    settings.ENCRYPTION_KEYS = [old_key]
    crypto._fernet.cache_clear()
    with pytest.raises(ImproperlyConfigured):  # the old key can be dropped: it reads nothing now
        environment_services.environment_secret_values(environment=dev(world))
    crypto._fernet.cache_clear()


@pytest.mark.parametrize(
    ("name", "env", "status"),
    [
        ("carol", "dev", 403),  # viewer
        ("carol", "prod", 403),
        ("bob", "dev", 200),  # developer: unprotected environments only
        ("bob", "prod", 403),
        ("dora", "dev", 404),  # developer without a grant: the project is invisible
        ("charlie", "dev", 404),  # outsider
        ("adam", "prod", 200),  # admin: protected environments too
        ("alice", "prod", 200),  # owner
    ],
)
def test_who_may_set_secrets(world, client_for, name, env, status):
    response = put_secret(client_for(world.user(name)), world, env=env)
    assert response.status_code == status, response.content
    stored = EnvironmentSecret.objects.filter(environment__project=world.web, environment__name=env).count()
    assert stored == (1 if status == 200 else 0)
    if status == 403:
        assert response.json()["error"]["code"] == "permission_denied"
        who = "an admin" if env == "prod" else "a developer"
        assert response.json()["error"]["message"] == (
            f"Changing configuration of environment '{env}' needs {who} role on the project."
        )
    if status == 404:
        assert response.json()["error"] == {"code": "not_found", "message": "Project not found.", "fields": {}}
    assert VALUE not in response.content.decode()


def test_viewer_can_list_secret_names_but_never_values(world, client_for):
    assert put_secret(client_for(world.alice), world).status_code == 200
    response = client_for(world.carol).get(f"/api/v1/projects/{world.web.pk}/environments/dev/secrets/")
    assert response.status_code == 200
    assert [r["name"] for r in response.json()["results"]] == ["DB_PASSWORD"]
    assert VALUE not in response.content.decode()
