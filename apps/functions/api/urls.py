from django.urls import path

from apps.functions.api import views as v

urlpatterns = [
    path("projects/<int:project_id>/functions/", v.FunctionListView.as_view(), name="function-list"),
    path("functions/<int:function_id>/", v.FunctionDetailView.as_view(), name="function-detail"),
]
