from django.urls import path

from apps.triggers.api import async_views as a
from apps.triggers.api import views as v

urlpatterns = [
    path("functions/<int:function_id>/triggers/", v.TriggerListView.as_view(), name="trigger-list"),
    path("triggers/preview", v.TriggerPreviewView.as_view(), name="trigger-preview"),
    path("triggers/<int:trigger_id>", v.TriggerDetailView.as_view(), name="trigger-detail"),
    path("triggers/<int:trigger_id>/run", v.TriggerRunView.as_view(), name="trigger-run"),
    path("triggers/<int:trigger_id>/pause", v.TriggerPauseView.as_view(), name="trigger-pause"),
    path("triggers/<int:trigger_id>/resume", v.TriggerResumeView.as_view(), name="trigger-resume"),
    path("triggers/<int:trigger_id>/fires", v.TriggerFiresView.as_view(), name="trigger-fires"),
    path("async-events/<str:request_id>", a.AsyncEventDetailView.as_view(), name="async-event-detail"),
    path("async-events/<str:request_id>/redrive", a.AsyncEventRedriveView.as_view(), name="async-event-redrive"),
    path("functions/<int:function_id>/async-events", a.AsyncEventListView.as_view(), name="async-event-list"),
    path("functions/<int:function_id>/async-config", a.AsyncConfigView.as_view(), name="async-config"),
    path("functions/<int:function_id>/async-stats", a.AsyncStatsView.as_view(), name="async-stats"),
    path("functions/<int:function_id>/dead-letters", a.DeadLetterListView.as_view(), name="dead-letter-list"),
    path(
        "functions/<int:function_id>/dead-letters/redrive",
        a.DeadLetterRedriveView.as_view(),
        name="dead-letter-redrive",
    ),
    path("functions/<int:function_id>/dead-letters/purge", a.DeadLetterPurgeView.as_view(), name="dead-letter-purge"),
]
