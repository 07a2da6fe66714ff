"""The published OpenAPI schema tells the truth: every operation of /api/v1/schema/, exercised
by schemathesis against the real WSGI app (console.wsgi: every middleware, the URLconf, DRF,
the exception handler, the database), answers with a status the schema documents, the content
type it documents and a body that validates against the documented schema; and never 500.

The caller is alice (owner of org alpha) with a token of every scope, in a world with data:
a team, invitations, variables, secrets, deployers, tokens, a function with two versions and
a draft, bindings with a timeline, releases running / awaiting approval / paused, log lines
and an invocation, a repository (a git repository on this machine), a delivery, runs that
failed / are queued / wait for approval, an alert rule with a silence, and schedules (one
running, one paused). A schedule's run-now is exercised too: it answers 202 and hands the
fire to the scheduler after commit, which a rolled-back request never reaches.

Each operation is sent, in order:
1. hand-made requests (VALID below: what a client would send, with path parameters chosen
   to reach the 2xx answer: deploy to an unbound environment, approve the release bob asked
   for, cancel the queued run...), or, for an operation not in VALID, one request at the
   world's first objects with no body;
2. requests drawn by hypothesis (derandomized: the same ones on every run), a mix of
   schema-valid requests whose path parameters point at the world's objects, the same with
   schema-invalid (negative) parts, and schema-valid requests with generated path parameters.
Every request runs in a savepoint that is rolled back afterwards, so each one sees the same
world (deleting the project does not empty it for the next operation), and nothing queued
"after commit" (Celery tasks, route announcements) ever runs. Every operation must have
answered at least one 2xx, so a broken VALID entry cannot hide an answer from the checks.

Not exercised here, and why:
- POST /functions/{function_id}/invoke runs tenant code through the engine (processes, and
  engine threads with database connections of their own, which cannot see this test's
  uncommitted world); test_invoke_answers_as_the_schema_says checks its answers with a real
  engine instead.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core import signals
from django.db import close_old_connections, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.alerts import services as alert_services
from apps.functions import deploy_services, draft_services, test_event_services, version_services
from apps.functions import services as function_services
from apps.functions.archives import build_canonical_zip
from apps.monitoring.records import InvocationRecord, LogRecord
from apps.monitoring.sink import RecordSink
from apps.pipelines.models import Delivery, Run, RunLogLine, RunStep
from apps.pipelines.repository_services import repository_set
from apps.releases.services import release_pause, release_start
from apps.tenancy import (
    environment_services,
    invitation_services,
    org_services,
    project_services,
    team_services,
    token_services,
)
from apps.tenancy.models import ApiToken, Environment, Invitation
from apps.tenancy.roles import Role
from apps.triggers import services as trigger_services
from apps.triggers.models import AsyncEvent, AsyncState
from tests.engine.conftest import engine, sandbox_dir  # noqa: F401  (the engine fixture for invoke)
from tests.pipelines.conftest import HELLO, PIPELINE, GitRepo

# Hypothesis keeps caches (unicode tables, constants it collects from the code) in a
# directory: this run's data directory, not a .hypothesis/ in the work tree.
set_hypothesis_home_dir(django_settings.DATA_DIR / "hypothesis")

API = "/api/v1"
SCHEMA_URL = f"{API}/schema/?format=json"
# The answer checks: no 500, a documented status and content type, a body the schema allows.
# Not negative_data_rejection (that invalid input is refused): DRF's own leniency (a number
# for a string field, an empty filter) is not a lie of the schema about the answers.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Operations this test sends no request to (see the module docstring).
EXCLUDED = {
    f"POST {API}/functions/{{function_id}}/invoke": "runs tenant code through the engine; "
    "test_invoke_answers_as_the_schema_says checks its answers",
    f"POST {API}/functions/{{function_id}}/draft/invoke": "runs the draft through the engine; "
    "test_invoke_answers_as_the_schema_says checks its answers",
    f"GET {API}/functions/{{function_id}}/logs/stream": "a Server-Sent Events stream never ends (and is served "
    "by the ASGI app, not WSGI); tests/monitoring/test_log_tail_served.py reads it over a real socket",
}

# Drawn requests per operation, on top of the hand-made ones: enough for a few error answers
# of each operation, few enough that the whole walk stays well under a minute on two cores.
EXAMPLES_PER_OPERATION = 10

TEAM = "platform"
# An AWS SAM template of two functions (functions/import).
SAM_TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Resources:
  HelloFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.lambda_handler
      Runtime: python3.11
      Timeout: 10
  OrdersFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: index.handler
      Runtime: nodejs20.x
      MemorySize: 256
"""
VAR_NAME, SECRET_NAME = "API_BASE_URL", "PAYMENT_KEY"


