from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import ApiView
from apps.core.errors import NotFound
from apps.core.schema import error_response
from apps.tenancy import (
    environment_services,
    invitation_services,
    org_services,
    permissions,
    project_services,
    quotas,
    selectors,
    team_services,
    token_services,
)
from apps.tenancy.api import serializers as s
from apps.tenancy.models import ApiToken, Environment, Project, Team
from apps.tenancy.roles import Role

ADMIN_WRITES: dict[str, str] = {
    "POST": ApiToken.Scope.ADMIN,
    "PUT": ApiToken.Scope.ADMIN,
    "PATCH": ApiToken.Scope.ADMIN,
    "DELETE": ApiToken.Scope.ADMIN,
}


class MeView(ApiView):
    serializer_class = s.UserSerializer

    def get(self, request: Request) -> Response:
        orgs = s.OrgSerializer(selectors.org_list(user=request.user), many=True, context={"request": request}).data
        data = dict(s.UserSerializer(request.user).data)
        data["orgs"] = orgs
        token = request.auth if isinstance(request.auth, ApiToken) else None
        data["token_scopes"] = token.scopes if token else None
        return Response(data)


# --- organizations ---------------------------------------------------------------------------


class OrgListView(ApiView):
    serializer_class = s.OrgSerializer
    scope_map = ADMIN_WRITES

    def get(self, request: Request) -> Response:
        return self.render_page(s.OrgSerializer, selectors.org_list(user=request.user))

    @extend_schema(request=s.OrgCreateSerializer, responses=s.OrgSerializer)
    def post(self, request: Request) -> Response:
        data = self.parse(s.OrgCreateSerializer, request)
        org = org_services.org_create(actor=request.user, **data)
        return self.render(s.OrgSerializer, org, status.HTTP_201_CREATED)


class OrgDetailView(ApiView):
    serializer_class = s.OrgDetailSerializer
    scope_map = ADMIN_WRITES

    def get(self, request: Request, org: str) -> Response:
        return self.render(s.OrgDetailSerializer, selectors.org_get(user=request.user, slug=org))

    @extend_schema(request=s.OrgUpdateSerializer, responses=s.OrgDetailSerializer)
    def patch(self, request: Request, org: str) -> Response:
        obj = selectors.org_get(user=request.user, slug=org)
        data = self.parse(s.OrgUpdateSerializer, request)
        # Quotas are not fields of the update: passed on by name so the service refuses them
        # (403 naming them) instead of the request silently changing nothing.
        body = request.data if isinstance(request.data, dict) else {}
        asked = {key: body[key] for key in (*quotas.QUOTA_FIELDS, "quotas") if key in body}
        updated = org_services.org_update(actor=request.user, org=obj, quotas=asked, **data)
        return self.render(s.OrgDetailSerializer, updated)

    def delete(self, request: Request, org: str) -> Response:
        org_services.org_delete(actor=request.user, org=selectors.org_get(user=request.user, slug=org))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListView(ApiView):
    serializer_class = s.MemberSerializer

    def get(self, request: Request, org: str) -> Response:
        return self.render_page(
            s.MemberSerializer, selectors.member_list(org=selectors.org_get(user=request.user, slug=org))
        )


