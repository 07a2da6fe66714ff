from django.urls import path

from apps.audit.api.views import AuditEventListView
from apps.tenancy.api import views as v

P = "projects/<int:project_id>"
E = f"{P}/environments/<str:env>"
ORG = "orgs/<str:org>"

urlpatterns = [
    path("me/", v.MeView.as_view(), name="me"),
    path("orgs/", v.OrgListView.as_view(), name="org-list"),
    path(f"{ORG}/", v.OrgDetailView.as_view(), name="org-detail"),
    path(f"{ORG}/members/", v.MemberListView.as_view(), name="member-list"),
    path(f"{ORG}/members/<str:username>/", v.MemberDetailView.as_view(), name="member-detail"),
    path(f"{ORG}/teams/", v.TeamListView.as_view(), name="team-list"),
    path(f"{ORG}/teams/<str:team>/", v.TeamDetailView.as_view(), name="team-detail"),
    path(f"{ORG}/teams/<str:team>/members/", v.TeamMemberListView.as_view(), name="team-member-list"),
    path(
        f"{ORG}/teams/<str:team>/members/<str:username>/",
        v.TeamMemberDetailView.as_view(),
        name="team-member-detail",
    ),
    path(f"{ORG}/invitations/", v.InvitationListView.as_view(), name="invitation-list"),
    path(f"{ORG}/invitations/<int:invitation_id>/", v.InvitationDetailView.as_view(), name="invitation-detail"),
    path(
        f"{ORG}/invitations/<int:invitation_id>/resend",
        v.InvitationResendView.as_view(),
        name="invitation-resend",
    ),
    path("invitations/accept", v.InvitationAcceptView.as_view(), name="invitation-accept"),
    path("projects/", v.ProjectListView.as_view(), name="project-list"),
    path(f"{P}/", v.ProjectDetailView.as_view(), name="project-detail"),
    path(f"{P}/grants/", v.GrantListView.as_view(), name="grant-list"),
    path(f"{P}/grants/<int:grant_id>/", v.GrantDetailView.as_view(), name="grant-detail"),
    path(f"{P}/environments/", v.EnvironmentListView.as_view(), name="environment-list"),
    path(f"{E}/", v.EnvironmentDetailView.as_view(), name="environment-detail"),
    path(f"{E}/vars/", v.VariableListView.as_view(), name="variable-list"),
    path(f"{E}/vars/<str:name>", v.VariableDetailView.as_view(), name="variable-detail"),
    path(f"{E}/secrets/", v.SecretListView.as_view(), name="secret-list"),
    path(f"{E}/secrets/<str:name>", v.SecretDetailView.as_view(), name="secret-detail"),
    path(f"{E}/deployers/", v.DeployerListView.as_view(), name="deployer-list"),
    path(f"{E}/deployers/<str:principal>", v.DeployerDetailView.as_view(), name="deployer-detail"),
    path("tokens/", v.TokenListView.as_view(), name="token-list"),
    path("tokens/<int:token_id>/", v.TokenDetailView.as_view(), name="token-detail"),
    path("audit-events/", AuditEventListView.as_view(), name="audit-event-list"),
]
