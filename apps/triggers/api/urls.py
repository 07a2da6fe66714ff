from django.urls import path

from apps.triggers.api import views as v

urlpatterns = [
    path("functions/<int:function_id>/triggers/", v.TriggerListView.as_view(), name="trigger-list"),
    path("triggers/preview", v.TriggerPreviewView.as_view(), name="trigger-preview"),
    path("triggers/<int:trigger_id>", v.TriggerDetailView.as_view(), name="trigger-detail"),
    path("triggers/<int:trigger_id>/run", v.TriggerRunView.as_view(), name="trigger-run"),
    path("triggers/<int:trigger_id>/pause", v.TriggerPauseView.as_view(), name="trigger-pause"),
    path("triggers/<int:trigger_id>/resume", v.TriggerResumeView.as_view(), name="trigger-resume"),
    path("triggers/<int:trigger_id>/fires", v.TriggerFiresView.as_view(), name="trigger-fires"),
]
