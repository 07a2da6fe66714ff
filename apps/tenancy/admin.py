from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from apps.tenancy import quotas
from apps.tenancy.models import ApiToken, Environment, Invitation, Membership, Organization, Project, ProjectGrant, Team


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    """Staff set organizations' quotas here (the API refuses an org's own attempt)."""

    list_display = ["slug", "name", "quota_functions", "quota_instances", "quota_memory_mb", "created_at"]
    search_fields = ["slug", "name"]
    readonly_fields = ["quota_usage"]
    fieldsets = [
        (None, {"fields": ["slug", "name"]}),
        (
            "Quotas",
            {
                "fields": ["quota_functions", "quota_instances", "quota_memory_mb", "quota_usage"],
                "description": "Empty: the platform's default (STRATUS_ORG_QUOTA_FUNCTIONS, "
                "STRATUS_ORG_QUOTA_INSTANCES, STRATUS_ORG_QUOTA_MEMORY_MB). Lowering a quota below what is in "
                "use refuses only changes that would use more.",
            },
        ),
    ]

    @admin.display(description="in use")
    def quota_usage(self, org: Organization) -> str:
        if org.pk is None:
            return "-"
        usage = quotas.org_quota_usage(org)
        limits, reserved = usage.limits, usage.reserved
        return (
            f"functions {usage.functions} of {limits.functions}; reserved instances {reserved.instances} of "
            f"{limits.instances}; reserved memory {reserved.memory_mb} of {limits.memory_mb} MB"
        )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "org", "role"]
    list_filter = ["role"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["slug", "org", "name"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "org", "role", "status", "expires_at"]
    exclude = ["nonce"]


@admin.register(Project)
class ProjectAdmin(GuardedModelAdmin):
    list_display = ["slug", "org", "name"]


@admin.register(Environment)
class EnvironmentAdmin(GuardedModelAdmin):
    list_display = ["name", "project", "protected"]


@admin.register(ProjectGrant)
class ProjectGrantAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "team", "role"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "scopes", "expires_at", "revoked_at", "last_used_at"]
    exclude = ["token_hash"]
