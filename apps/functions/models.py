from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.functions.knobs import KNOB, model_validators
from apps.functions.traffic import Traffic
from apps.tenancy.models import Project, slug_validator


class Runtime(models.TextChoices):
    PYTHON311 = "python3.11", "Python 3.11"
    NODE20 = "node20", "Node.js 20"


class Kind(models.TextChoices):
    EVENT = "event", "Event: handler(event, context)"
    HTTP = "http", "HTTP: a WSGI or ASGI app object"


class EventFormat(models.TextChoices):
    """The event an ``event`` function receives through the gateway (runtime/stratus_bootstrap/events.py)."""

    APIGW_V1 = "apigw-v1", "API Gateway REST API (Lambda proxy, payload 1.0)"
    APIGW_V2 = "apigw-v2", "API Gateway HTTP API / Function URL (payload 2.0)"
    SCF = "scf", "Tencent SCF API Gateway trigger"


class Function(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="functions")
    name = models.SlugField(max_length=50, validators=[slug_validator])
    description = models.TextField(blank=True, max_length=2000)
    runtime = models.CharField(max_length=16, choices=Runtime.choices)
    handler = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.EVENT)
    event_format = models.CharField(max_length=16, choices=EventFormat.choices, default=EventFormat.APIGW_V1)
    # Path templates ("/article/{id}", "/{proxy+}") the gateway matches for event functions:
    # the event's resource and pathParameters; [] serves every path as "/{proxy+}".
    routes = models.JSONField(default=list, blank=True)
    # The knobs: ranges, defaults and words in apps/functions/knobs.py (every entry point's).
    memory_mb = models.PositiveIntegerField(default=KNOB["memory_mb"].default, validators=model_validators("memory_mb"))
    timeout_s = models.PositiveIntegerField(default=KNOB["timeout_s"].default, validators=model_validators("timeout_s"))
    ephemeral_storage_mb = models.PositiveIntegerField(
        default=KNOB["ephemeral_storage_mb"].default,
        validators=model_validators("ephemeral_storage_mb"),
        help_text="size of the instance's private /tmp",
    )
    env = models.JSONField(default=dict, blank=True)
    min_instances = models.PositiveIntegerField(
        default=KNOB["min_instances"].default, validators=model_validators("min_instances")
    )
    max_instances = models.PositiveIntegerField(
        default=KNOB["max_instances"].default, validators=model_validators("max_instances")
    )
    instance_concurrency = models.PositiveIntegerField(
        default=KNOB["instance_concurrency"].default, validators=model_validators("instance_concurrency")
    )
    idle_timeout_s = models.PositiveIntegerField(
        default=KNOB["idle_timeout_s"].default, validators=model_validators("idle_timeout_s")
    )
    # Bumped by every draft write: the draft tree's ETag, so editors detect each other.
    draft_revision = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="function_unique_project_name"),
            models.CheckConstraint(
                condition=models.Q(min_instances__lte=models.F("max_instances")), name="function_min_le_max"
            ),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.project}/{self.name}"


class Artifact(models.Model):
    """A content-addressed archive (canonical zip, see archives.build_canonical_zip).

    Stored once per sha256 in the artifact store (Django storage under ``artifacts/``),
    shared by every version with the same content, and never deleted while a version
    references it (Version.artifact is PROTECT)."""

    sha256 = models.CharField(max_length=64, unique=True)
    size = models.BigIntegerField(help_text="bytes of the canonical zip")
    file_count = models.PositiveIntegerField()
    unpacked_size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.sha256[:12]

    @property
    def storage_name(self) -> str:
        return f"artifacts/{self.sha256[:2]}/{self.sha256}.zip"


class Version(models.Model):
    """An immutable, numbered snapshot of a function: artifact + config."""

    class Source(models.TextChoices):
        DRAFT = "draft"
        UPLOAD = "upload"
        FILES = "files"
        GIT = "git"

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="versions")
    config = models.JSONField(help_text="snapshot of the function's configuration at publish time")
    source = models.CharField(max_length=8, choices=Source.choices)
    source_info = models.JSONField(default=dict, blank=True, help_text="git: repo, branch, commit, author")
    message = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["function", "number"], name="version_unique_number")]
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"{self.function} v{self.number}"


