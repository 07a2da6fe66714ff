from django.urls import URLPattern, URLResolver, path

from apps.pipelines.api import views as v

urlpatterns: list[URLPattern | URLResolver] = [
    # repository and webhook deliveries
    path("projects/<int:project_id>/repository", v.RepositoryView.as_view(), name="repository"),
    path("projects/<int:project_id>/deliveries/", v.DeliveryListView.as_view(), name="delivery-list"),
    path("deliveries/<int:delivery_id>/", v.DeliveryDetailView.as_view(), name="delivery-detail"),
    path("deliveries/<int:delivery_id>/redeliver", v.DeliveryRedeliverView.as_view(), name="delivery-redeliver"),
]

# --- runs (apps/pipelines/api/run_views.py): the run helper appends its routes below ---------
# e.g. from apps.pipelines.api import run_views
#      urlpatterns += [path("projects/<int:project_id>/runs/", run_views.RunListView.as_view(), ...), ...]
# New path parameters (run_id) need an entry in PATH_VALUES of tests/tenancy/test_outsider_routes.py
# ("run_id" is already there, pointing at a run of alpha's project).

from apps.pipelines.api import run_views  # noqa: E402

RUN = "runs/<int:run_id>"
urlpatterns += [
    path("projects/<int:project_id>/runs/", run_views.RunListView.as_view(), name="run-list"),
    path(f"{RUN}/", run_views.RunDetailView.as_view(), name="run-detail"),
    path(f"{RUN}/log", run_views.RunLogView.as_view(), name="run-log"),
    path(f"{RUN}/cancel", run_views.RunCancelView.as_view(), name="run-cancel"),
    path(f"{RUN}/retry", run_views.RunRetryView.as_view(), name="run-retry"),
    path(f"{RUN}/approve", run_views.RunApproveView.as_view(), name="run-approve"),
    path(f"{RUN}/reject", run_views.RunRejectView.as_view(), name="run-reject"),
]
