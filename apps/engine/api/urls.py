from django.urls import path

from apps.engine.api import views as v

urlpatterns = [
    path("functions/<int:function_id>/invoke", v.InvokeView.as_view(), name="function-invoke"),
]
