"""apps.core.actors: the caller of a service or selector, signed in or not."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from apps.core.actors import signed_in
from apps.core.errors import Forbidden
from apps.tenancy import selectors

pytestmark = pytest.mark.django_db


def test_signed_in_returns_the_user_and_refuses_the_anonymous_one() -> None:
    user = get_user_model().objects.create_user(username="ann", password="pw-123456")

    assert signed_in(user) is user
    with pytest.raises(Forbidden) as caught:
        signed_in(AnonymousUser())
    assert caught.value.status_code == 403
    assert caught.value.message == "This needs a signed-in user."


def test_an_anonymous_caller_reads_no_orgs_tokens_or_audit_events(world) -> None:
    anonymous = AnonymousUser()

    assert list(selectors.org_list(user=anonymous)) == []
    assert list(selectors.token_list(user=anonymous)) == []
    assert list(selectors.audit_event_list(user=anonymous, filters={})) == []
