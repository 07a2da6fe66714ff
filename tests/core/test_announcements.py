"""apps/core/announcements.py: how a lower app tells a higher one of a change without importing
it (the engine hears route changes and token revocations this way)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import transaction

from apps.core.announcements import Announcement


def test_every_listener_hears_each_announcement_once_however_often_it_subscribed() -> None:
    news: Announcement[tuple[int, ...]] = Announcement("news")
    heard: list[tuple[str, tuple[int, ...]]] = []

    def first(message: tuple[int, ...]) -> None:
        heard.append(("first", message))

    def second(message: tuple[int, ...]) -> None:
        heard.append(("second", message))

    news.subscribe(first)
    news.subscribe(second)
    news.subscribe(first)  # AppConfig.ready() running again

    news.announce((1, 2))

    assert heard == [("first", (1, 2)), ("second", (1, 2))]
    news.unsubscribe(first)
    news.announce(())
    assert heard[2:] == [("second", ())]


def test_a_failing_listener_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    news: Announcement[int] = Announcement("news")
    heard: list[int] = []

    def broken(message: int) -> None:
        raise RuntimeError("redis is down")

    news.subscribe(broken)
    news.subscribe(heard.append)

    with caplog.at_level(logging.ERROR, logger="apps.core.announcements"):
        news.announce(7)

    assert heard == [7]
    assert [r.getMessage() for r in caplog.records] == ["a listener of 'news' failed"]


@pytest.mark.django_db
def test_after_commit_waits_for_the_commit_and_a_rollback_announces_nothing(
    django_capture_on_commit_callbacks: Any,
) -> None:
    news: Announcement[int] = Announcement("news")
    heard: list[int] = []
    news.subscribe(heard.append)

    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            news.after_commit(1)
            assert heard == []  # not while the change is uncommitted
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            news.after_commit(2)
            1 / 0

    assert heard == [1]
