"""CI/CD: a project's git repository, the webhook deliveries it receives, and the runs they
start (steps, log lines). State lives in these rows: a worker that dies mid-run is noticed
by its stale heartbeat, and a run is always resumable or marked failed with the reason."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.tenancy.models import Project


class Repository(models.Model):
    class Credentials(models.TextChoices):
        NONE = "", "None (public, or a local path in tests)"
        TOKEN = "token", "HTTPS token"
        SSH_KEY = "ssh_key", "SSH deploy key"

    class PipelineSource(models.TextChoices):
        REPO = "repo", "stratus.yaml at the repository root"
        CONSOLE = "console", "Held in the console (pipeline_yaml)"

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="repository")
    url = models.CharField(max_length=500)
    default_branch = models.CharField(max_length=200, default="main")
    credentials_kind = models.CharField(max_length=8, choices=Credentials.choices, blank=True, default="")
    # Write-only, encrypted with apps.core.crypto like environment secrets.
    credentials_ciphertext = models.BinaryField(null=True, blank=True)
    # The webhook endpoints are /hooks/{provider}/{hook_id}/; the secret signs deliveries.
    hook_id = models.CharField(max_length=40, unique=True)
    webhook_secret_ciphertext = models.BinaryField()
    pipeline_source = models.CharField(max_length=8, choices=PipelineSource.choices, default=PipelineSource.REPO)
    pipeline_yaml = models.TextField(blank=True)
    # Deploys to protected environments need an approver other than the pusher.
    approver_not_pusher = models.BooleanField(default=True)
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    # Webhook POSTs whose signature did not verify: every one is counted here, and a rejection
    # record (a Delivery) is kept for at most STRATUS_WEBHOOK_REJECTED_PER_MINUTE of them per
    # minute, so an unauthenticated flood costs one counter, not a table
    # (delivery_services.delivery_reject). The window: when it began, how many rows it stored.
    bad_signature_count = models.PositiveBigIntegerField(default=0)
    bad_signature_last_at = models.DateTimeField(null=True, blank=True)
    bad_signature_window_start = models.DateTimeField(null=True, blank=True)
    bad_signature_window_rows = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.project}: {self.url}"

    def __repr__(self) -> str:
        return f"<Repository {self.pk} {self.url}>"  # never the credentials


class Delivery(models.Model):
    """One webhook delivery as received: logged whatever happens to it, so nothing is lost
    and any delivery can be redelivered from the console."""

    class Provider(models.TextChoices):
        GITHUB = "github"
        GITLAB = "gitlab"
        GITEA = "gitea"
        GENERIC = "generic"

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted"  # started (or joined) a run
        IGNORED = "ignored"  # verified, but an event or ref nothing triggers on
        DUPLICATE = "duplicate"  # a delivery id seen before: nothing new started
        REJECTED = "rejected"  # bad signature: only this record is kept
        FAILED = "failed"  # verified but could not be processed (reason says why)
        # A push whose commit looks older than what its branch last ran (an earlier run's
        # commit, or an ancestor of it): a replayed body, or a force-push back. A fetch decides
        # (delivery_services.delivery_check_head): the branch head → its run starts (accepted);
        # otherwise stale.
        PENDING = "pending"
        STALE = "stale"  # its commit is not the branch head (any more): nothing started or deployed

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="deliveries")
    provider = models.CharField(max_length=8, choices=Provider.choices)
    delivery_id = models.CharField(max_length=100, blank=True)
    event = models.CharField(max_length=50, blank=True)
    headers = models.JSONField(default=dict)  # signature headers redacted
    payload = models.TextField(blank=True)  # the raw body (empty when rejected)
    verified = models.BooleanField(default=False)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    reason = models.CharField(max_length=500, blank=True)
    ref = models.CharField(max_length=300, blank=True)
    commit_sha = models.CharField(max_length=64, blank=True)
    run = models.ForeignKey("Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    redelivery_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["repository", "delivery_id"], name="delivery_repo_id")]

    def __str__(self) -> str:
        return f"{self.provider} {self.event} {self.delivery_id} ({self.outcome})"


class Run(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING_APPROVAL = "waiting_approval"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    ACTIVE_STATES = (State.QUEUED, State.RUNNING, State.WAITING_APPROVAL)

    class Trigger(models.TextChoices):
        PUSH = "push"
        MANUAL = "manual"
        RETRY = "retry"
        REDELIVER = "redeliver"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField()  # per project
    branch = models.CharField(max_length=200, blank=True)
    tag = models.CharField(max_length=200, blank=True)
    commit_sha = models.CharField(max_length=64)
    commit_message = models.TextField(blank=True)
    commit_author = models.CharField(max_length=200, blank=True)
    pusher = models.CharField(max_length=200, blank=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    environment = models.CharField(max_length=63, blank=True)  # target environment name
    preview = models.BooleanField(default=False)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    reason = models.CharField(max_length=500, blank=True)  # why it failed / was canceled
    superseded_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    pipeline = models.JSONField(default=dict, blank=True)  # the parsed stratus.yaml this run follows
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    worker = models.CharField(max_length=200, blank=True)  # who runs it (host:pid:thread)
    # Times its worker vanished mid-run; the reaper queues it again once (runner/reaper.py).
    worker_losses = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="run_unique_number")]
        indexes = [models.Index(fields=["project", "branch", "state"], name="run_project_branch_state")]

    def __str__(self) -> str:
        return f"run {self.number} of {self.project} ({self.state})"


class RunStep(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20)  # checkout | run | package | deploy
    command = models.TextField(blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    exit_code = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="runstep_unique_index")]

    def __str__(self) -> str:
        return f"{self.run} step {self.index} {self.name} ({self.state})"


class RunLogLine(models.Model):
    """A run's output, one row per line, numbered in order: the websocket sends the backlog
    (seq > the client's last) then new lines; a finished run shows the same text."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="log_lines")
    step = models.ForeignKey(RunStep, null=True, blank=True, on_delete=models.CASCADE, related_name="log_lines")
    seq = models.PositiveIntegerField()
    ts = models.DateTimeField()
    stream = models.CharField(max_length=8)  # stdout | stderr | system
    text = models.TextField()

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="runlogline_unique_seq")]

    def __str__(self) -> str:
        return f"{self.run} #{self.seq}"
