from django.urls import path

from apps.engine.api import views as v

urlpatterns = [
    path("functions/<int:function_id>/invoke", v.InvokeView.as_view(), name="function-invoke"),
    path("functions/<int:function_id>/draft/invoke", v.DraftInvokeView.as_view(), name="draft-invoke"),
]
