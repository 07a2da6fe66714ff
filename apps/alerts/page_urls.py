"""Page routes of alerts (mounted at / by console/urls.py)."""

from apps.alerts.pages import urlpatterns

__all__ = ["urlpatterns"]
