from django.contrib import admin

from apps.functions.models import Function


@admin.register(Function)
class FunctionAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "runtime", "kind", "memory_mb", "timeout_s"]
    list_filter = ["runtime", "kind"]
