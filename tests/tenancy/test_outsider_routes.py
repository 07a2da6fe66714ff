"""Every API route, walked from the URLconf, seen by an outsider.

charlie owns org `other` and belongs to nothing in org `alpha`. For every route under
/api/v1/ (found by walking the URL resolvers, so a new endpoint is covered the day it is
added) charlie sends GET, POST, PUT, PATCH, DELETE and OPTIONS, through a browser session
and through an all-scope token, with path parameters that point at alpha's real objects.

The rules:
- a route with path parameters answers 404 (405 for a method the view does not define),
  in the error envelope, exactly as it answers for objects that do not exist at all
  (no existence oracle); OPTIONS describes the route (200), identically for both;
- a route without path parameters answers with charlie's own data only, and refuses
  bodies that point at alpha;
- no response names alpha's objects unless charlie sent the name himself;
- afterwards every row of the tenancy, audit, auth and guardian tables is unchanged.

A route whose path parameter is missing from PATH_VALUES fails with a message asking for a
fixture value: that is how an endpoint that forgets to scope its lookups gets caught.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from itertools import product
from typing import Any

import pytest
from django.apps import apps
from django.db.models import Q
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern
from django.utils import timezone

from apps.alerts import services as alert_services
from apps.audit.models import AuditEvent
from apps.functions import deploy_services, draft_services, test_event_services, version_services
from apps.functions import services as function_services
from apps.functions.test_event_templates import template_list
from apps.monitoring.records import InvocationRecord, LogRecord
from apps.monitoring.sink import RecordSink
from apps.pipelines.models import Delivery, Run
from apps.pipelines.repository_services import repository_set
from apps.releases.services import release_start
from apps.tenancy import environment_services, invitation_services, team_services, token_services
from apps.tenancy.models import ApiToken, Environment, Invitation, Team
from apps.tenancy.roles import Role
from apps.triggers import services as trigger_services
from apps.triggers.models import AsyncEvent, AsyncState

API_PREFIX = "api/v1/"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# Public documentation: the only /api/v1/ routes this test does not walk.
PUBLIC_ROUTES = {
    "api/v1/schema/": "OpenAPI schema: public documentation of the routes, holds no tenant data",
    "api/v1/docs/": "Swagger UI page over the schema: public documentation, holds no tenant data",
}

# A plausible body for every write; each view reads the fields it knows.
GENERIC_BODY: dict[str, Any] = {"role": "admin", "name": "x", "value": "x", "user": "charlie", "protected": False}

# Alpha's objects the fixtures create (names chosen so they never occur by accident).
TEAM_SLUG = "platform"
TEAM_NAME = "Platform Team"
INVITEE_EMAIL = "newhire@example.com"
VAR_NAME, VAR_VALUE = "API_BASE_URL", "https://api.internal.example/v7q"
SECRET_NAME, SECRET_VALUE = "PAYMENT_KEY", "sk_live_zq81x"
FUNCTION_NAME = "checkout-hook"
REPO_URL = "https://git.example/alpha/storefront-q7.git"
ALERT_RULE_NAME = "checkout-latency-z4"
TRIGGER_NAME = "nightly-report-k3"


@dataclass
class Alpha:
    """The world plus the alpha objects that path parameters point at."""

    world: Any
    team: Team
    invitation: Invitation
    invitation_token: str
    bob_grant_id: int
    alice_token_id: int
    function_id: int
    release_id: int
    delivery_id: int
    run_id: int
    test_event_id: int
    alert_rule_id: int
    silence_id: int
    trigger_id: int
    async_request_id: str


# Path parameter name → (real values pointing at alpha's objects, a value that exists nowhere).
# A route is requested once per combination of real values (env × name, …).
PATH_VALUES: dict[str, tuple[Any, Any]] = {
    "org": (lambda a: [a.world.alpha.slug], "ghost-org"),
    "project_id": (lambda a: [a.world.web.pk], 987654),
    "env": (lambda a: ["dev", "prod"], "ghost-env"),
    "username": (lambda a: ["bob"], "ghost-user"),
    "team": (lambda a: [a.team.slug], "ghost-team"),
    "invitation_id": (lambda a: [a.invitation.pk], 987654),
    "grant_id": (lambda a: [a.bob_grant_id], 987654),
    "token_id": (lambda a: [a.alice_token_id], 987654),
    "name": (lambda a: [VAR_NAME, SECRET_NAME], "GHOST_NAME"),
    "principal": (lambda a: ["user:bob", f"team:{a.team.slug}"], "user:ghost-user"),
    "function_id": (lambda a: [a.function_id], 987654),
    "number": (lambda a: [1], 987654),  # version 1 of the alpha function
    "path": (lambda a: ["main.py"], "ghost/missing.py"),  # a file in that version (and the draft)
    "environment": (lambda a: ["dev", "prod"], "ghost-env"),  # the alpha function is bound in both
    "release_id": (lambda a: [a.release_id], 987654),  # a release in progress of the alpha function in dev
    "delivery_id": (lambda a: [a.delivery_id], 987654),  # a webhook delivery to alpha's repository
    "run_id": (lambda a: [a.run_id], 987654),  # a pipeline run of alpha's project (queued)
    "test_event_id": (lambda a: [a.test_event_id], 987654),  # a shared test event of the alpha function
    "alert_rule_id": (lambda a: [a.alert_rule_id], 987654),  # an alert rule of the alpha function in prod
    "silence_id": (lambda a: [a.silence_id], 987654),  # a silence of that rule
    "trigger_id": (lambda a: [a.trigger_id], 987654),  # a schedule of the alpha function in dev
    # a dead-lettered asynchronous event of the alpha function in dev (its request id)
    "request_id": (lambda a: [a.async_request_id], "00000000-0000-4000-8000-000000000000"),
}

# Strings that identify alpha's objects. None may appear in a response to charlie unless
# charlie put it in the request himself (a 404 message may echo the slug he asked for).
ALPHA_IDENTIFIERS = (
    "alpha",
    "web",
    "alice",
    "adam",
    "bob",
    "carol",
    "dora",
    TEAM_SLUG,
    TEAM_NAME,
    INVITEE_EMAIL,
    VAR_NAME,
    VAR_VALUE,
    SECRET_NAME,
    SECRET_VALUE,
    FUNCTION_NAME,
    REPO_URL,
    "storefront-q7",
    ALERT_RULE_NAME,
    TRIGGER_NAME,
)


# --- the routes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    pattern: str  # full route, e.g. "api/v1/orgs/<str:org>/"
    view_class: Any

    @property
    def params(self) -> list[str]:
        return [m.group("name") for m in _PARAM_RE.finditer(self.pattern)]

    def fill(self, values: dict[str, Any]) -> str:
        return "/" + _PARAM_RE.sub(lambda m: str(values[m.group("name")]), self.pattern)

    def defines(self, method: str) -> bool:
        return method == "OPTIONS" or callable(getattr(self.view_class, method.lower(), None))


_PARAM_RE = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def _walk(resolver: URLResolver, prefix: str = "") -> list[tuple[str, Any, Any]]:
    found = []
    for entry in resolver.url_patterns:
        full = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found.extend(_walk(entry, full))
        elif isinstance(entry, URLPattern):
            found.append((full, entry.pattern, entry.callback))
    return found


def api_routes() -> list[Route]:
    routes = []
    for full, pattern, callback in _walk(get_resolver()):
        if not full.startswith(API_PREFIX) or full in PUBLIC_ROUTES:
            continue
        # Only path() routes can be filled from PATH_VALUES; a regex route needs this test extended.
        assert isinstance(pattern, RoutePattern), f"{full} is not a path() route; extend {__name__} to fill it."
        routes.append(Route(full, getattr(callback, "cls", getattr(callback, "view_class", None))))
    return routes


ROUTES = api_routes()
PARAMETERISED = [r for r in ROUTES if r.params]
UNPARAMETERISED = [r for r in ROUTES if not r.params]


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # The world creates six users; the production hasher would make every test ~2 s slower.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alpha(world: Any) -> Alpha:
    """alpha's objects every path parameter can point at."""
    w = world
    team = team_services.team_create(actor=w.alice, org=w.alpha, slug=TEAM_SLUG, name=TEAM_NAME)
    team_services.team_member_add(actor=w.alice, team=team, user=w.bob)
    invitation, invitation_token = invitation_services.invitation_create(
        actor=w.alice, org=w.alpha, email=INVITEE_EMAIL, role=Role.DEVELOPER
    )
    for env in Environment.objects.filter(project=w.web, name__in=["dev", "prod"]):
        environment_services.environment_var_set(actor=w.alice, environment=env, name=VAR_NAME, value=VAR_VALUE)
        environment_services.environment_secret_set(
            actor=w.alice, environment=env, name=SECRET_NAME, value=SECRET_VALUE
        )
    prod = Environment.objects.get(project=w.web, name="prod")
    environment_services.environment_deployer_add(actor=w.alice, environment=prod, user=w.bob)
    environment_services.environment_deployer_add(actor=w.alice, environment=prod, team=team)
    alice_token, _ = token_services.token_create(user=w.alice, name="alice-ci", scopes=["read"])
    function = function_services.function_create(
        actor=w.alice, project=w.web, name=FUNCTION_NAME, runtime="python3.11", handler="main.handler"
    )
    version_services.version_create(
        actor=w.alice, function=function, files={"main.py": b"def handler(e, c): pass\n"}, source="files"
    )
    draft_services.draft_file_write(actor=w.alice, function=function, path="main.py", content=b"def handler(e, c): 1\n")
    test_event = test_event_services.test_event_create(
        actor=w.alice, function=function, name=FUNCTION_NAME, body={"path": "/checkout"}, shared=True
    )
    # Bindings (with a timeline) in dev and prod: rollback, promote, rules and history point at them.
    version_services.version_create(
        actor=w.alice, function=function, files={"main.py": b"def handler(e, c): 2\n"}, source="files"
    )
    for env in Environment.objects.filter(project=w.web, name__in=["dev", "prod"]):
        for number in (1, 2):
            deploy_services.deploy(
                actor=w.alice, function=function, environment=env, version=function.versions.get(number=number)
            )
    # A release in progress in dev: version 2 serving, version 1 at 10%.
    release = release_start(
        actor=w.alice,
        function=function,
        environment=Environment.objects.get(project=w.web, name="dev"),
        version=function.versions.get(number=1),
        plan={"steps": [10, 100], "advance": "manual"},
    )
    # Logs and an invocation of that function (their text names it, so a leak would show).
    sink = RecordSink(flush_interval_s=0)
    now = timezone.now()
    ids = {"function_id": function.pk, "environment_id": prod.pk, "binding_id": None, "version": 1, "request_id": "r1"}
    sink.submit_logs([LogRecord(**ids, ts=now, stream="stdout", text=FUNCTION_NAME)])
    sink.submit_invocation(
        InvocationRecord(
            **ids,
            trigger="http",
            started_at=now,
            duration_ms=5.0,
            init_duration_ms=None,
            cold_start=False,
            status="error",
            error_type=FUNCTION_NAME,
            peak_rss_kb=None,
        )
    )
    assert sink.flush() == 2
    # A connected repository, a verified push delivery and the run it started (rows written
    # directly: the walk needs them to exist, not to have gone through the intake).
    repository = repository_set(actor=w.alice, project=w.web, url=REPO_URL).repository
    run = Run.objects.create(
        project=w.web, repository=repository, number=1, branch="main", commit_sha="c" * 40, trigger="push"
    )
    delivery = Delivery.objects.create(
        repository=repository,
        provider="github",
        delivery_id="alpha-delivery",
        event="push",
        payload='{"ref": "refs/heads/main", "after": "' + "c" * 40 + '", "repository": "storefront-q7"}',
        verified=True,
        outcome=Delivery.Outcome.ACCEPTED,
        ref="refs/heads/main",
        commit_sha="c" * 40,
        run=run,
    )
    # An alert rule of the function in prod and a silence of it.
    rule, _ = alert_services.alert_rule_create(
        actor=w.alice,
        function=function,
        environment=prod,
        fields={"name": ALERT_RULE_NAME, "metric": "error_rate", "comparison": ">", "threshold": 0.1, "window_s": 300},
    )
    silence = alert_services.silence_create(
        actor=w.alice, function=function, rule=rule, ends_at=now + timedelta(hours=1), comment=ALERT_RULE_NAME
    )
    trigger = trigger_services.trigger_create(
        actor=w.alice,
        function=function,
        environment=Environment.objects.get(project=w.web, name="dev"),
        fields={"name": TRIGGER_NAME, "expression": "0 2 * * 1-5", "timezone": "Europe/Berlin"},
    )
    # A dead asynchronous event of the function in dev (stored as a failed event leaves it).
    async_event = AsyncEvent.objects.create(
        function=function,
        environment=Environment.objects.get(project=w.web, name="dev"),
        request_id="a1a1a1a1-0000-4000-8000-00000000a1a1",
        payload={"order": TRIGGER_NAME},
        version=1,
        state=AsyncState.DEAD,
        attempts=3,
        failures=3,
        error_type="ValueError",
        error="ValueError: boom",
        next_attempt_at=now,
        created_at=now,
        enqueued_at=now,
    )
    return Alpha(
        world=w,
        team=team,
        invitation=invitation,
        invitation_token=invitation_token,
        bob_grant_id=w.web.grants.get(user=w.bob).pk,
        alice_token_id=alice_token.pk,
        function_id=function.pk,
        release_id=release.pk,
        delivery_id=delivery.pk,
        run_id=run.pk,
        test_event_id=test_event.pk,
        alert_rule_id=rule.pk,
        silence_id=silence.pk,
        trigger_id=trigger.pk,
        async_request_id=async_event.request_id,
    )