class DraftFile(models.Model):
    """One file of a function's editable working copy (WebIDE, VS Code)."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="draft_files")
    path = models.CharField(max_length=1024)
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64, help_text="the file's ETag")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["function", "path"], name="draftfile_unique_path")]
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path


class Binding(models.Model):
    """A function in an environment: the traffic rules that pick the version serving each
    request, the auth mode of its invoke URL, and the backend that runs it."""

    class AuthMode(models.TextChoices):
        PUBLIC = "public", "Public: anyone with the URL"
        TOKEN = "token", "Token: Authorization: Bearer with the invoke or deploy scope"

    class Status(models.TextChoices):
        PENDING = "pending"
        READY = "ready"
        FAILED = "failed"

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="bindings")
    environment = models.ForeignKey("tenancy.Environment", on_delete=models.CASCADE, related_name="bindings")
    # [{"version": 3, "weight": 90}, {"version": 4, "weight": 10}]; weights sum to 100. Read it
    # through ``split()`` (apps/functions/traffic.py), never by its keys.
    traffic = models.JSONField(default=list)
    header_rules = models.JSONField(default=list, blank=True)
    sticky_key = models.CharField(max_length=100, blank=True)
    auth_mode = models.CharField(max_length=8, choices=AuthMode.choices, default=AuthMode.TOKEN)
    backend = models.CharField(max_length=32)
    # Bumped by every traffic change; the apply task acts only on the revision it was queued
    # for, so a late or duplicated task never re-applies stale rules.
    revision = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    status_message = models.CharField(max_length=500, blank=True)
    applied_revision = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["function", "environment"], name="binding_unique")]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.function} @ {self.environment.name}"

    def split(self) -> Traffic:
        """The traffic, typed."""
        return Traffic.parse(self.traffic)

    def version_numbers(self) -> list[int]:
        return self.split().versions()


class ExecutionIdentity(models.Model):
    """The OS identity a function's instances run as in one environment: uid
    ``STRATUS_SANDBOX_UID_BASE + id`` (when the engine runs as root). Dev and prod of one
    function are two identities, so neither can read, trace or signal the other's processes.
    Made on first use (apps/functions/selectors.py ``execution_uid``); ids are never reused."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey("tenancy.Environment", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["function", "environment"], name="execution_identity_unique")
        ]

    def __str__(self) -> str:
        return f"identity {self.pk} of function {self.function_id} in environment {self.environment_id}"


class TrafficChange(models.Model):
    """One change of a binding's traffic: who, when, from → to, and why. The timeline of a
    binding (deploys now; release steps, gate failures, aborts and rollbacks later)."""

    class Reason(models.TextChoices):
        DEPLOY = "deploy"
        RELEASE_START = "release_start"  # the first step of a release
        STEP = "step"  # a release moved to its next step (promote, auto-advance)
        COMPLETE = "complete"  # a release reached 100%
        GATE_FAILURE = "gate_failure"  # a failing gate aborted the release
        ABORT = "abort"  # all traffic back to the stable version
        ROLLBACK = "rollback"
        PROMOTE = "promote"  # the version serving another environment, deployed here
        RULES = "rules"  # header rules, sticky key or auth mode changed; traffic unchanged

    binding = models.ForeignKey(Binding, on_delete=models.CASCADE, related_name="changes")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=32, choices=Reason.choices)
    from_traffic = models.JSONField(default=list)
    to_traffic = models.JSONField(default=list)
    # RESTRICT, not PROTECT: a version on the timeline cannot be deleted alone, but deleting the
    # function (or its project or org) takes its versions and their timeline together.
    version = models.ForeignKey(Version, null=True, on_delete=models.RESTRICT, related_name="+")
    release = models.ForeignKey(
        "releases.Release", null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    note = models.CharField(max_length=500, blank=True)
    # Which configuration the deploy used: variable names and values, secret names only.
    config_snapshot = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.binding} {self.reason} {self.from_traffic} -> {self.to_traffic}"


class TestEvent(models.Model):
    """A named event body kept on the server for a function, so the WebIDE, the API and the
    VS Code extension run the same ones. Private to its creator unless ``shared`` with
    everyone who can see the function. Rights and limits: apps/functions/test_event_services.py."""

    # Not a pytest test class, whatever its name says.
    __test__ = False

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="test_events")
    name = models.CharField(max_length=100)
    body = models.JSONField(default=dict, blank=True)
    shared = models.BooleanField(default=False, help_text="visible to the project, not only to its creator")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["function", "name"], name="testevent_unique_function_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.function}:{self.name}"
