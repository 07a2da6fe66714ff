from django.contrib.contenttypes.models import ContentType
from guardian.models import GroupObjectPermission, UserObjectPermission

from apps.audit.models import AuditEvent
from apps.tenancy import environment_services, project_services, team_services
from apps.tenancy.models import Environment, Project
from apps.tenancy.roles import Role


def _guardian_rows(obj):
    ct = ContentType.objects.get_for_model(obj)
    return (
        UserObjectPermission.objects.filter(content_type=ct, object_pk=str(obj.pk)).count()
        + GroupObjectPermission.objects.filter(content_type=ct, object_pk=str(obj.pk)).count()
    )


def test_new_project_gets_dev_staging_and_protected_prod(world, client_for):
    response = client_for(world.bob).post(
        "/api/v1/projects/", {"org": "alpha", "slug": "api", "name": "API"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert [(e["name"], e["protected"]) for e in body["environments"]] == [
        ("dev", False),
        ("staging", False),
        ("prod", True),
    ]
    # a developer who creates a project becomes its admin
    assert body["role"] == Role.ADMIN
    event = AuditEvent.objects.get(action="project.create", target_id=str(body["id"]))
    assert event.actor_repr == "bob"
    assert event.org == world.alpha


def test_deleting_a_project_deletes_its_object_permissions(world, client_for):
    # Given team and user grants on web, and a deployer on web's prod
    team = team_services.team_create(actor=world.alice, org=world.alpha, slug="ops", name="Ops")
    project_services.project_grant_set(actor=world.alice, project=world.web, role=Role.DEVELOPER, team=team)
    prod = Environment.objects.get(project=world.web, name="prod")
    environment_services.environment_deployer_add(actor=world.alice, environment=prod, user=world.bob)
    assert _guardian_rows(world.web) > 0
    assert _guardian_rows(prod) == 1

    # When the owner deletes the project
    response = client_for(world.alice).delete(f"/api/v1/projects/{world.web.pk}/")

    # Then no guardian row points at the project or its environments any more
    assert response.status_code == 204
    assert not Project.objects.filter(pk=world.web.pk).exists()
    assert _guardian_rows(world.web) == 0
    assert _guardian_rows(prod) == 0


def test_deleting_a_project_needs_the_admin_scope_on_a_token(world, client_for):
    response = client_for(world.alice, scopes=["read", "write"]).delete(f"/api/v1/projects/{world.web.pk}/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert Project.objects.filter(pk=world.web.pk).exists()