class MemberDetailView(ApiView):
    serializer_class = s.MemberSerializer
    scope_map = ADMIN_WRITES

    def get(self, request: Request, org: str, username: str) -> Response:
        obj = selectors.org_get(user=request.user, slug=org)
        return self.render(s.MemberSerializer, selectors.member_get(org=obj, username=username))

    @extend_schema(request=s.RoleSerializer, responses=s.MemberSerializer)
    def patch(self, request: Request, org: str, username: str) -> Response:
        membership = selectors.member_get(org=selectors.org_get(user=request.user, slug=org), username=username)
        data = self.parse(s.RoleSerializer, request)
        return self.render(
            s.MemberSerializer, org_services.member_change_role(actor=request.user, membership=membership, **data)
        )

    def delete(self, request: Request, org: str, username: str) -> Response:
        membership = selectors.member_get(org=selectors.org_get(user=request.user, slug=org), username=username)
        org_services.member_remove(actor=request.user, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- teams -------------------------------------------------------------------------------------


class TeamListView(ApiView):
    serializer_class = s.TeamSerializer
    scope_map = ADMIN_WRITES

    def get(self, request: Request, org: str) -> Response:
        return self.render_page(
            s.TeamSerializer, selectors.team_list(org=selectors.org_get(user=request.user, slug=org))
        )

    @extend_schema(request=s.TeamCreateSerializer, responses=s.TeamSerializer)
    def post(self, request: Request, org: str) -> Response:
        obj = selectors.org_get(user=request.user, slug=org)
        data = self.parse(s.TeamCreateSerializer, request)
        team = team_services.team_create(actor=request.user, org=obj, **data)
        return self.render(s.TeamSerializer, selectors.team_get(org=obj, slug=team.slug), status.HTTP_201_CREATED)


class TeamView(ApiView):
    serializer_class = s.TeamSerializer
    scope_map = ADMIN_WRITES

    def _team(self, request: Request, org: str, team: str) -> Team:
        return selectors.team_get(org=selectors.org_get(user=request.user, slug=org), slug=team)


class TeamDetailView(TeamView):
    def get(self, request: Request, org: str, team: str) -> Response:
        return self.render(s.TeamSerializer, self._team(request, org, team))

    @extend_schema(request=s.OrgUpdateSerializer, responses=s.TeamSerializer)
    def patch(self, request: Request, org: str, team: str) -> Response:
        obj = self._team(request, org, team)
        data = self.parse(s.OrgUpdateSerializer, request)
        return self.render(s.TeamSerializer, team_services.team_update(actor=request.user, team=obj, **data))

    def delete(self, request: Request, org: str, team: str) -> Response:
        team_services.team_delete(actor=request.user, team=self._team(request, org, team))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TeamMemberListView(TeamView):
    @extend_schema(request=s.UsernameSerializer, responses=s.TeamSerializer)
    def post(self, request: Request, org: str, team: str) -> Response:
        obj = self._team(request, org, team)
        data = self.parse(s.UsernameSerializer, request)
        user = selectors.org_user_get(org=obj.org, username=data["user"])
        team_services.team_member_add(actor=request.user, team=obj, user=user)
        return self.render(s.TeamSerializer, self._team(request, org, team), status.HTTP_201_CREATED)


class TeamMemberDetailView(TeamView):
    def delete(self, request: Request, org: str, team: str, username: str) -> Response:
        obj = self._team(request, org, team)
        user = selectors.org_user_get(org=obj.org, username=username)
        team_services.team_member_remove(actor=request.user, team=obj, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- invitations -----------------------------------------------------------------------------------


class InvitationListView(ApiView):
    serializer_class = s.InvitationSerializer
    scope_map = ADMIN_WRITES

    def get(self, request: Request, org: str) -> Response:
        obj = selectors.org_get(user=request.user, slug=org)
        permissions.require_org_role(request.user, obj, Role.ADMIN, "Listing invitations")
        return self.render_page(s.InvitationSerializer, selectors.invitation_list(org=obj))

    @extend_schema(request=s.InvitationCreateSerializer, responses=s.InvitationSerializer)
    def post(self, request: Request, org: str) -> Response:
        obj = selectors.org_get(user=request.user, slug=org)
        data = self.parse(s.InvitationCreateSerializer, request)
        invitation, token = invitation_services.invitation_create(actor=request.user, org=obj, **data)
        body = dict(s.InvitationSerializer(invitation).data)
        # Shown once, like a token: the inviter can pass the link on by hand.
        body["token"] = token
        body["accept_url"] = invitation_services.invitation_link(invitation)
        return Response(body, status=status.HTTP_201_CREATED)


class InvitationDetailView(ApiView):
    serializer_class = s.InvitationSerializer
    scope_map = ADMIN_WRITES

    def get(self, request: Request, org: str, invitation_id: int) -> Response:
        obj = selectors.org_get(user=request.user, slug=org)
        permissions.require_org_role(request.user, obj, Role.ADMIN, "Reading invitations")
        return self.render(s.InvitationSerializer, selectors.invitation_get(org=obj, invitation_id=invitation_id))

    @extend_schema(responses={200: s.InvitationSerializer})  # answers the revoked invitation
    def delete(self, request: Request, org: str, invitation_id: int) -> Response:
        obj = selectors.org_get(user=request.user, slug=org)
        invitation = selectors.invitation_get(org=obj, invitation_id=invitation_id)
        return self.render(
            s.InvitationSerializer, invitation_services.invitation_revoke(actor=request.user, invitation=invitation)
        )


class InvitationResendView(ApiView):
    serializer_class = s.InvitationSerializer
    scope_map = ADMIN_WRITES

    @extend_schema(request=None, responses={200: s.InvitationSerializer})  # answers the invitation, mail queued
    def post(self, request: Request, org: str, invitation_id: int) -> Response:
        obj = selectors.org_get(user=request.user, slug=org)
        invitation = selectors.invitation_get(org=obj, invitation_id=invitation_id)
        return self.render(
            s.InvitationSerializer, invitation_services.invitation_resend(actor=request.user, invitation=invitation)
        )


class InvitationAcceptView(ApiView):
    serializer_class = s.MemberSerializer

    @extend_schema(
        request=s.InvitationAcceptSerializer,
        responses={201: s.MemberSerializer, 410: error_response("The invitation was used, revoked or has expired.")},
    )
    def post(self, request: Request) -> Response:
        data = self.parse(s.InvitationAcceptSerializer, request)
        membership = invitation_services.invitation_accept(user=request.user, token=data["token"])
        body = dict(s.MemberSerializer(membership).data)
        body["org"] = membership.org.slug
        return Response(body, status=status.HTTP_201_CREATED)


# --- projects --------------------------------------------------------------------------------------


class ProjectListView(ApiView):
    serializer_class = s.ProjectSerializer

    def prefetch_for_page(self, page: list[Any]) -> None:
        permissions.prefetch_project_permissions(self.request.user, page)

    def get(self, request: Request) -> Response:
        org_slug = request.query_params.get("org")
        org = selectors.org_get(user=request.user, slug=org_slug) if org_slug else None
        return self.render_page(s.ProjectSerializer, selectors.project_list(user=request.user, org=org))

    @extend_schema(request=s.ProjectCreateSerializer, responses=s.ProjectSerializer)
    def post(self, request: Request) -> Response:
        data = self.parse(s.ProjectCreateSerializer, request)
        org = selectors.org_get(user=request.user, slug=data.pop("org"))
        project = project_services.project_create(actor=request.user, org=org, **data)
        return self.render(
            s.ProjectSerializer,
            selectors.project_get(user=request.user, project_id=project.pk),
            status.HTTP_201_CREATED,
        )


class ProjectDetailView(ApiView):
    serializer_class = s.ProjectSerializer
    scope_map = {"DELETE": ApiToken.Scope.ADMIN}  # deleting a whole project is an admin act

    def get(self, request: Request, project_id: int) -> Response:
        return self.render(s.ProjectSerializer, selectors.project_get(user=request.user, project_id=project_id))

    @extend_schema(request=s.ProjectUpdateSerializer, responses=s.ProjectSerializer)
    def patch(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = self.parse(s.ProjectUpdateSerializer, request)
        return self.render(
            s.ProjectSerializer, project_services.project_update(actor=request.user, project=project, **data)
        )

    def delete(self, request: Request, project_id: int) -> Response:
        project_services.project_delete(
            actor=request.user, project=selectors.project_get(user=request.user, project_id=project_id)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class GrantListView(ApiView):
    serializer_class = s.GrantSerializer
    scope_map = ADMIN_WRITES

    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get(user=request.user, project_id=project_id)
        return self.render_page(s.GrantSerializer, selectors.grant_list(project=project))

    @extend_schema(request=s.GrantCreateSerializer, responses=s.GrantSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = self.parse(s.GrantCreateSerializer, request)
        user, team = _principal(project, data)
        grant = project_services.project_grant_set(
            actor=request.user, project=project, role=data["role"], user=user, team=team
        )
        return self.render(s.GrantSerializer, grant, status.HTTP_201_CREATED)


class GrantDetailView(ApiView):
    serializer_class = s.GrantSerializer
    scope_map = ADMIN_WRITES

    def get(self, request: Request, project_id: int, grant_id: int) -> Response:
        project = selectors.project_get(user=request.user, project_id=project_id)
        return self.render(s.GrantSerializer, selectors.grant_get(project=project, grant_id=grant_id))

    @extend_schema(request=s.GrantUpdateSerializer, responses=s.GrantSerializer)
    def patch(self, request: Request, project_id: int, grant_id: int) -> Response:
        project = selectors.project_get(user=request.user, project_id=project_id)
        grant = selectors.grant_get(project=project, grant_id=grant_id)
        data = self.parse(s.GrantUpdateSerializer, request)
        grant = project_services.project_grant_set(
            actor=request.user, project=project, role=data["role"], user=grant.user, team=grant.team
        )
        return self.render(s.GrantSerializer, grant)

    def delete(self, request: Request, project_id: int, grant_id: int) -> Response:
        project = selectors.project_get(user=request.user, project_id=project_id)
        project_services.project_grant_remove(
            actor=request.user, grant=selectors.grant_get(project=project, grant_id=grant_id)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


def _principal(project: Project, data: dict[str, Any]) -> tuple[Any, Team | None]:
    if data.get("user"):
        return selectors.org_user_get(org=project.org, username=data["user"]), None
    return None, selectors.team_get(org=project.org, slug=data["team"])


# --- environments ------------------------------------------------------------------------------------


class EnvironmentListView(ApiView):
    serializer_class = s.EnvironmentSerializer

    def get(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get(user=request.user, project_id=project_id)
        return self.render_page(s.EnvironmentSerializer, selectors.environment_list(project=project))

    @extend_schema(request=s.EnvironmentCreateSerializer, responses=s.EnvironmentSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = self.parse(s.EnvironmentCreateSerializer, request)
        env = environment_services.environment_create(actor=request.user, project=project, **data)
        return self.render(s.EnvironmentSerializer, env, status.HTTP_201_CREATED)


class EnvironmentView(ApiView):
    serializer_class = s.EnvironmentSerializer

    def environment(self, request: Request, project_id: int, env: str) -> Environment:
        project = selectors.project_get(user=request.user, project_id=project_id)
        return selectors.environment_get(project=project, name=env)


class EnvironmentDetailView(EnvironmentView):
    scope_map = {"DELETE": ApiToken.Scope.ADMIN}

    def get(self, request: Request, project_id: int, env: str) -> Response:
        return self.render(s.EnvironmentSerializer, self.environment(request, project_id, env))

    @extend_schema(request=s.EnvironmentUpdateSerializer, responses=s.EnvironmentSerializer)
    def patch(self, request: Request, project_id: int, env: str) -> Response:
        obj = self.environment(request, project_id, env)
        data = self.parse(s.EnvironmentUpdateSerializer, request)
        return self.render(
            s.EnvironmentSerializer,
            environment_services.environment_update(actor=request.user, environment=obj, **data),
        )

    def delete(self, request: Request, project_id: int, env: str) -> Response:
        environment_services.environment_delete(
            actor=request.user, environment=self.environment(request, project_id, env)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class VariableListView(EnvironmentView):
    serializer_class = s.VariableSerializer  # type: ignore[assignment]

    def get(self, request: Request, project_id: int, env: str) -> Response:
        obj = self.environment(request, project_id, env)
        return self.render_page(s.VariableSerializer, obj.variables.all())


class VariableDetailView(EnvironmentView):
    serializer_class = s.VariableSerializer  # type: ignore[assignment]

    @extend_schema(request=s.ValueSerializer, responses=s.VariableSerializer)
    def put(self, request: Request, project_id: int, env: str, name: str) -> Response:
        obj = self.environment(request, project_id, env)
        s.validate_var_name(name)
        data = self.parse(s.ValueSerializer, request)
        var = environment_services.environment_var_set(
            actor=request.user, environment=obj, name=name, value=data["value"]
        )
        return self.render(s.VariableSerializer, var)

    def delete(self, request: Request, project_id: int, env: str, name: str) -> Response:
        obj = self.environment(request, project_id, env)
        environment_services.environment_var_delete(actor=request.user, environment=obj, name=name)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SecretListView(EnvironmentView):
    serializer_class = s.SecretSerializer  # type: ignore[assignment]

    def get(self, request: Request, project_id: int, env: str) -> Response:
        obj = self.environment(request, project_id, env)
        return self.render_page(s.SecretSerializer, obj.secrets.only("name", "created_at", "updated_at"))


class SecretDetailView(EnvironmentView):
    serializer_class = s.SecretSerializer  # type: ignore[assignment]

    @extend_schema(request=s.ValueSerializer, responses=s.SecretSerializer)
    def put(self, request: Request, project_id: int, env: str, name: str) -> Response:
        obj = self.environment(request, project_id, env)
        s.validate_var_name(name)
        data = self.parse(s.ValueSerializer, request)
        secret = environment_services.environment_secret_set(
            actor=request.user, environment=obj, name=name, value=data["value"]
        )
        return self.render(s.SecretSerializer, secret)

    def delete(self, request: Request, project_id: int, env: str, name: str) -> Response:
        obj = self.environment(request, project_id, env)
        environment_services.environment_secret_delete(actor=request.user, environment=obj, name=name)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeployerListView(EnvironmentView):
    """Users and teams granted the deploy right on this one environment (guardian)."""

    serializer_class = s.PrincipalSerializer  # type: ignore[assignment]
    scope_map = ADMIN_WRITES
    paginated = False  # a small fixed-shape listing: {"users": [...], "teams": [...]}

    @extend_schema(responses={200: s.DeployersSerializer})
    def get(self, request: Request, project_id: int, env: str) -> Response:
        return Response(selectors.deployer_list(environment=self.environment(request, project_id, env)))

    @extend_schema(request=s.PrincipalSerializer, responses={201: s.DeployersSerializer})
    def post(self, request: Request, project_id: int, env: str) -> Response:
        obj = self.environment(request, project_id, env)
        user, team = _principal(obj.project, self.parse(s.PrincipalSerializer, request))
        environment_services.environment_deployer_add(actor=request.user, environment=obj, user=user, team=team)
        return Response(selectors.deployer_list(environment=obj), status=status.HTTP_201_CREATED)


class DeployerDetailView(EnvironmentView):
    serializer_class = s.PrincipalSerializer  # type: ignore[assignment]
    scope_map = ADMIN_WRITES

    def delete(self, request: Request, project_id: int, env: str, principal: str) -> Response:
        obj = self.environment(request, project_id, env)
        kind, _, name = principal.partition(":")
        if kind not in ("user", "team") or not name:
            raise NotFound("Give the deployer as 'user:<name>' or 'team:<slug>'.")
        user, team = _principal(obj.project, {kind: name})
        environment_services.environment_deployer_remove(actor=request.user, environment=obj, user=user, team=team)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- tokens ----------------------------------------------------------------------------------------------


class TokenListView(ApiView):
    serializer_class = s.TokenSerializer
    scope_map = ADMIN_WRITES

    def get(self, request: Request) -> Response:
        return self.render_page(s.TokenSerializer, selectors.token_list(user=request.user))

    @extend_schema(request=s.TokenCreateSerializer, responses=s.TokenCreatedSerializer)
    def post(self, request: Request) -> Response:
        data = self.parse(s.TokenCreateSerializer, request)
        actor_token = request.auth if isinstance(request.auth, ApiToken) else None
        token, plaintext = token_services.token_create(user=request.user, actor_token=actor_token, **data)
        token.token = plaintext  # type: ignore[attr-defined]
        return self.render(s.TokenCreatedSerializer, token, status.HTTP_201_CREATED)


class TokenDetailView(ApiView):
    serializer_class = s.TokenSerializer
    scope_map = ADMIN_WRITES

    def get(self, request: Request, token_id: int) -> Response:
        return self.render(s.TokenSerializer, selectors.token_get(user=request.user, token_id=token_id))

    @extend_schema(responses={200: s.TokenSerializer})  # answers the revoked token
    def delete(self, request: Request, token_id: int) -> Response:
        token = selectors.token_get(user=request.user, token_id=token_id)
        return self.render(s.TokenSerializer, token_services.token_revoke(actor=request.user, token=token))