@pytest.fixture
def wsgi_app() -> Iterator[Any]:
    """console.wsgi's application, called in this thread on this test's connection. As
    Django's test client does, keep request_started/finished from closing the connection,
    which would end the test's transaction (and with it the savepoint per request)."""
    from console.wsgi import application

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield application
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


Values = dict[str, list[Any]]
Requests = dict[str, list[dict[str, Any]]]


def build_world(world: Any, git_repo: GitRepo) -> tuple[Values, Requests]:
    """The world's objects. Answers the values of every path parameter that point at them
    (the first of each is the default) and the hand-made requests per operation."""
    w = world
    team = team_services.team_create(actor=w.alice, org=w.alpha, slug=TEAM, name="Platform Team")
    team_services.team_member_add(actor=w.alice, team=team, user=w.bob)
    spare_org = org_services.org_create(actor=w.alice, slug="spare", name="Spare")  # empty: deletable
    empty_project = project_services.project_create(actor=w.alice, org=w.alpha, slug="empty", name="Empty")
    invitation, _ = invitation_services.invitation_create(
        actor=w.alice, org=w.alpha, email="newhire@example.com", role=Role.DEVELOPER
    )
    # Invitations of alice to charlie's org: one she can accept (201), one expired (410).
    _, welcome = invitation_services.invitation_create(
        actor=w.charlie, org=w.other, email=w.alice.email, role=Role.VIEWER
    )
    expired, expired_token = invitation_services.invitation_create(
        actor=w.charlie, org=w.other, email=w.alice.email, role=Role.ADMIN
    )
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))

    dev, prod = (Environment.objects.get(project=w.web, name=name) for name in ("dev", "prod"))
    for env in (dev, prod):
        environment_services.environment_var_set(
            actor=w.alice, environment=env, name=VAR_NAME, value="https://api.example"
        )
        environment_services.environment_secret_set(actor=w.alice, environment=env, name=SECRET_NAME, value="sk_live_1")
    environment_services.environment_deployer_add(actor=w.alice, environment=prod, user=w.bob)
    environment_services.environment_deployer_add(actor=w.alice, environment=prod, team=team)
    other_token, _ = token_services.token_create(user=w.alice, name="ci", scopes=["read"])

    function = function_services.function_create(
        actor=w.alice, project=w.web, name="checkout", runtime="python3.11", handler="main.handler"
    )
    scratch = function_services.function_create(  # never deployed: deletable
        actor=w.alice, project=w.web, name="scratch", runtime="node20", handler="index.handler"
    )
    for n in (1, 2):
        version_services.version_create(
            actor=w.alice,
            function=function,
            files={"main.py": f"def handler(event, context):\n    return {n}\n".encode(), "README.md": b"# hi\n"},
            source="files",
        )
    draft_services.draft_file_write(actor=w.alice, function=function, path="main.py", content=b"def handler(e, c): 3\n")
    draft_zip = build_canonical_zip({"main.py": b"def handler(e, c): 4\n", "lib/util.py": b"X = 1\n"})
    shared_event, private_event = (
        test_event_services.test_event_create(
            actor=w.alice, function=function, name=name, body={"path": "/"}, shared=name == "shared"
        )
        for name in ("shared", "mine")
    )
    # Releases in every state a command acts on: running in dev, awaiting approval in staging
    # (bob asked: alice may approve), paused in qa. prod serves version 2 after 1 (rollback
    # and promote have a previous version and a source); test has no binding yet.
    staging = environment_services.environment_update(
        actor=w.alice,
        environment=Environment.objects.get(project=w.web, name="staging"),
        requires_release_approval=True,
    )
    qa = environment_services.environment_create(actor=w.alice, project=w.web, name="qa")
    environment_services.environment_create(actor=w.alice, project=w.web, name="test")
    v1, v2 = function.versions.get(number=1), function.versions.get(number=2)
    for env in (dev, prod, staging, qa):
        for version in (v1, v2):
            deploy_services.deploy(actor=w.alice, function=function, environment=env, version=version)
    plan = {"steps": [10, 100], "advance": "manual"}
    running = release_start(actor=w.alice, function=function, environment=dev, version=v1, plan=plan)
    awaiting = release_start(actor=w.bob, function=function, environment=staging, version=v1, plan=plan)
    paused = release_pause(
        actor=w.alice, release=release_start(actor=w.alice, function=function, environment=qa, version=v1, plan=plan)
    )

    # An alert rule, a silence of it, and two schedules: one running, one paused (resume).
    rule, _ = alert_services.alert_rule_create(
        actor=w.alice,
        function=function,
        environment=dev,
        fields={"name": "errors", "metric": "error_rate", "comparison": ">", "threshold": 0.05, "window_s": 300},
    )
    silence = alert_services.silence_create(
        actor=w.alice, function=function, rule=rule, ends_at=timezone.now() + timedelta(hours=1), comment="deploying"
    )
    trigger, stopped = (
        trigger_services.trigger_create(
            actor=w.alice, function=function, environment=dev, fields={"name": name, "expression": "rate(5 minutes)"}
        )
        for name in ("every-5-min", "stopped")
    )
    stopped = trigger_services.trigger_pause(actor=w.alice, trigger=stopped)
    # A dead asynchronous event (as a function failing for good leaves one) for the DLQ's routes.
    dead = AsyncEvent.objects.create(
        function=function,
        environment=dev,
        request_id="d0d0d0d0-0000-4000-8000-00000000d0d0",
        payload={"order": 7},
        version=1,
        state=AsyncState.DEAD,
        attempts=3,
        failures=3,
        error_type="ValueError",
        error="ValueError: boom",
        next_attempt_at=timezone.now(),
        created_at=timezone.now(),
        enqueued_at=timezone.now(),
    )

    sink = RecordSink(flush_interval_s=0)
    now = timezone.now()
    ids = {"function_id": function.pk, "environment_id": dev.pk, "binding_id": None, "version": 2, "request_id": "r1"}
    sink.submit_logs([LogRecord(**ids, ts=now, stream="stdout", text="hello")])
    sink.submit_invocation(
        InvocationRecord(
            **ids,
            trigger="http",
            started_at=now,
            duration_ms=5.0,
            init_duration_ms=1.5,
            cold_start=True,
            status="ok",
            error_type="",
            peak_rss_kb=None,
        )
    )
    assert sink.flush() == 2

    # A repository on this machine: starting a run fetches it (a remote URL would go out to
    # the network).
    git_repo.commit("first", {"functions/hello/main.py": HELLO % "v1", "stratus.yaml": PIPELINE})
    git_repo.push("main")
    repository = repository_set(actor=w.alice, project=w.web, url=str(git_repo.origin)).repository
    # Runs a command acts on: failed (retry), queued (cancel), waiting for approval to deploy
    # to prod (approve, reject). Rows written directly: no executor runs here.
    failed = Run.objects.create(
        project=w.web,
        repository=repository,
        number=1,
        branch="main",
        commit_sha="c" * 40,
        trigger="push",
        state=Run.State.FAILED,
        started_at=now - timedelta(seconds=3),
        finished_at=now,
    )
    step = RunStep.objects.create(run=failed, index=0, name="test", kind="run", command="pytest", state="failed")
    RunLogLine.objects.bulk_create(
        RunLogLine(run=failed, step=step if seq > 1 else None, seq=seq, ts=now, stream="stdout", text=f"line {seq}")
        for seq in (1, 2, 3)
    )
    queued = Run.objects.create(
        project=w.web, repository=repository, number=2, branch="main", commit_sha="d" * 40, trigger="manual"
    )
    waiting = Run.objects.create(
        project=w.web,
        repository=repository,
        number=3,
        branch="main",
        commit_sha="e" * 40,
        trigger="push",
        environment="prod",
        state=Run.State.WAITING_APPROVAL,
        pipeline={"approval": "deploy"},
    )
    delivery = Delivery.objects.create(
        repository=repository,
        provider="github",
        delivery_id="d-1",
        event="push",
        payload='{"ref": "refs/heads/main", "after": "' + "c" * 40 + '"}',
        verified=True,
        outcome=Delivery.Outcome.ACCEPTED,
        ref="refs/heads/main",
        commit_sha="c" * 40,
        run=failed,
    )

    values: Values = {
        "org": [w.alpha.slug, spare_org.slug],
        "project_id": [w.web.pk, empty_project.pk],
        "env": ["dev", "prod", "test"],
        "username": ["bob", "carol"],
        "team": [team.slug],
        "invitation_id": [invitation.pk],
        "grant_id": [w.web.grants.get(user=w.bob).pk],
        "token_id": [other_token.pk],
        "name": [VAR_NAME, SECRET_NAME],
        "principal": ["user:bob", f"team:{team.slug}"],
        "function_id": [function.pk, scratch.pk],
        "number": [1, 2],
        "path": ["main.py", "README.md"],
        "environment": ["dev", "prod", "qa"],
        "release_id": [running.pk, awaiting.pk, paused.pk],
        "delivery_id": [delivery.pk],
        "run_id": [failed.pk, queued.pk, waiting.pk],
        "test_event_id": [shared_event.pk, private_event.pk],
        "alert_rule_id": [rule.pk],
        "silence_id": [silence.pk],
        "trigger_id": [trigger.pk, stopped.pk],
        "request_id": [dead.request_id],
    }
    fn = f"{API}/functions/{{function_id}}"
    project = f"{API}/projects/{{project_id}}"
    env_path = f"{project}/environments/{{env}}"
    org = f"{API}/orgs/{{org}}"
    valid: Requests = {
        # tenancy
        f"POST {API}/orgs/": [{"body": {"slug": "neworg", "name": "New Org"}}],
        f"PATCH {org}/": [{"body": {"name": "Alpha Inc"}}],
        f"DELETE {org}/": [{"path": {"org": spare_org.slug}}],
        f"PATCH {org}/members/{{username}}/": [{"body": {"role": "admin"}}],
        f"POST {org}/teams/": [{"body": {"slug": "ops", "name": "Ops"}}],
        f"PATCH {org}/teams/{{team}}/": [{"body": {"name": "Platform"}}, {"body": {}}],
        f"POST {org}/teams/{{team}}/members/": [{"body": {"user": "carol"}}],
        f"POST {org}/invitations/": [{"body": {"email": "later@example.com", "role": "viewer"}}],
        f"POST {API}/invitations/accept": [{"body": {"token": welcome}}, {"body": {"token": expired_token}}],
        f"POST {API}/projects/": [{"body": {"org": "alpha", "slug": "api", "name": "API"}}],
        f"PATCH {project}/": [{"body": {"description": "The web shop"}}],
        f"DELETE {project}/": [{"path": {"project_id": empty_project.pk}}],
        f"POST {project}/grants/": [
            {"body": {"user": "dora", "role": "viewer"}},
            {"body": {"team": TEAM, "role": "developer"}},
        ],
        f"PATCH {project}/grants/{{grant_id}}/": [{"body": {"role": "admin"}}],
        f"POST {project}/environments/": [{"body": {"name": "perf", "protected": True}}],
        f"PATCH {env_path}/": [{"body": {"requires_release_approval": True, "egress_allow": ["10.1.2.0/24"]}}],
        f"DELETE {env_path}/": [{"path": {"env": "test"}}],
        f"POST {env_path}/deployers/": [{"body": {"user": "dora"}}, {"body": {"team": TEAM}}],
        f"DELETE {env_path}/deployers/{{principal}}": [{"path": {"env": "prod"}}],
        f"PUT {env_path}/vars/{{name}}": [{"path": {"name": VAR_NAME}, "body": {"value": "https://v2.example"}}],
        f"DELETE {env_path}/vars/{{name}}": [{"path": {"name": VAR_NAME}}],
        f"PUT {env_path}/secrets/{{name}}": [{"path": {"name": SECRET_NAME}, "body": {"value": "sk_live_2"}}],
        f"DELETE {env_path}/secrets/{{name}}": [{"path": {"name": SECRET_NAME}}],
        f"POST {API}/tokens/": [{"body": {"name": "deploy-bot", "scopes": ["read", "deploy"]}}],
        f"GET {API}/audit-events/": [{"query": {"org": "alpha", "limit": 5, "offset": 1}}],
        # functions
        f"POST {project}/functions/": [
            {"body": {"name": "resize", "runtime": "python3.11", "handler": "main.handler", "memory_mb": 256}}
        ],
        f"PATCH {fn}/": [{"body": {"timeout_s": 30, "env": {"MODE": "fast"}}}],
        f"DELETE {fn}/": [{"path": {"function_id": scratch.pk}}],
        f"POST {fn}/versions/": [{"body": {"files": {"main.py": "x = 1\n"}, "message": "m"}}],
        f"GET {fn}/diff": [{"query": {"from": 1, "to": 2}}],
        f"PUT {fn}/draft/files/{{path}}": [
            {"body": {"content": "print('hi')\n"}},
            {"path": {"path": "lib/new.py"}, "body": {"content": "aGk=", "encoding": "base64"}},
        ],
        f"GET {fn}/draft/files/{{path}}": [{"query": {"raw": True}}, {}],
        f"POST {fn}/draft/rename": [{"body": {"from": "main.py", "to": "app.py"}}],
        f"POST {fn}/draft/publish": [{"body": {"message": "from the draft"}}],
        f"PUT {fn}/draft/archive": [
            {"body": {"file": draft_zip}, "media_type": "multipart/form-data"},
            {"body": {"file": b"not a zip"}, "media_type": "multipart/form-data"},
        ],
        f"POST {fn}/draft/check": [
            {"body": {"path": "main.py", "content": "import os\nx = y\nif x\n"}},
            {"body": {"path": "main.py", "content": "import os\nx = y\n"}},
            {"body": {"path": "main.py"}},
            {"body": {"path": "README.md", "content": "# notes"}},
        ],
        f"POST {fn}/deploy": [
            {"body": {"environment": "test", "version": 2}},
            {"body": {"environment": "prod", "version": 1, "auth_mode": "token"}},
        ],
        f"POST {fn}/rollback": [{"body": {"environment": "prod"}}],
        f"POST {fn}/promote": [{"body": {"from_environment": "prod", "environment": "test"}}],
        f"PATCH {fn}/bindings/{{environment}}": [
            {
                "path": {"environment": "prod"},
                "body": {
                    "header_rules": [
                        {"source": "header", "name": "X-Beta", "match": "equals", "value": "1", "version": 1}
                    ],
                    "sticky_key": "header:X-User",
                },
            }
        ],
        f"POST {fn}/test-events/": [{"body": {"name": "GET /items", "body": {"httpMethod": "GET"}, "shared": True}}],
        f"PATCH {fn}/test-events/{{test_event_id}}/": [{"body": {"name": "renamed", "body": [1, "two"]}}],
        f"GET {fn}/logs": [{"query": {"environment": "dev", "request_id": "r1"}}],
        f"GET {fn}/invocations": [{"query": {"environment": "dev", "cold_start": True}}],
        f"GET {fn}/invocations/summary": [{"query": {"window_s": 600}}],
        f"GET {fn}/metrics": [{"query": {"environment": "dev", "group_by": "version"}}, {}],
        f"GET {project}/metrics/summary": [{"query": {"environment": "dev"}}, {}],
        f"POST {project}/functions/import": [
            {"body": {"template": SAM_TEMPLATE, "dry_run": True}},
            {"body": {"template": SAM_TEMPLATE}},
        ],
        # alerts
        f"POST {fn}/alert-rules/": [
            {
                "body": {
                    "environment": "prod",
                    "name": "slow",
                    "metric": "duration_p99",
                    "comparison": ">",
                    "threshold": 500,
                    "window_s": 600,
                    "for_s": 120,
                    "severity": "critical",
                }
            }
        ],
        f"PATCH {API}/alert-rules/{{alert_rule_id}}": [{"body": {"threshold": 0.2, "enabled": False}}],
        f"POST {fn}/silences/": [
            {"body": {"duration_s": 3600, "comment": "maintenance"}},
            {"body": {"duration_s": 600, "environment": "prod"}},
            {"body": {"duration_s": 600, "rule": rule.pk}},
        ],
        # schedules (run queues the fire after commit, which a rolled-back request never reaches:
        # no engine is needed for its answer)
        f"POST {fn}/triggers/": [
            {
                "body": {
                    "environment": "dev",
                    "name": "nightly",
                    "expression": "cron(0 3 * * ? *)",
                    "timezone": "Europe/Paris",
                }
            }
        ],
        f"PATCH {API}/triggers/{{trigger_id}}": [{"body": {"payload": {"report": "daily"}, "overlap_policy": "skip"}}],
        f"POST {API}/triggers/{{trigger_id}}/resume": [{"path": {"trigger_id": stopped.pk}}],
        f"POST {API}/triggers/preview": [{"body": {"expression": "rate(5 minutes)"}}],
        # asynchronous invocation (a redrive queues the event again; nothing runs in a rolled-back request)
        f"GET {fn}/async-config": [{"query": {"environment": "dev"}}],
        f"PUT {fn}/async-config": [{"query": {"environment": "dev"}, "body": {"max_retries": 3, "max_event_age_s": 3600}}],
        f"POST {API}/async-events/{{request_id}}/redrive": [{"body": {"payload": {"order": 8}}}],
        f"POST {fn}/dead-letters/redrive": [{"body": {"request_ids": [dead.request_id], "rate_per_s": 5}}],
        f"POST {fn}/dead-letters/purge": [{"body": {"request_ids": [dead.request_id]}}],
        # releases
        f"POST {fn}/releases/": [
            {"body": {"environment": "prod", "version": 1, "plan": {"steps": [50, 100], "advance": "manual"}}}
        ],
        f"POST {API}/releases/{{release_id}}/approve": [{"path": {"release_id": awaiting.pk}}],
        f"POST {API}/releases/{{release_id}}/reject": [{"path": {"release_id": awaiting.pk}}],
        f"POST {API}/releases/{{release_id}}/resume": [{"path": {"release_id": paused.pk}}],
        # pipelines
        f"PUT {project}/repository": [
            {"body": {"url": str(git_repo.origin), "default_branch": "main", "rotate_secret": True}},
            {"body": {"url": str(git_repo.origin), "approver_not_pusher": True}},
            {"path": {"project_id": empty_project.pk}, "body": {"url": str(git_repo.origin)}},
        ],
        f"POST {project}/runs/": [{"body": {"branch": "main"}}],
        f"GET {project}/runs/": [{"query": {"state": "failed", "branch": "main"}}],
        f"GET {API}/runs/{{run_id}}/log": [{"query": {"after": 1, "limit": 1}}],
        f"POST {API}/runs/{{run_id}}/cancel": [{"path": {"run_id": queued.pk}}],
        f"POST {API}/runs/{{run_id}}/approve": [{"path": {"run_id": waiting.pk}}],
        f"POST {API}/runs/{{run_id}}/reject": [{"path": {"run_id": waiting.pk}}],
    }
    return values, valid


