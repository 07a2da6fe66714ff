from django.urls import path

from apps.monitoring.api import views as v

F = "functions/<int:function_id>"

urlpatterns = [
    path(f"{F}/logs", v.LogLineListView.as_view(), name="function-logs"),
    path(f"{F}/logs/stream", v.LogStreamView.as_view(), name="function-logs-stream"),
    path(f"{F}/logs/ticket", v.LogTicketView.as_view(), name="function-logs-ticket"),
    path(f"{F}/invocations", v.InvocationListView.as_view(), name="function-invocations"),
    path(f"{F}/invocations/summary", v.InvocationSummaryView.as_view(), name="function-invocation-summary"),
]
