from django.urls import path

from apps.functions.api import draft_views, test_event_views, version_views
from apps.functions.api import views as v

F = "functions/<int:function_id>"

urlpatterns = [
    path("projects/<int:project_id>/functions/", v.FunctionListView.as_view(), name="function-list"),
    path("projects/<int:project_id>/functions/import", v.FunctionImportView.as_view(), name="function-import"),
    path(f"{F}/", v.FunctionDetailView.as_view(), name="function-detail"),
    # versions
    path(f"{F}/versions/", version_views.VersionListView.as_view(), name="version-list"),
    path(f"{F}/versions/<int:number>/", version_views.VersionDetailView.as_view(), name="version-detail"),
    path(f"{F}/versions/<int:number>/files/", version_views.VersionFileListView.as_view(), name="version-file-list"),
    path(f"{F}/versions/<int:number>/files/<path:path>", version_views.VersionFileView.as_view(), name="version-file"),
    path(f"{F}/versions/<int:number>/archive", version_views.VersionArchiveView.as_view(), name="version-archive"),
    path(f"{F}/diff", version_views.VersionDiffView.as_view(), name="version-diff"),
    # deploys and bindings
    path(f"{F}/deploy", v.DeployView.as_view(), name="function-deploy"),
    path(f"{F}/bindings/", v.BindingListView.as_view(), name="binding-list"),
    path(f"{F}/bindings/<str:environment>", v.BindingDetailView.as_view(), name="binding-detail"),
    path(f"{F}/bindings/<str:environment>/history", v.BindingHistoryView.as_view(), name="binding-history"),
    path(f"{F}/rollback", v.RollbackView.as_view(), name="function-rollback"),
    path(f"{F}/promote", v.PromoteView.as_view(), name="function-promote"),
    # draft
    path(f"{F}/draft/", draft_views.DraftView.as_view(), name="draft"),
    path(f"{F}/draft/files/<path:path>", draft_views.DraftFileView.as_view(), name="draft-file"),
    path(f"{F}/draft/rename", draft_views.DraftRenameView.as_view(), name="draft-rename"),
    path(f"{F}/draft/publish", draft_views.DraftPublishView.as_view(), name="draft-publish"),
    path(f"{F}/draft/archive", draft_views.DraftArchiveView.as_view(), name="draft-archive"),
    path(f"{F}/draft/check", draft_views.DraftCheckView.as_view(), name="draft-check"),
    # test events
    path(f"{F}/test-events/", test_event_views.TestEventListView.as_view(), name="test-event-list"),
    path(
        f"{F}/test-events/<int:test_event_id>/",
        test_event_views.TestEventDetailView.as_view(),
        name="test-event-detail",
    ),
    path("test-event-templates/", test_event_views.TestEventTemplateListView.as_view(), name="test-event-templates"),
]
