from django.urls import path

from apps.releases.api import views as v

R = "releases/<int:release_id>"

urlpatterns = [
    path("functions/<int:function_id>/releases/", v.ReleaseListView.as_view(), name="release-list"),
    path(f"{R}/", v.ReleaseDetailView.as_view(), name="release-detail"),
    path(f"{R}/promote", v.ReleasePromoteView.as_view(), name="release-promote"),
    path(f"{R}/promote-all", v.ReleasePromoteAllView.as_view(), name="release-promote-all"),
    path(f"{R}/pause", v.ReleasePauseView.as_view(), name="release-pause"),
    path(f"{R}/resume", v.ReleaseResumeView.as_view(), name="release-resume"),
    path(f"{R}/abort", v.ReleaseAbortView.as_view(), name="release-abort"),
    path(f"{R}/approve", v.ReleaseApproveView.as_view(), name="release-approve"),
    path(f"{R}/reject", v.ReleaseRejectView.as_view(), name="release-reject"),
]
