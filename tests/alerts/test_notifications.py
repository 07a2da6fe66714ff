"""Notifications: a signed webhook to a real local HTTP server (retries with backoff on 500,
the delivery log), the private-address rule, and email through a real SMTP server."""

from __future__ import annotations

import email
import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.alerts import services, webhooks
from apps.alerts.models import DeliveryAttempt, Notification
from apps.alerts.tasks import notification_deliver
from apps.core.errors import DomainError
from apps.core.models import Outbox
from tests.alerts.conftest import at
from tests.alerts.servers import hook_server, smtp_server


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.STRATUS_ALERT_WEBHOOK_ALLOW = ["127.0.0.1"]
    settings.STRATUS_ALERT_RETRY_BASE_S = 10.0
    settings.STRATUS_ALERT_MAX_ATTEMPTS = 4


def fire(world: Any, fn: Any, prod: Any, record: Any, **fields: Any) -> tuple[Any, str]:
    base = {
        "name": "errors high",
        "metric": "error_rate",
        "comparison": ">",
        "threshold": 0.1,
        "window_s": 300,
        "min_invocations": 1,
        "for_s": 0,
        "notify_email": False,
    }
    rule, secret = services.alert_rule_create(actor=world.bob, function=fn, environment=prod, fields=base | fields)
    record(at(-1), error=3)
    assert services.alert_rule_evaluate(rule_id=rule.pk, now=at(0)) == "firing"
    return rule, secret


def test_webhook_is_signed_retried_with_backoff_and_logged(world: Any, fn: Any, prod: Any, record: Any) -> None:
    with hook_server([500, 500, 200]) as hook:
        # Given a firing rule whose webhook answers 500 twice, then 200
        rule, secret = fire(world, fn, prod, record, webhook_url=hook.url)
        assert secret.startswith("whsec_")
        notification = Notification.objects.get(event__rule=rule, channel="webhook")

        # When delivered: the first try fails and asks for a retry in 10 s
        assert services.notification_deliver(notification_id=notification.pk, now=at(1)) == 10.0
        # a second sender before it is due sends nothing
        assert services.notification_deliver(notification_id=notification.pk, now=at(5)) is None
        # the second try fails: twice as long
        assert services.notification_deliver(notification_id=notification.pk, now=at(11)) == 20.0
        assert services.notification_deliver(notification_id=notification.pk, now=at(30)) is None
        # the third succeeds
        assert services.notification_deliver(notification_id=notification.pk, now=at(31)) is None

    # Then the receiver got three signed POSTs of the same event
    assert len(hook.received) == 3
    for got in hook.received:
        assert got.path == "/hook?team=ops"
        assert got.headers["Stratus-Event"] == "alert.firing"
        assert webhooks.verify_signature(secret, got.body, got.headers["Stratus-Signature"])
        assert not webhooks.verify_signature("whsec_wrong", got.body, got.headers["Stratus-Signature"])
        payload = json.loads(got.body)
        assert payload["state"] == "firing" and payload["value"] == 1.0 and payload["rule"]["threshold"] == 0.1
        assert payload["function"]["name"] == "api" and payload["environment"] == "prod"
    # And a tampered body fails verification
    assert not webhooks.verify_signature(
        secret, hook.received[0].body + b" ", hook.received[0].headers["Stratus-Signature"]
    )
    # And the delivery log has every attempt
    log = list(DeliveryAttempt.objects.filter(notification=notification).values_list("attempt", "status_code", "error"))
    assert log == [(1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 200, "")]
    notification.refresh_from_db()
    assert notification.status == "delivered" and notification.attempts == 3


