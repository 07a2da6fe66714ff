"""The alert state machine with a fake clock: every service takes ``now``."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections

from apps.alerts import selectors, services
from apps.alerts.models import AlertEvent, AlertRule, Notification
from tests.alerts.conftest import T0, at


def transitions(rule: AlertRule) -> list[tuple[str, str]]:
    return [(e.from_state, e.to_state) for e in AlertEvent.objects.filter(rule=rule).order_by("at", "id")]


def evaluate(rule: AlertRule, seconds: float) -> str | None:
    return services.alert_rule_evaluate(rule_id=rule.pk, now=at(seconds))


def test_ok_pending_firing_resolved_ok_with_history(make_rule: Any, record: Any) -> None:
    # Given a rule: error_rate > 0.1 over 5 min, at least 5 invocations, for 60 s, and a webhook
    rule = make_rule(webhook_url="https://hooks.example.net/alerts", notify_email=True)
    # And 10 invocations with 5 errors one second before T0
    record(at(-1), ok=5, error=5)

    # When evaluated every 30 s
    assert evaluate(rule, 0) == "pending"  # breach, but not held for 60 s yet
    assert evaluate(rule, 30) == "pending"
    assert evaluate(rule, 60) == "firing"  # held 60 s
    assert evaluate(rule, 90) == "firing"
    # the errors leave the 5-min window; traffic goes on without errors
    record(at(300), ok=20)
    assert evaluate(rule, 320) == "resolved"
    assert evaluate(rule, 350) == "ok"

    # Then each transition has one history row with the value and threshold it was decided on
    assert transitions(rule) == [("ok", "pending"), ("pending", "firing"), ("firing", "resolved"), ("resolved", "ok")]
    events = list(AlertEvent.objects.filter(rule=rule).order_by("at"))
    assert [e.at for e in events] == [at(0), at(60), at(320), at(350)]
    assert events[1].value == 0.5 and events[1].threshold == 0.1 and events[1].invocations == 10
    assert events[2].value == 0.0 and events[2].invocations == 20
    # And firing and resolved each owe one email and one webhook notification
    owed = sorted(
        (n.event.to_state, n.channel) for n in Notification.objects.filter(event__rule=rule).select_related("event")
    )
    assert owed == [("firing", "email"), ("firing", "webhook"), ("resolved", "email"), ("resolved", "webhook")]


def test_for_zero_fires_at_once_and_clearing_before_for_returns_to_ok(make_rule: Any, record: Any) -> None:
    quick = make_rule(name="quick", for_s=0)
    slow = make_rule(name="slow", for_s=120)
    record(at(-1), ok=5, error=5)
    assert evaluate(quick, 0) == "firing"
    assert evaluate(slow, 0) == "pending"
    record(at(10), ok=100)  # error rate 5/110 < 0.1 before the 120 s are over
    assert evaluate(slow, 30) == "ok"
    assert transitions(slow) == [("ok", "pending"), ("pending", "ok")]
    assert not Notification.objects.filter(event__rule=slow).exists()


def test_below_min_invocations_the_rule_does_not_fire(make_rule: Any, record: Any) -> None:
    # Given 4 invocations, all errors (error rate 1.0) and a rule needing 5
    rule = make_rule(for_s=0)
    record(at(-1), error=4)
    # When evaluated
    assert evaluate(rule, 0) == "ok"
    rule.refresh_from_db()
    # Then nothing fired, and the rule says why
    assert transitions(rule) == []
    assert rule.last_note == "not enough data (4 of 5 invocations)"
    assert rule.last_invocations == 4 and rule.last_value == 1.0
    # And with a fifth it fires
    record(at(1), error=1)
    assert evaluate(rule, 30) == "firing"


def test_not_due_is_not_evaluated_again(make_rule: Any, record: Any) -> None:
    rule = make_rule(for_s=0)
    record(at(-1), error=5)
    assert evaluate(rule, 0) == "firing"
    assert evaluate(rule, 10) is None  # due again from 25 s
    assert services.alerts_evaluate_due(now=at(10)) == 0
    assert services.alerts_evaluate_due(now=at(30)) == 1


def test_silenced_firing_records_transitions_and_sends_nothing(
    world: Any, fn: Any, make_rule: Any, record: Any
) -> None:
    # Given a rule with a webhook and a silence on its function until T0 + 10 min
    rule = make_rule(for_s=0, webhook_url="https://hooks.example.net/a", notify_email=True)
    silence = services.silence_create(actor=world.bob, function=fn, ends_at=at(600), now=at(-5))
    assert selectors.silenced_until(rules=[rule], now=at(0)) == {rule.pk: at(600)}
    record(at(-1), error=5)

    # When it fires and resolves inside the silence
    assert evaluate(rule, 0) == "firing"
    record(at(301), ok=50)
    assert evaluate(rule, 310) == "resolved"

    # Then the transitions are recorded, marked silenced, and no notification is owed
    assert transitions(rule) == [("ok", "firing"), ("firing", "resolved")]
    assert list(AlertEvent.objects.filter(rule=rule).values_list("silenced", flat=True)) == [True, True]
    assert not Notification.objects.filter(event__rule=rule).exists()

    # And once the silence is ended early, the next firing is sent
    services.silence_expire(actor=world.bob, silence=silence, now=at(320))
    record(at(330), error=60)
    assert evaluate(rule, 340) == "firing"  # 60 errors of 110: from resolved straight back to firing
    owed = Notification.objects.filter(event__rule=rule)
    assert sorted(owed.values_list("event__to_state", "channel")) == [("firing", "email"), ("firing", "webhook")]


def test_silence_of_another_environment_or_rule_does_not_apply(
    world: Any, fn: Any, make_rule: Any, record: Any
) -> None:
    from apps.tenancy.models import Environment

    rule = make_rule(for_s=0, notify_email=True)
    other = make_rule(name="other", for_s=0, notify_email=True)
    dev = Environment.objects.get(project=world.web, name="dev")
    services.silence_create(actor=world.bob, function=fn, environment=dev, ends_at=at(600), now=at(-5))
    services.silence_create(actor=world.bob, function=fn, rule=other, ends_at=at(600), now=at(-5))
    record(at(-1), error=5)
    evaluate(rule, 0)
    evaluate(other, 0)
    assert Notification.objects.filter(event__rule=rule).count() == 1
    assert Notification.objects.filter(event__rule=other).count() == 0


def test_disabling_a_firing_rule_returns_it_to_ok_without_notifying(world: Any, make_rule: Any, record: Any) -> None:
    rule = make_rule(for_s=0, notify_email=True)
    record(at(-1), error=5)
    evaluate(rule, 0)
    rule, _ = services.alert_rule_update(actor=world.bob, rule=rule, fields={"enabled": False})
    assert rule.state == "ok"
    assert transitions(rule)[-1] == ("firing", "ok")
    assert Notification.objects.filter(event__rule=rule).count() == 1  # the firing's only
    assert services.alerts_evaluate_due(now=at(100)) == 0  # disabled rules are not evaluated


@pytest.mark.parametrize(
    ("metric", "comparison", "threshold", "fires"),
    [
        ("invocations", ">=", 10, True),
        ("errors", ">", 5, False),
        ("duration_p50", "<=", 10, True),
        ("duration_p99", ">=", 100, True),
        ("duration_avg", "<", 10, False),
        ("peak_concurrency", ">=", 5, True),
    ],
)
def test_metrics_from_the_contract(
    make_rule: Any, record: Any, metric: str, comparison: str, threshold: float, fires: bool
) -> None:
    # 5 ok of 10 ms and 5 errors of 100 ms, all starting together (10 in flight at once)
    record(at(-1), ok=5, duration_ms=10.0)
    record(at(-1), error=5, duration_ms=100.0)
    rule = make_rule(metric=metric, comparison=comparison, threshold=threshold, for_s=0)
    assert evaluate(rule, 0) == ("firing" if fires else "ok")


def test_metric_reading_values(fn: Any, prod: Any, record: Any) -> None:
    record(at(-100), ok=3, duration_ms=10.0, cold_start=True, init_duration_ms=50.0, peak_rss_kb=1000)
    record(at(-100), error=1, duration_ms=40.0, peak_rss_kb=3000)
    record(at(-50), ok=1, duration_ms=20.0)  # starts after the others ended
    record(at(-400), error=10)  # outside a 5-minute window

    def read(metric: str) -> Any:
        return selectors.metric_reading(function_id=fn.pk, environment_id=prod.pk, metric=metric, window_s=300, now=T0)

    assert read("invocations").value == 5 and read("invocations").invocations == 5
    assert read("errors").value == 1
    assert read("error_rate").value == pytest.approx(0.2)
    assert read("cold_starts").value == 3
    assert read("duration_p50").value == 10.0  # sorted 10 10 10 20 40: rank ceil(2.5) = 3
    assert read("duration_p90").value == 40.0
    assert read("duration_avg").value == pytest.approx(18.0)
    assert read("init_duration_avg").value == 50.0
    assert read("peak_memory_kb").value == 3000
    assert read("peak_concurrency").value == 4
    empty = selectors.metric_reading(
        function_id=fn.pk, environment_id=prod.pk, metric="error_rate", window_s=30, now=T0
    )
    assert empty.value is None and empty.invocations == 0


@pytest.mark.django_db(transaction=True)
def test_two_evaluators_at_once_make_one_transition_and_one_notification(
    world: Any, make_rule: Any, record: Any
) -> None:
    """Two threads (two connections on PostgreSQL) evaluate every due rule at the same instant."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite serialises writers on its own)")
    rules = [make_rule(name=f"r{i}", for_s=0, notify_email=True) for i in range(20)]
    record(at(-1), error=10)
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            counts.append(services.alerts_evaluate_due(now=at(0)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sum(counts) == 20  # each rule evaluated by exactly one of them
    for rule in rules:
        assert transitions(rule) == [("ok", "firing")]
    assert Notification.objects.filter(event__rule__in=rules).count() == 20