def charlie_client(alpha: Alpha, client_for: Any, auth: str) -> Any:
    if auth == "session":
        return client_for(alpha.world.charlie)
    return client_for(alpha.world.charlie, scopes=list(ApiToken.Scope.values))


# functions: versions, drafts, artifacts, bindings; monitoring: log lines and invocation
# records; releases: the release in progress; pipelines: repository, deliveries, runs
SNAPSHOT_APPS = (
    "tenancy",
    "audit",
    "auth",
    "guardian",
    "functions",
    "monitoring",
    "releases",
    "pipelines",
    "alerts",
    "triggers",
)


def db_snapshot(outsider: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of every model (m2m tables included) in SNAPSHOT_APPS, sorted by pk.
    The outsider's own tokens may record their use (last_used_at); nothing else may change."""
    snapshot = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.app_label not in SNAPSHOT_APPS:
            continue
        rows = []
        for row in model._base_manager.order_by("pk").values():
            row = {k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()}
            if model is ApiToken and row["user_id"] == outsider.pk:
                del row["last_used_at"]
            rows.append(row)
        snapshot[model._meta.label] = rows
    return snapshot


def assert_db_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    changed = {label: (before[label], after[label]) for label in before if before[label] != after[label]}
    assert not changed, "The outsider's requests changed rows:\n" + "\n".join(
        f"{label}:\n  before={b}\n  after={a}" for label, (b, a) in changed.items()
    )


def send(client: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    call = getattr(client, method.lower())
    if method in ("GET", "OPTIONS"):
        return call(path)
    return call(path, body if body is not None else GENERIC_BODY, format="json")


def response_text(response: Any, own_token_prefixes: list[str]) -> str:
    text = response.content.decode()
    # A token prefix is random; strip charlie's own so "…-bob-…" in one cannot look like a leak.
    for prefix in own_token_prefixes:
        text = text.replace(prefix, "<own-token>")
    return text


def leaked_identifiers(text: str, request_parts: list[str]) -> list[str]:
    """Alpha identifiers in ``text`` that charlie did not send himself."""
    sent = " ".join(request_parts).lower()
    leaked = []
    for ident in ALPHA_IDENTIFIERS:
        if ident.lower() in sent:
            continue
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(ident)}(?![A-Za-z0-9_])", text, re.IGNORECASE):
            leaked.append(ident)
    return leaked


def envelope_of(response: Any, *, with_fields: bool = False) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    assert bool(body["error"]["fields"]) == with_fields, body
    return body["error"]


def normalised(error: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The envelope with every path value it echoes replaced by the parameter's name."""
    message = error["message"]
    for name, value in sorted(values.items(), key=lambda kv: -len(str(kv[1]))):
        message = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(str(value))}(?![A-Za-z0-9_])", f"<{name}>", message)
    return {**error, "message": message}


# --- the enumeration itself --------------------------------------------------------------------


def test_enumeration_finds_the_api_and_the_allowlist_is_current() -> None:
    # Given the URLconf
    patterns = {r.pattern for r in ROUTES}
    everything = {full for full, _, _ in _walk(get_resolver())}

    # Then known routes of every kind are walked, views are found, and every allowlisted
    # public route still exists (a stale allowlist entry would hide nothing but mislead)
    for known in (
        "api/v1/projects/",
        "api/v1/orgs/<str:org>/teams/<str:team>/members/<str:username>/",
        "api/v1/projects/<int:project_id>/environments/<str:env>/secrets/<str:name>",
        "api/v1/tokens/<int:token_id>/",
        "api/v1/audit-events/",
        "api/v1/functions/<int:function_id>/logs/stream",
        "api/v1/functions/<int:function_id>/logs/ticket",
        "api/v1/functions/<int:function_id>/metrics",
        "api/v1/projects/<int:project_id>/metrics/summary",
    ):
        assert known in patterns
    assert all(r.view_class is not None for r in ROUTES)
    assert set(PUBLIC_ROUTES) <= everything
    assert not set(PUBLIC_ROUTES) & patterns


# --- routes with path parameters ---------------------------------------------------------------


@pytest.mark.parametrize("auth", ["session", "token"])
@pytest.mark.parametrize("route", PARAMETERISED, ids=[r.pattern for r in PARAMETERISED])
def test_outsider_gets_404_on_every_route_into_another_org(
    route: Route, auth: str, alpha: Alpha, client_for: Any
) -> None:
    # Given a value for every path parameter of this route, pointing at alpha's objects
    missing = [p for p in route.params if p not in PATH_VALUES]
    if missing:
        pytest.fail(
            f"Route /{route.pattern} has path parameter(s) {missing} with no fixture value. Add an entry to "
            f"PATH_VALUES in {__file__} (a real alpha object and a value that exists nowhere) so this test can "
            "check the new endpoint is scoped to the caller's organizations."
        )
    real_sets = [dict(zip(route.params, combo)) for combo in product(*(PATH_VALUES[p][0](alpha) for p in route.params))]
    ghost = {p: PATH_VALUES[p][1] for p in route.params}
    # And charlie signed in (session or all-scope token), and the database as it is
    client = charlie_client(alpha, client_for, auth)
    own_prefixes = list(ApiToken.objects.filter(user=alpha.world.charlie).values_list("prefix", flat=True))
    before = db_snapshot(alpha.world.charlie)

    # When charlie sends every method to the route, for alpha's objects and for objects that do not exist
    problems = []
    for values, method in product(real_sets, METHODS):
        path = route.fill(values)
        assert resolve(path).route == route.pattern, path
        response = send(client, method, path)
        ghost_response = send(client, method, route.fill(ghost))
        label = f"{method} {path}"

        # Then: 404 if the view handles the method, 405 if not, 200 for OPTIONS (route metadata)
        expected = 200 if method == "OPTIONS" else 404 if route.defines(method) else 405
        if response.status_code != expected:
            problems.append(f"{label}: expected {expected}, got {response.status_code}: {response.content[:300]!r}")
            continue
        # And the answer is exactly the one for objects that do not exist (no existence oracle)
        if response.status_code != ghost_response.status_code:
            problems.append(f"{label}: {response.status_code} but {ghost_response.status_code} for missing objects")
            continue
        if expected == 200:
            if response.json() != ghost_response.json():
                problems.append(f"{label}: answer differs from the one for missing objects")
        else:
            error = envelope_of(response)
            wanted_code = "not_found" if expected == 404 else "method_not_allowed"
            if error["code"] != wanted_code:
                problems.append(f"{label}: error code {error['code']!r}, expected {wanted_code!r}")
            if normalised(error, values) != normalised(envelope_of(ghost_response), ghost):
                problems.append(f"{label}: {error} differs from the answer for missing objects")
        # And nothing in it names alpha's objects beyond what charlie sent
        sent_body = json.dumps(GENERIC_BODY) if method not in ("GET", "OPTIONS") else ""
        leaked = leaked_identifiers(response_text(response, own_prefixes), [path, sent_body])
        if leaked:
            problems.append(f"{label}: response names {leaked}: {response.content[:300]!r}")

    assert not problems, "\n".join(problems)
    # And no row anywhere changed
    assert_db_unchanged(before, db_snapshot(alpha.world.charlie))


# --- routes without path parameters ------------------------------------------------------------

# What charlie gets from each route without path parameters: (method, query, body, status).
# Methods a route does not list must answer 405. Bodies that point at alpha must be refused.
UNPARAMETERISED_EXPECTATIONS: dict[str, list[tuple[str, str, Any, int]]] = {
    "api/v1/": [("GET", "", None, 200)],  # the API's index: links only, no org's data
    "api/v1/me/": [("GET", "", None, 200)],
    "api/v1/orgs/": [
        ("GET", "", None, 200),
        ("POST", "", GENERIC_BODY, 400),  # no slug: nothing to create
    ],
    "api/v1/invitations/accept": [
        # alpha's real invitation link, sent to another address: refused, no membership
        ("POST", "", lambda a: {"token": a.invitation_token}, 403),
        ("POST", "", GENERIC_BODY, 400),
    ],
    "api/v1/projects/": [
        ("GET", "", None, 200),
        ("GET", "?org=alpha", None, 404),
        ("POST", "", {"org": "alpha", "slug": "stolen", "name": "Stolen"}, 404),
        ("POST", "", GENERIC_BODY, 400),
    ],
    "api/v1/tokens/": [
        ("GET", "", None, 200),
        ("POST", "", GENERIC_BODY, 400),  # no scopes
    ],
    "api/v1/audit-events/": [
        ("GET", "", None, 200),
        ("GET", "?org=alpha", None, 404),
        ("GET", "?actor=alice", None, 200),
        ("GET", f"?target_type=project&target_id={987654}", None, 200),
    ],
    # Static starting points for new test events: the same for everyone, no tenant data.
    "api/v1/test-event-templates/": [("GET", "", None, 200)],
    # A schedule's preview computes from the body alone: no tenant data in or out.
    "api/v1/triggers/preview": [
        ("POST", "", GENERIC_BODY, 400),  # no expression
        ("POST", "", {"expression": "0 2 * * 1-5", "timezone": "Europe/Berlin"}, 200),
    ],
}


def expected_listing(route: str, alpha: Alpha, query: str) -> Any:
    """What a 200 answer must hold for charlie: his own data, exactly."""
    w = alpha.world
    if route == "api/v1/me/":
        return {"username": "charlie", "orgs": ["other"]}
    if route == "api/v1/":  # links, the same for everyone: no object of any org in it
        from apps.core.api_index import COLLECTIONS

        return sorted(COLLECTIONS)
    if route == "api/v1/orgs/":
        return ["other"]
    if route == "api/v1/test-event-templates/":
        return [t["id"] for t in template_list()]
    if route == "api/v1/triggers/preview":
        return "at 02:00, Monday through Friday, Europe/Berlin"
    if route == "api/v1/projects/":
        return [("other", "secret-project")]
    if route == "api/v1/tokens/":
        return sorted(ApiToken.objects.filter(user=w.charlie).values_list("pk", flat=True))
    if route == "api/v1/audit-events/":
        if query:  # filters that match nothing of charlie's
            return []
        visible = AuditEvent.objects.filter(Q(org=w.other) | Q(org__isnull=True, actor=w.charlie))
        return sorted(visible.values_list("pk", flat=True))
    raise AssertionError(f"No expected listing for /{route}")


def actual_listing(route: str, body: Any) -> Any:
    if route == "api/v1/":
        assert "alpha" not in json.dumps(body) and "secret-project" not in json.dumps(body), body
        return sorted(body["collections"])
    if route == "api/v1/me/":
        return {"username": body["username"], "orgs": [o["slug"] for o in body["orgs"]]}
    if route == "api/v1/test-event-templates/":
        return [t["id"] for t in body]
    if route == "api/v1/triggers/preview":
        return body["description"]
    rows = body["results"]
    assert body["count"] == len(rows), body
    if route == "api/v1/orgs/":
        return [r["slug"] for r in rows]
    if route == "api/v1/projects/":
        return [(r["org"], r["slug"]) for r in rows]
    return sorted(r["id"] for r in rows)


@pytest.mark.parametrize("auth", ["session", "token"])
@pytest.mark.parametrize("route", UNPARAMETERISED, ids=[r.pattern for r in UNPARAMETERISED])
def test_outsider_sees_only_own_data_on_routes_without_parameters(
    route: Route, auth: str, alpha: Alpha, client_for: Any
) -> None:
    # Given what this route must answer to an outsider
    if route.pattern not in UNPARAMETERISED_EXPECTATIONS:
        pytest.fail(
            f"Route /{route.pattern} has no entry in UNPARAMETERISED_EXPECTATIONS in {__file__}: add what an "
            "outsider must get from it (own data only; bodies pointing at another org refused)."
        )
    cases = list(UNPARAMETERISED_EXPECTATIONS[route.pattern])
    listed = {method for method, *_ in cases}
    undeclared = [m for m in METHODS if m != "OPTIONS" and route.defines(m) and m not in listed]
    assert not undeclared, f"/{route.pattern} handles {undeclared}: add them to UNPARAMETERISED_EXPECTATIONS"
    cases += [(m, "", GENERIC_BODY, 405) for m in METHODS if m not in listed and m != "OPTIONS"]
    # And charlie signed in, and the database as it is
    client = charlie_client(alpha, client_for, auth)
    own_prefixes = list(ApiToken.objects.filter(user=alpha.world.charlie).values_list("prefix", flat=True))
    before = db_snapshot(alpha.world.charlie)

    problems = []
    for method, query, body, expected in cases:
        body = body(alpha) if callable(body) else body
        path = route.fill({}) + query
        label = f"{method} {path} {json.dumps(body) if body else ''}"

        # When charlie sends the request
        response = send(client, method, path, body)

        # Then the status is exactly the expected one
        if response.status_code != expected:
            problems.append(f"{label}: expected {expected}, got {response.status_code}: {response.content[:300]!r}")
            continue
        if expected == 200:
            # And a listing holds charlie's own rows, exactly
            want, got = expected_listing(route.pattern, alpha, query), actual_listing(route.pattern, response.json())
            if got != want:
                problems.append(f"{label}: listed {got}, expected {want}")
        else:
            # And a refusal comes in the error envelope
            error = envelope_of(response, with_fields=expected == 400)
            if expected == 405 and error["code"] != "method_not_allowed":
                problems.append(f"{label}: error code {error['code']!r}")
        # And nothing in the answer names alpha's objects beyond what charlie sent
        leaked = leaked_identifiers(response_text(response, own_prefixes), [path, json.dumps(body) if body else ""])
        if leaked:
            problems.append(f"{label}: response names {leaked}: {response.content[:300]!r}")

    assert not problems, "\n".join(problems)
    # And no row anywhere changed (no project, membership, token or invitation was created)
    assert_db_unchanged(before, db_snapshot(alpha.world.charlie))