def made_requests(operation: Any, values: Values, made: list[dict[str, Any]]) -> list[Any]:
    """The hand-made requests of one operation as schemathesis cases (the world's first
    objects unless a request names its own)."""
    names = [p.name for p in operation.path_parameters]
    missing = [name for name in names if name not in values]
    assert not missing, f"{operation.label}: give build_world() real values for {missing}"
    cases = []
    for request in made or [{}]:
        path = {name: values[name][0] for name in names} | request.get("path", {})
        body = request.get("body", NOT_SET)
        cases.append(
            operation.Case(
                path_parameters=path,
                query=request.get("query"),
                body=body,
                media_type=request.get("media_type", "application/json") if body is not NOT_SET else None,
            )
        )
    return cases


def drawn_requests(operation: Any, values: Values) -> st.SearchStrategy[Any]:
    names = [p.name for p in operation.path_parameters]
    real = st.fixed_dictionaries({name: st.sampled_from(values[name]) for name in names})
    return st.one_of(
        real.flatmap(lambda path: operation.as_strategy(GenerationMode.POSITIVE, path_parameters=path)),
        real.flatmap(lambda path: operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=path)),
        operation.as_strategy(GenerationMode.POSITIVE),
    )


@pytest.mark.django_db
def test_every_operation_answers_as_the_schema_says(world, wsgi_app, settings, tmp_path):
    settings.STRATUS_REPOSITORY_ALLOW_LOCAL = True
    started = time.monotonic()
    values, valid = build_world(world, GitRepo(tmp_path))
    _, plaintext = token_services.token_create(user=world.alice, name="conformance", scopes=list(ApiToken.Scope.values))
    auth = {"Authorization": f"Bearer {plaintext}"}
    schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert set(valid) <= labels, f"VALID names operations the schema lacks: {sorted(set(valid) - labels)}"
    assert set(EXCLUDED) <= labels, f"EXCLUDED names operations the schema lacks: {sorted(set(EXCLUDED) - labels)}"
    exercised = [op for op in operations if op.label not in EXCLUDED]

    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    failures: dict[str, list[str]] = defaultdict(list)

    def send(case: Any) -> None:
        with transaction.atomic():  # a savepoint, rolled back: every request sees the same world
            response = case.call(headers=auth)
            transaction.set_rollback(True)
        statuses[case.operation.label][response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    for operation in exercised:
        for case in made_requests(operation, values, valid.get(operation.label, [])):
            try:
                send(case)
            except (AssertionError, BaseExceptionGroup) as exc:
                failures[operation.label].append(f"{type(exc).__name__}: {exc}")

        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,  # the same requests on every run
            database=None,  # no .hypothesis/ directory
            deadline=timedelta(seconds=10),
            suppress_health_check=list(HealthCheck),
        )
        @given(case=drawn_requests(operation, values))
        def exercise(case: Any) -> None:
            send(case)

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, reported together
            failures[operation.label].append(f"{type(exc).__name__}: {exc}")

    elapsed = time.monotonic() - started
    report = "\n".join(f"  {label}: {dict(sorted(counts.items()))}" for label, counts in sorted(statuses.items()))
    print(f"\n{len(exercised)} operations exercised, {len(EXCLUDED)} excluded, {elapsed:.1f} s:\n{report}")
    assert not failures, "\n\n".join(f"=== {label}\n" + "\n".join(texts) for label, texts in sorted(failures.items()))
    without_2xx = sorted(op.label for op in exercised if not any(200 <= code < 300 for code in statuses[op.label]))
    assert not without_2xx, f"no 2xx answer was checked for: {without_2xx} (fix their VALID requests)"


