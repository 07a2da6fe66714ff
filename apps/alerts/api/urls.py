from django.urls import path

from apps.alerts.api import views as v

urlpatterns = [
    path("functions/<int:function_id>/alert-rules/", v.AlertRuleListView.as_view(), name="alert-rule-list"),
    path("alert-rules/<int:alert_rule_id>", v.AlertRuleDetailView.as_view(), name="alert-rule-detail"),
    path("alert-rules/<int:alert_rule_id>/history", v.AlertRuleHistoryView.as_view(), name="alert-rule-history"),
    path(
        "alert-rules/<int:alert_rule_id>/notifications",
        v.AlertRuleNotificationsView.as_view(),
        name="alert-rule-notifications",
    ),
    path("functions/<int:function_id>/silences/", v.SilenceListView.as_view(), name="silence-list"),
    path("silences/<int:silence_id>/expire", v.SilenceExpireView.as_view(), name="silence-expire"),
]
