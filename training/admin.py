from django.contrib import admin

from projects.admin import NoAddAdmin
from training.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(NoAddAdmin):
    list_display = ("project", "version", "status", "progress", "created_at", "ended_at")
    list_filter = ("status",)
    search_fields = ("project__name",)
