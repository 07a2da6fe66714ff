"""A role held in memory (permissions.hold_project_role, permissions.acting_as): how Stratus's
own users (the pipeline's ``stratus:pipeline``) act, seen by the services' own checks and
stored nowhere."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from guardian.models import UserObjectPermission

from apps.audit.models import AuditEvent
from apps.core.errors import Forbidden
from apps.tenancy import environment_services, permissions, project_services, roles
from apps.tenancy.models import Environment, Membership
from apps.tenancy.roles import Role
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_a_held_role_reaches_its_project_only_and_is_stored_nowhere(world: Any) -> None:
    robot = make_user("robot")  # a member of no org, like the pipeline's user
    api = project_services.project_create(actor=world.alice, org=world.alpha, slug="api", name="API")
    dev = Environment.objects.get(project=world.web, name="dev")
    prod = Environment.objects.get(project=world.web, name="prod")

    permissions.hold_project_role(robot, world.web, Role.DEVELOPER)

    assert permissions.project_permissions(robot, world.web) == roles.project_permissions_for(Role.DEVELOPER)
    assert permissions.project_role(robot, world.web) == Role.DEVELOPER
    assert permissions.project_permissions(robot, api) == frozenset()  # the org's other project
    assert permissions.project_permissions(robot, world.outsider_project) == frozenset()
    assert permissions.can_deploy(robot, dev) is True
    assert permissions.can_deploy(robot, prod) is False  # protected: a person with the right there
    assert not Membership.objects.filter(user=robot).exists()
    assert not UserObjectPermission.objects.filter(user=robot).exists()
    fresh = get_user_model().objects.get(pk=robot.pk)  # another object of the same user: nothing
    assert permissions.project_permissions(fresh, world.web) == frozenset()


def test_acting_as_lets_the_services_checks_see_the_role_for_the_block_only(world: Any) -> None:
    robot = make_user("robot")
    permissions.hold_project_role(robot, world.web, Role.DEVELOPER)
    with pytest.raises(Forbidden):
        environment_services.environment_create(actor=robot, project=world.web, name="preview-x")
    assert not Environment.objects.filter(project=world.web, name="preview-x").exists()

    with permissions.acting_as(robot, world.web, Role.ADMIN) as actor:
        assert actor is robot
        env = environment_services.environment_create(actor=robot, project=world.web, name="preview-x")
        # A project admin, not an org manager: the org's own settings stay out of reach.
        assert permissions.org_role(robot, world.alpha) == Role.DEVELOPER
        with pytest.raises(Forbidden):
            permissions.require_org_role(robot, world.alpha, Role.ADMIN, "Managing members")

    assert AuditEvent.objects.filter(action="environment.create", actor=robot).count() == 1
    assert permissions.project_permissions(robot, world.web) == roles.project_permissions_for(Role.DEVELOPER)
    with pytest.raises(Forbidden):
        environment_services.environment_delete(actor=robot, environment=env)
    assert Environment.objects.filter(pk=env.pk).exists()


def test_acting_as_gives_a_member_back_what_they_hold_even_when_the_block_fails(world: Any) -> None:
    bob = world.bob  # a developer grant on web
    assert permissions.project_permissions(bob, world.web) == roles.project_permissions_for(Role.DEVELOPER)
    with pytest.raises(RuntimeError), permissions.acting_as(bob, world.web, Role.ADMIN):
        assert roles.CHANGE_PROJECT in permissions.project_permissions(bob, world.web)
        raise RuntimeError("boom")
    assert permissions.project_permissions(bob, world.web) == roles.project_permissions_for(Role.DEVELOPER)

    carol = get_user_model().objects.get(pk=world.carol.pk)  # nothing looked up yet
    with permissions.acting_as(carol, world.web, Role.DEVELOPER):
        assert roles.DEPLOY_UNPROTECTED in permissions.project_permissions(carol, world.web)
    # Her own rights, read from the database again: a viewer.
    assert permissions.project_permissions(carol, world.web) == roles.project_permissions_for(Role.VIEWER)
    assert permissions.org_role(carol, world.alpha) == Role.VIEWER


def test_only_a_project_role_can_be_held(world: Any) -> None:
    robot = make_user("robot")
    with pytest.raises(ValueError, match="viewer, developer or admin"):
        permissions.hold_project_role(robot, world.web, Role.OWNER)
    assert permissions.project_permissions(robot, world.web) == frozenset()


# --- the guards behind the services' own clean-ups (issue 21: each survived a mutation) ---------


def test_a_grant_that_outlived_its_membership_shows_no_project(world: Any) -> None:
    # Given bob's grant on web left behind when his membership went some other way than
    # member_remove (which clears grants too): the admin site, a raw delete
    Membership.objects.filter(user=world.bob, org=world.alpha).delete()
    assert UserObjectPermission.objects.filter(user=world.bob).exists()  # the stale grant

    # Then he sees no project of the org he left, however his permissions say otherwise
    bob = get_user_model().objects.get(pk=world.bob.pk)
    assert list(permissions.visible_projects(bob)) == []
    assert list(permissions.visible_projects(world.carol)) == [world.web]  # a member keeps hers


def test_the_deploy_right_on_an_environment_needs_the_project_too(world: Any) -> None:
    # Given dora (developer in alpha, no grant on web) made a deployer of web's protected prod
    prod = Environment.objects.get(project=world.web, name="prod")
    assert prod.protected
    environment_services.environment_deployer_add(actor=world.alice, environment=prod, user=world.dora)
    dora = get_user_model().objects.get(pk=world.dora.pk)

    # Then she still cannot deploy there: she cannot see the project
    assert permissions.project_permissions(dora, world.web) == frozenset()
    assert permissions.can_deploy(dora, prod) is False
    # while bob, who sees web, can once made a deployer there
    environment_services.environment_deployer_add(actor=world.alice, environment=prod, user=world.bob)
    assert permissions.can_deploy(get_user_model().objects.get(pk=world.bob.pk), prod) is True
