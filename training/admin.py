from django.contrib import admin

from training.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("project", "version", "status", "progress", "created_at", "ended_at")
    list_filter = ("status",)
    search_fields = ("project__name",)