INVOKE_HANDLER = """
def handler(event, context):
    print("got", event)
    if event.get("fail"):
        raise ValueError(event["fail"])
    return {"echo": event}
"""


@pytest.mark.usefixtures("engine")
def test_invoke_answers_as_the_schema_says(world):
    """The one operation the walk above leaves out, with a real engine and function process:
    a result, an error, a version that does not exist, a function not deployed there, a
    body that is not valid; each answer checked against the schema like the others."""
    from console.wsgi import application
    from tests.engine.conftest import deploy_latest, make_function

    deployed = make_function(world, "echo", {"main.py": INVOKE_HANDLER})
    deploy_latest(world, deployed)
    undeployed = make_function(world, "idle", {"main.py": INVOKE_HANDLER})
    _, plaintext = token_services.token_create(user=world.alice, name="conformance", scopes=list(ApiToken.Scope.values))
    operation = schemathesis.openapi.from_wsgi(SCHEMA_URL, application)[f"{API}/functions/{{function_id}}/invoke"][
        "POST"
    ]

    answers = []
    for function, body in (
        (deployed, {"environment": "dev", "event": {"n": 1}}),
        (deployed, {"environment": "dev", "event": {"fail": "bad input"}}),
        (deployed, {"environment": "dev", "event": {}, "version": 9}),
        (undeployed, {"environment": "dev", "event": {}}),
        (deployed, {"event": {}}),
    ):
        case = operation.Case(path_parameters={"function_id": function.pk}, body=body, media_type="application/json")
        response = case.call(headers={"Authorization": f"Bearer {plaintext}"})
        case.validate_response(response, checks=CHECKS)
        answers.append((response.status_code, response.json().get("status") or response.json()["error"]["code"]))

    assert answers == [(200, "ok"), (200, "error"), (404, "not_found"), (409, "not_deployed"), (400, "invalid")]

    # The draft run answers in the same shape ("draft": true, "version": null).
    draft_operation = schemathesis.openapi.from_wsgi(SCHEMA_URL, application)[
        f"{API}/functions/{{function_id}}/draft/invoke"
    ]["POST"]
    draft_services.draft_file_write(
        actor=world.alice, function=undeployed, path="main.py", content=INVOKE_HANDLER.encode()
    )
    drafts = []
    for body in ({"environment": "dev", "event": {"n": 2}}, {"environment": "prod"}, {"event": {}}):
        case = draft_operation.Case(
            path_parameters={"function_id": undeployed.pk}, body=body, media_type="application/json"
        )
        response = case.call(headers={"Authorization": f"Bearer {plaintext}"})
        case.validate_response(response, checks=CHECKS)
        drafts.append((response.status_code, response.json().get("status") or response.json()["error"]["code"]))
    assert drafts == [(200, "ok"), (403, "environment_protected"), (400, "invalid")]
