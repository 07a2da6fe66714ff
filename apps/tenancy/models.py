from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from apps.tenancy.roles import Role

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1-50 lowercase letters, digits and dashes, starting and ending with a letter or digit.",
)
env_name_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    "Use 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit.",
)
var_name_validator = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
    "Use letters, digits and underscores, not starting with a digit (at most 128).",
)


class Organization(models.Model):
    slug = models.SlugField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    # Quotas, set by the platform's operators (Django admin), never by the org itself; null
    # means the STRATUS_ORG_QUOTA_* default. apps/tenancy/quotas.py enforces them.
    quota_functions = models.PositiveIntegerField(null=True, blank=True, help_text="functions in all projects")
    quota_instances = models.PositiveIntegerField(
        null=True, blank=True, help_text="function instances running at once (reserved or on demand)"
    )
    quota_memory_mb = models.PositiveIntegerField(
        null=True, blank=True, help_text="MB of memory (memory_mb + ephemeral_storage_mb) of running instances"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "org"], name="membership_unique_user_org")]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.user} in {self.org} ({self.role})"


class Team(models.Model):
    """A named group of org members. Backed by a Django Group so that django-guardian
    object permissions granted to the team apply to its members."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    slug = models.SlugField(max_length=50, validators=[slug_validator])
    name = models.CharField(max_length=100)
    group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="team")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "slug"], name="team_unique_org_slug")]
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.org.slug}/{self.slug}"


class Invitation(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        REVOKED = "revoked"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    # The token sent to the invitee is signed from (id, nonce); only the nonce is stored,
    # so a database leak reveals no usable link, and revoking rotates it.
    nonce = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.org}"

    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


class Project(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    slug = models.SlugField(max_length=50, validators=[slug_validator])
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "slug"], name="project_unique_org_slug")]
        ordering = ["org__slug", "slug"]
        # Django's defaults give view/change/delete; add the console's own.
        default_permissions = ("view", "change", "delete")
        permissions = [
            ("edit_code", "Edit function code"),
            ("deploy_unprotected", "Deploy to unprotected environments"),
            ("deploy_protected", "Deploy to protected environments"),
            ("manage_access", "Manage who has which role on the project"),
        ]

    def __str__(self) -> str:
        return f"{self.org.slug}/{self.slug}"


class ProjectGrant(models.Model):
    """One role on one project for a user or a team. The source of truth for project
    roles; the matching guardian permissions are derived from it by the services."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="project_grants"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="project_grants")
    role = models.CharField(max_length=16, choices=[c for c in Role.choices if c[0] != Role.OWNER])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(user__isnull=False, team__isnull=True) | models.Q(user__isnull=True, team__isnull=False)
                ),
                name="grant_user_xor_team",
            ),
            models.UniqueConstraint(
                fields=["project", "user"], condition=models.Q(user__isnull=False), name="grant_unique_user"
            ),
            models.UniqueConstraint(
                fields=["project", "team"], condition=models.Q(team__isnull=False), name="grant_unique_team"
            ),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        who = f"user:{self.user_id}" if self.user_id else f"team:{self.team_id}"
        return f"{who} {self.role} on project {self.project_id}"


class Environment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="environments")
    name = models.CharField(max_length=63, validators=[env_name_validator])
    protected = models.BooleanField(default=False)
    # Execution backend for functions deployed here ("" = settings.STRATUS_DEFAULT_BACKEND).
    execution_backend = models.CharField(max_length=32, blank=True)
    # Releases into this environment wait for a second person's approval before the first step.
    requires_release_approval = models.BooleanField(default=False)
    # Pipeline steps with `secrets: true` get this environment's variables and secrets
    # (after approval, in a protected environment). null: yes for unprotected environments,
    # no for protected ones. Set in the console only: stratus.yaml cannot turn it on.
    pipeline_secrets = models.BooleanField(null=True, blank=True)
    # Loopback, link-local or private addresses that functions (and pipeline steps) of this
    # environment may reach, e.g. ["10.0.3.7:5432", "192.168.1.0/24", "[fd00::5]:443"];
    # everything else of the kind stays blocked (apps/core/isolation/egress.py).
    egress_allow = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="environment_unique_project_name")]
        ordering = ["id"]
        default_permissions = ("view",)
        permissions = [("deploy_environment", "Deploy to this environment")]

    def __str__(self) -> str:
        return f"{self.project}/{self.name}"

    def allows_pipeline_secrets(self) -> bool:
        """Whether steps with `secrets: true` get this environment's secrets (unset: only
        unprotected environments)."""
        return self.pipeline_secrets if self.pipeline_secrets is not None else not self.protected


class EnvironmentVariable(models.Model):
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="variables")
    name = models.CharField(max_length=128, validators=[var_name_validator])
    value = models.TextField(max_length=32768, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["environment", "name"], name="envvar_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EnvironmentSecret(models.Model):
    """A write-only value: stored encrypted (apps.core.crypto), never returned by the API."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=128, validators=[var_name_validator])
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["environment", "name"], name="envsecret_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name  # never the value

    def __repr__(self) -> str:
        return f"<EnvironmentSecret {self.name}>"


class ApiToken(models.Model):
    """A personal access token. Only the SHA-256 of the token is stored; the token itself
    is shown once, at creation. ``prefix`` (the first characters) identifies it in lists."""

    class Scope(models.TextChoices):
        READ = "read"
        WRITE = "write"
        DEPLOY = "deploy"
        ADMIN = "admin"
        INVOKE = "invoke"  # call token-mode function URLs, nothing else
        METRICS = "metrics"  # scrape /metrics (Prometheus), nothing else

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The token that minted this one through the API (None: made in a browser session or by
    # a command). A child never outlives its parent nor holds more scopes, and revoking the
    # parent revokes it (services.token_create / token_revoke).
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())
