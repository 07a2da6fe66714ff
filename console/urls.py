from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core import health
from apps.core.api_index import ApiIndexView
from apps.functions import artifact_urls
from apps.monitoring.api.views import PrometheusMetricsView
from apps.pipelines import intake
from apps.pipelines import pages as pipeline_pages

api_v1: list[URLPattern | URLResolver] = [
    path("", ApiIndexView.as_view(), name="api-index"),
    path("", include("apps.tenancy.api.urls")),
    path("", include("apps.functions.api.urls")),
    path("", include("apps.releases.api.urls")),
    path("", include("apps.monitoring.api.urls")),
    path("", include("apps.engine.api.urls")),
    path("", include("apps.pipelines.api.urls")),
    path("", include("apps.alerts.api.urls")),
    path("", include("apps.triggers.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    # Console pages: each app owns its own (apps/<app>/pages/, routes in apps/<app>/page_urls.py).
    path("", include("apps.tenancy.page_urls")),
    path("", include("apps.functions.page_urls")),
    path("", include("apps.releases.page_urls")),
    path("", include("apps.alerts.page_urls")),
    path("", include("apps.monitoring.page_urls")),
    path("", include("apps.triggers.page_urls")),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus scrapes (a token with the `metrics` scope): apps/monitoring/prometheus.py.
    path("metrics", PrometheusMetricsView.as_view(), name="prometheus-metrics"),
    # Pipeline pages (apps/pipelines/pages.py): runs, deliveries, one run's live log.
    path("projects/<int:project_id>/pipeline/", pipeline_pages.pipeline_page, name="pipeline"),
    path("projects/<int:project_id>/pipeline/run", pipeline_pages.pipeline_run, name="pipeline-run"),
    path("projects/<int:project_id>/pipeline/repository", pipeline_pages.pipeline_repository, name="pipeline-repo"),
    path("deliveries/<int:delivery_id>/redeliver", pipeline_pages.delivery_redeliver, name="delivery-redeliver-page"),
    path("runs/<int:run_id>/", pipeline_pages.run_page, name="run"),
    path("runs/<int:run_id>/<str:action>", pipeline_pages.run_action, name="run-action"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # Git host webhooks: signed, no session or CSRF (apps/pipelines/intake.py).
    path("hooks/<str:provider>/<str:hook_id>/", intake.webhook, name="webhook"),
    path("artifacts/<str:sha256>.zip", artifact_urls.artifact_download, name="artifact-download"),
]

handler404 = "apps.core.pages.not_found"
handler500 = "apps.core.pages.server_error"
