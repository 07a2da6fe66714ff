"""Page routes of triggers (mounted at / by console/urls.py)."""

from apps.triggers.pages import urlpatterns

__all__ = ["urlpatterns"]