def test_webhook_gives_up_after_max_attempts_and_4xx_is_not_retried(
    world: Any, fn: Any, prod: Any, record: Any
) -> None:
    with hook_server([503]) as hook:
        rule, _ = fire(world, fn, prod, record, webhook_url=hook.url)
        n = Notification.objects.get(event__rule=rule)
        delays = [services.notification_deliver(notification_id=n.pk, now=at(1000 * i)) for i in range(1, 5)]
    assert delays == [10.0, 20.0, 40.0, None]  # 4 attempts in all
    n.refresh_from_db()
    assert n.status == "failed" and n.attempts == 4

    with hook_server([410]) as hook:
        rule2, _ = fire(world, fn, prod, record, name="second", webhook_url=hook.url)
        n2 = Notification.objects.get(event__rule=rule2)
        assert services.notification_deliver(notification_id=n2.pk, now=at(1)) is None
    n2.refresh_from_db()
    assert n2.status == "failed" and n2.last_error == "HTTP 410"


def test_the_task_queues_its_retry_with_backoff(world: Any, fn: Any, prod: Any, record: Any) -> None:
    with hook_server([500]) as hook:
        rule, _ = fire(world, fn, prod, record, webhook_url=hook.url)
        n = Notification.objects.get(event__rule=rule)
        before = timezone.now()
        notification_deliver.run(n.pk)  # the task body: one attempt, then its retry is owed
    retry = Outbox.objects.filter(task="apps.alerts.tasks.notification_deliver", eta__isnull=False).get()
    assert retry.args == [n.pk]
    assert before + timedelta(seconds=9) < retry.eta < timezone.now() + timedelta(seconds=11)


def test_private_addresses_are_refused_unless_allowed(settings: Any, world: Any, fn: Any, prod: Any) -> None:
    settings.STRATUS_ALERT_WEBHOOK_ALLOW = []
    fields = {"name": "x", "metric": "errors", "comparison": ">", "threshold": 1, "window_s": 60}
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://10.1.2.3/", "ftp://example.net/"):
        with pytest.raises(DomainError) as refused:
            services.alert_rule_create(
                actor=world.bob, function=fn, environment=prod, fields=fields | {"webhook_url": url}
            )
        assert "webhook_url" in refused.value.fields, url
    # A rule saved while allowed is refused again at delivery once the allowance is gone
    settings.STRATUS_ALERT_WEBHOOK_ALLOW = ["127.0.0.1:8000-9000"]
    services.alert_rule_create(
        actor=world.bob, function=fn, environment=prod, fields=fields | {"webhook_url": "http://127.0.0.1:8080/"}
    )
    settings.STRATUS_ALERT_WEBHOOK_ALLOW = []
    answer = webhooks.post("http://127.0.0.1:8080/", b"{}", {})
    assert answer.status_code is None and "loopback" in answer.error


def test_email_goes_to_the_project_members_through_smtp(
    settings: Any, world: Any, fn: Any, prod: Any, record: Any
) -> None:
    with smtp_server() as (port, mails):
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        rule, _ = fire(world, fn, prod, record, notify_email=True)
        n = Notification.objects.get(event__rule=rule, channel="email")
        assert services.notification_deliver(notification_id=n.pk, now=at(1)) is None
    assert len(mails) == 1
    # alice (owner), adam (admin), bob and carol (granted on web); not dora (no grant) nor charlie
    assert sorted(mails[0].recipients) == [f"{u}@example.com" for u in ("adam", "alice", "bob", "carol")]
    message = email.message_from_string(mails[0].data)
    assert message["Subject"] == "[Stratus] FIRING: errors high on api (prod)"
    assert "error_rate > 0.1 over 300 s" in message.get_payload()
    n.refresh_from_db()
    assert n.status == "delivered"
    assert (
        DeliveryAttempt.objects.get(notification=n).target
        == "adam@example.com, alice@example.com, bob@example.com, carol@example.com"
    )


def test_email_to_the_rules_own_addresses_and_a_down_server_is_retried(
    settings: Any, world: Any, fn: Any, prod: Any, record: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # nothing listens
    rule, _ = fire(world, fn, prod, record, notify_email=True, email_to=["oncall@example.org"])
    n = Notification.objects.get(event__rule=rule, channel="email")
    assert services.notification_deliver(notification_id=n.pk, now=at(1)) == 10.0
    attempt = DeliveryAttempt.objects.get(notification=n)
    assert attempt.target == "oncall@example.org" and "ConnectionRefusedError" in attempt.error
